"""HAM10000 loading, lesion-grouped stratified splits, and the preprocessed-image cache.

The loader reads the official layout (``HAM10000_metadata.csv`` and
``images/<image_id>.jpg``) from a folder the user names, or an ISIC archive / plain
labels CSV (training.archives). Rows it cannot use are
skipped and listed, never fatal. The split groups every image of a lesion, and
byte-identical files, onto one side, so no near-copy leaks into the test set.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from device.errors import CorruptImageError, DatasetError
from device.imaging.io import read_image
from device.imaging.pipeline import PreprocessSpec, preprocess
from device.labels import CLASS_CODES

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
METADATA_FILE = "HAM10000_metadata.csv"


@dataclass(frozen=True)
class Sample:
    """One usable image: ids, diagnosis and the metadata used for subgroup reports."""

    image_id: str
    lesion_id: str
    dx: str
    path: Path
    sex: str = ""
    age: str = ""
    localization: str = ""
    source: str = ""
    archive: str = ""

    @property
    def label(self) -> int:
        """Index of the diagnosis in CLASS_CODES."""
        return CLASS_CODES.index(self.dx)


@dataclass
class LoadReport:
    """What the loader kept and what it skipped, with a reason per skipped row."""

    kept: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    layout: str = "ham10000"
    grouping: str = "lesion_id"

    def skip(self, image_id: str, reason: str) -> None:
        """Record one skipped row."""
        self.skipped.append({"image_id": image_id, "reason": reason})


def load_metadata(data_dir: str | Path) -> tuple[list[Sample], LoadReport]:
    """Read the HAM10000 metadata and keep the rows whose image file exists.

    Raises:
        DatasetError: the folder has no metadata CSV or it lacks required columns.
    """
    data_dir = Path(data_dir)
    csv_path = data_dir / METADATA_FILE
    if not csv_path.is_file():
        from training.archives import find_labels_csv

        found = None if not data_dir.exists() else find_labels_csv(data_dir)
        if found is not None:
            return _load_archive(data_dir, *found)
        raise DatasetError(
            f"{csv_path} not found: expected the HAM10000 layout "
            f"({METADATA_FILE} and images/<image_id>.jpg), an ISIC *GroundTruth*.csv "
            f"or a labels.csv (image_id,dx[,lesion_id][,patient_id])"
        )
    report = LoadReport()
    samples: list[Sample] = []
    with csv_path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"lesion_id", "image_id", "dx"} - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(f"{csv_path}: missing columns {sorted(missing)}")
        for row in reader:
            image_id = row["image_id"].strip()
            dx = row["dx"].strip()
            path = data_dir / "images" / f"{image_id}.jpg"
            if dx not in CLASS_CODES:
                report.skip(image_id, f"unknown dx {dx!r}")
            elif not path.is_file():
                report.skip(image_id, "image file missing")
            else:
                samples.append(
                    Sample(
                        image_id=image_id,
                        lesion_id=row["lesion_id"].strip() or image_id,
                        dx=dx,
                        path=path,
                        sex=row.get("sex", "") or "",
                        age=row.get("age", "") or "",
                        localization=row.get("localization", "") or "",
                        source=(row.get("dataset") or "").strip(),
                    )
                )
    report.kept = len(samples)
    return samples, report


# The archive name of a folder in HAM10000's own layout, whatever the folder is called.
HAM10000_ARCHIVE = "ham10000"


def source_of(sample: Sample, archive: str) -> str:
    """The acquisition source of a sample read from the archive folder named ``archive``."""
    return sample.source or archive


def load_sources(data_dirs: Sequence[str | Path]) -> tuple[list[Sample], list[LoadReport]]:
    """Read every archive folder into one list of samples, each with its source.

    Args:
        data_dirs: archive folders (HAM10000 layout, ISIC one-hot or plain labels CSV).

    Returns:
        (samples of all archives in the order given, one load report per archive).

    Raises:
        DatasetError: no folder given, or a folder cannot be read.
    """
    if not data_dirs:
        raise DatasetError("no data folder given")
    samples: list[Sample] = []
    reports: list[LoadReport] = []
    seen: dict[str, str] = {}
    for data_dir in data_dirs:
        folder = Path(data_dir)
        loaded, report = load_metadata(folder)
        kept: list[Sample] = []
        for sample in loaded:
            if sample.image_id in seen:
                report.skip(sample.image_id, f"image id already read from {seen[sample.image_id]}")
                continue
            seen[sample.image_id] = folder.name
            kept.append(_with_source(sample, folder.name, report.layout))
        report.kept = len(kept)
        samples.extend(kept)
        reports.append(report)
        log.info("%s: %d images, sources %s", folder, len(kept), sorted({s.source for s in kept}))
    return samples, reports


def _with_source(sample: Sample, folder_name: str, layout: str) -> Sample:
    from dataclasses import replace

    archive = HAM10000_ARCHIVE if layout == HAM10000_ARCHIVE else folder_name
    return replace(sample, source=source_of(sample, folder_name), archive=archive)


def _load_archive(data: Path, csv_path: Path, layout: str) -> tuple[list[Sample], LoadReport]:
    """Samples of an ISIC one-hot or plain labels CSV (see training.archives)."""
    from training.archives import IMAGE_LEVEL_WARNING, find_image, grouping_of, read_archive_rows

    root = data if data.is_dir() else data.parent
    rows, rejected = read_archive_rows(csv_path, layout)
    report = LoadReport(layout=layout)
    for image_id, reason in rejected:
        report.skip(image_id, reason)
    samples: list[Sample] = []
    kept_rows: list[dict[str, str]] = []
    for row in rows:
        path = find_image(root, row["image_id"])
        if path is None:
            report.skip(row["image_id"], "image file missing")
            continue
        kept_rows.append(row)
        group = row["group"]
        samples.append(
            Sample(
                image_id=row["image_id"],
                lesion_id=group.removeprefix("lesion:") if group else row["image_id"],
                dx=row["dx"],
                path=path,
                sex=row["sex"],
                age=row["age"],
                localization=row["localization"],
                source=root.name,
            )
        )
    report.kept = len(samples)
    report.grouping = grouping_of(kept_rows)
    reasons = Counter(entry["reason"] for entry in report.skipped)
    log.info(
        "%s (%s): kept %d, skipped %d %s; split grouped by %s",
        csv_path,
        layout,
        report.kept,
        len(report.skipped),
        dict(reasons),
        report.grouping,
    )
    if report.grouping.startswith("image"):
        log.warning("%s: %s", csv_path, IMAGE_LEVEL_WARNING)
    return samples, report


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def group_ids(samples: list[Sample]) -> list[int]:
    """Group index per sample: same lesion_id or byte-identical file means same group."""
    parent = list(range(len(samples)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        parent[find(i)] = find(j)

    first_by_key: dict[str, int] = {}
    for index, sample in enumerate(samples):
        for key in (f"lesion:{sample.lesion_id}", f"bytes:{_file_digest(sample.path)}"):
            if key in first_by_key:
                union(index, first_by_key[key])
            else:
                first_by_key[key] = index
    return [find(i) for i in range(len(samples))]


def _by_diagnosis(sample: Sample) -> str:
    return sample.dx


def grouped_split(
    samples: list[Sample],
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    stratum: Callable[[Sample], Any] = _by_diagnosis,
) -> dict[str, str]:
    """Assign each image to train/val/test, grouped by lesion and stratified by ``stratum``.

    Every image of a lesion, and byte-identical files, land on one side. Groups of each
    stratum (by default the diagnosis; a group's stratum is its members' most common
    one, as HAM10000 lesions have one diagnosis) are shuffled with ``seed`` and dealt
    greedily to the split that is furthest below its target image count for that stratum.

    Returns:
        image_id -> split name.
    """
    groups = group_ids(samples)
    members: dict[int, list[Sample]] = defaultdict(list)
    for group, sample in zip(groups, samples, strict=True):
        members[group].append(sample)
    strata: dict[Any, list[int]] = defaultdict(list)
    for group, group_samples in members.items():
        keys = [stratum(s) for s in group_samples]
        strata[max(sorted(set(keys)), key=keys.count)].append(group)
    rng = np.random.default_rng(seed)
    assignment: dict[str, str] = {}
    for key in sorted(strata):
        group_list = sorted(strata[key])
        rng.shuffle(group_list)
        total = sum(len(members[g]) for g in group_list)
        counts = dict.fromkeys(SPLITS, 0)
        for group in group_list:
            deficits = {s: f * total - counts[s] for s, f in zip(SPLITS, fractions, strict=True)}
            split = max(SPLITS, key=lambda s: deficits[s])
            counts[split] += len(members[group])
            for sample in members[group]:
                assignment[sample.image_id] = split
    return assignment


def split_seed_of(config: dict[str, Any]) -> int:
    """The seed a run's split is drawn with: ``split_seed`` when set, else ``seed``."""
    split_seed = config.get("split_seed")
    return config["seed"] if split_seed is None else split_seed


def write_split_csv(path: Path, samples: list[Sample], assignment: dict[str, str]) -> None:
    """Write the split as CSV (image_id, lesion_id, dx, split, sex, age, localization, dataset).

    ``dataset`` is each image's acquisition source, so ``skinscan eval --by dataset``
    reports a run's test split per source.
    """
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["image_id", "lesion_id", "dx", "split", "sex", "age", "localization", "dataset"]
        )
        for s in samples:
            writer.writerow(
                [
                    s.image_id,
                    s.lesion_id,
                    s.dx,
                    assignment[s.image_id],
                    s.sex,
                    s.age,
                    s.localization,
                    s.source,
                ]
            )
    os.replace(tmp, path)


def read_split_csv(path: Path) -> list[dict[str, str]]:
    """Read a split CSV written by :func:`write_split_csv`."""
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def with_colour_reference(spec: PreprocessSpec, samples: list[Sample]) -> PreprocessSpec:
    """``spec`` with its illuminant region fitted on ``samples`` (the training split).

    Spec 6 clamps each frame's Shades-of-Gray illuminant into the region of the
    training images' illuminants; this fits that region and its centre. A spec
    with no colour step (spec 3) or one already fitted is returned unchanged.
    Unreadable images are left out of the fit (they are skipped from training anyway).
    """
    from dataclasses import replace

    from device.imaging.colour import fit_region
    from device.imaging.pipeline import to_working_size

    if spec.fitted:
        return spec
    colour = spec.colour

    def working_images() -> Iterator[np.ndarray]:
        for sample in samples:
            try:
                yield to_working_size(read_image(sample.path), spec.work_long_side)[0]
            except CorruptImageError:
                continue

    reference, region = fit_region(working_images(), colour)
    log.info("illuminant region fitted on %d training images: %s", len(samples), region)
    return replace(spec, colour=replace(colour, reference=reference, region=region))


def _preprocess_one(args: tuple[str, str]) -> tuple[np.ndarray | None, str]:
    path, spec_json = args
    spec = PreprocessSpec.from_dict(json.loads(spec_json))
    try:
        return preprocess(read_image(path), spec).model_input, ""
    except CorruptImageError as exc:
        return None, str(exc)


@dataclass
class PreprocessedCache:
    """Model inputs for a list of images, computed once per preprocessing spec.

    Attributes:
        images: uint8 array (N, size, size, 3), memory-mapped.
        image_ids: the ids in row order.
        failed: image_id -> reason for images that could not be decoded (rows are zero).
    """

    images: np.ndarray
    image_ids: list[str]
    failed: dict[str, str]

    def rows(self, image_ids: Iterable[str]) -> np.ndarray:
        """Row indices of ``image_ids`` in the cache."""
        index = {image_id: i for i, image_id in enumerate(self.image_ids)}
        return np.array([index[i] for i in image_ids], dtype=np.int64)


def build_cache(
    samples: list[Sample],
    cache_root: Path,
    spec: PreprocessSpec,
    workers: int = 2,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> PreprocessedCache:
    """Preprocess every sample with the device pipeline, or reuse the cache for this spec.

    The cache folder is keyed by ``spec.digest()`` and a hash of the image list. It is
    written under a temporary name and renamed when complete, so an interrupted run
    leaves no half-written cache behind. Processes sharing ``cache_root`` (the workers
    of a distributed run) build it once: the first holds a lock, the others wait and read.
    """
    ids = [s.image_id for s in samples]
    key = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:12]
    folder = cache_root / f"{spec.digest()}-{key}"
    if (folder / "index.json").is_file():
        meta = json.loads((folder / "index.json").read_text())
        images = np.load(folder / "images.npy", mmap_mode="r")
        return PreprocessedCache(images, meta["image_ids"], meta["failed"])
    cache_root.mkdir(parents=True, exist_ok=True)
    # Several training processes (the workers of a distributed run) may share the cache:
    # one builds it while the others wait on the lock, then all read the finished folder.
    with _locked(cache_root / f"{folder.name}.lock"):
        if (folder / "index.json").is_file():
            return build_cache(samples, cache_root, spec, workers, progress)
        _write_cache(samples, folder, spec, workers, progress)
    return build_cache(samples, cache_root, spec, workers, progress)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (fcntl; a no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Linux
        yield
        return
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _write_cache(
    samples: list[Sample],
    folder: Path,
    spec: PreprocessSpec,
    workers: int,
    progress: Callable[[Iterable], Iterable] | None,
) -> None:
    """Preprocess into a temporary folder and rename it to ``folder`` when complete."""
    ids = [s.image_id for s in samples]
    cache_root = folder.parent
    tmp = cache_root / f"{folder.name}.tmp-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    size = spec.input_size
    images = np.lib.format.open_memmap(
        tmp / "images.npy", mode="w+", dtype=np.uint8, shape=(len(samples), size, size, 3)
    )
    spec_json = json.dumps(spec.to_dict())
    failed: dict[str, str] = {}
    jobs = [(str(s.path), spec_json) for s in samples]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = pool.map(_preprocess_one, jobs, chunksize=32)
        if progress is not None:
            results = progress(results)
        for row, (image, error) in enumerate(results):
            if image is None:
                failed[ids[row]] = error
            else:
                images[row] = image
    images.flush()
    del images
    (tmp / "index.json").write_text(json.dumps({"image_ids": ids, "failed": failed}))
    try:
        os.replace(tmp, folder)
    except OSError:
        # A process without the lock (another host on a shared disk) finished first.
        if not (folder / "index.json").is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def dataset_hash(samples: list[Sample]) -> str:
    """A hash of the image ids and labels used: identifies the training data in provenance."""
    text = "\n".join(f"{s.image_id},{s.lesion_id},{s.dx}" for s in samples)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_preprocessed(run_dir: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs and labels of one split of a finished run, from its cache.

    Returns:
        (images uint8 (N, size, size, 3), labels int64 (N,)).
    """
    run_dir = Path(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    rows = [r for r in read_split_csv(run_dir / "split.csv") if r["split"] == split]
    samples, _ = load_sources([config["data_dir"], *config.get("extra_data_dirs", [])])
    spec = PreprocessSpec.from_dict(config["preprocessing"])
    cache = build_cache(samples, Path(config["cache_dir"]), spec)
    usable = [r for r in rows if r["image_id"] not in cache.failed]
    images = np.asarray(cache.images[cache.rows(r["image_id"] for r in usable)])
    labels = np.array([CLASS_CODES.index(r["dx"]) for r in usable], dtype=np.int64)
    return images, labels
