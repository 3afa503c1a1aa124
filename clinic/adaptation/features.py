"""Pooled features and base logits of confirmed cases, through the device pipeline.

Each image goes the device's way (``clinic.analysis`` and the scanner's capture
path): :func:`device.imaging.io.read_image`, the quality gate with the device
config's thresholds, :func:`device.imaging.pipeline.preprocess` with the bundle's
spec, then the int8 trunk. What is kept per image is the spatial mean of the
dequantized feature map (the C = 1280 numbers the head reads) and the bundle's own
logits. An image that cannot be read or fails the gate is left out with its reason.

Computed once per image: worker processes (one per usable CPU) each load the bundle
once, and an optional cache (``.npz`` per bundle model sha256 and preprocessing
spec, rows keyed by image id) lets repeated runs on one source skip the trunk.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clinic.adaptation.cases import Case
from device.errors import ImageError
from device.evaluation.runner import default_workers
from device.runtime.bundle import Bundle
from device.runtime.manifest import preprocessing_sha256

log = logging.getLogger(__name__)

# One image to extract: a Case, or (id, image file or encoded bytes).
Item = Case | tuple[str, Path | str | bytes]


@dataclass(frozen=True)
class FeatureSet:
    """Features of the images that passed, in input order, and those left out.

    Attributes:
        ids: image (case) ids of the rows.
        features: pooled feature map per image, float32 (n, C).
        base_logits: the bundle's logits per image, float32 (n, K).
        excluded: (id, reason) of each image left out (unreadable, failed the gate).
        seconds: wall time of the extraction (cache hits cost nothing).
    """

    ids: list[str]
    features: np.ndarray
    base_logits: np.ndarray
    excluded: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, ids: Sequence[str]) -> np.ndarray:
        """Row indices of ``ids`` (each must be present)."""
        where = {image_id: i for i, image_id in enumerate(self.ids)}
        return np.array([where[image_id] for image_id in ids], dtype=np.int64)

    def subset(self, ids: Sequence[str]) -> FeatureSet:
        """The rows of ``ids``, in that order (ids not present are dropped silently)."""
        present = set(self.ids)
        kept = [image_id for image_id in ids if image_id in present]
        rows = self.rows(kept)
        return FeatureSet(kept, self.features[rows], self.base_logits[rows], [], 0.0)


# One job: (id, image file or bytes, run the quality gate).
Job = tuple[str, Path | bytes, bool]


def _job(item: Item) -> Job:
    if isinstance(item, Case):
        return item.case_id, item.image, not item.passed_gate
    image_id, image = item
    return str(image_id), image if isinstance(image, bytes) else Path(image), True


# Worker state: one bundle and the quality thresholds per process.
_worker: dict[str, Any] = {}


def _init_worker(bundle_dir: str, thresholds: Any) -> None:
    import cv2

    from device.runtime.bundle import load_bundle

    cv2.setNumThreads(1)  # the pool is the parallelism
    _worker["bundle"] = load_bundle(bundle_dir, num_threads=1)
    _worker["thresholds"] = thresholds


def _read(image: Path | bytes) -> np.ndarray:
    from device.imaging.io import read_image

    if not isinstance(image, bytes):
        if not os.path.isfile(image):
            raise ImageError(f"{image}: image file not found")
        return read_image(image)
    # Bytes are decoded by the same reader as files (clinic uploads do the same).
    with tempfile.NamedTemporaryFile(suffix=".img") as handle:
        handle.write(image)
        handle.flush()
        return read_image(handle.name)


def _extract_one(job: Job) -> tuple[str, np.ndarray | None, Any, str]:
    """(id, pooled features, logits, reason left out or "")."""
    from device.imaging.pipeline import preprocess
    from device.imaging.quality import assess_quality

    image_id, image, check_quality = job
    bundle: Bundle = _worker["bundle"]
    try:
        frame = _read(image)
        report = assess_quality(frame, _worker["thresholds"]) if check_quality else None
        if report is not None and not report.passed:
            return image_id, None, None, "quality gate: " + "; ".join(report.reasons)
        pre = preprocess(frame, bundle.preprocess)
        out = bundle.classifier.classify(pre.model_input)
    except ImageError as exc:
        return image_id, None, None, str(exc)
    pooled = out.feature_map.mean(axis=(0, 1), dtype=np.float32)
    return image_id, pooled, out.logits.astype(np.float32), ""


def _results(
    jobs: Sequence[Job], bundle_dir: str, thresholds: Any, workers: int
) -> Iterator[tuple[str, np.ndarray | None, Any, str]]:
    if workers <= 1 or len(jobs) < 4:
        _init_worker(bundle_dir, thresholds)
        yield from (_extract_one(job) for job in jobs)
        return
    # spawn, not fork: the parent may hold runtime or OpenCV threads.
    context = multiprocessing.get_context("spawn")
    chunksize = max(1, min(16, len(jobs) // (4 * workers)))
    with context.Pool(workers, initializer=_init_worker, initargs=(bundle_dir, thresholds)) as pool:
        yield from pool.imap(_extract_one, jobs, chunksize=chunksize)


def cache_path(cache_dir: str | Path, bundle: Bundle, thresholds: Any) -> Path:
    """The cache file of a bundle: model sha256, preprocessing spec, head and gate in its name."""
    spec_sha = preprocessing_sha256(bundle.manifest.preprocessing)
    gate = hashlib.sha256(repr(thresholds).encode("utf-8")).hexdigest()[:6]
    head = (
        ""
        if bundle.head is None
        else "-"
        + bundle.manifest.files[
            bundle.manifest.adaptation.head_file  # type: ignore[union-attr]
        ].sha256[:8]
    )
    name = f"features-{bundle.model_sha256[:16]}-{spec_sha[:8]}{head}-q{gate}.npz"
    return Path(cache_dir) / name


def _load_cache(path: Path) -> dict[str, tuple[np.ndarray | None, np.ndarray | None, str]]:
    if not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            rows: dict[str, tuple[np.ndarray | None, np.ndarray | None, str]] = {
                str(i): (f, lg, "")
                for i, f, lg in zip(npz["ids"], npz["features"], npz["logits"], strict=True)
            }
            for i, reason in zip(npz["excluded_ids"], npz["excluded_reasons"], strict=True):
                rows[str(i)] = (None, None, str(reason))
    except (OSError, ValueError, KeyError) as exc:
        log.warning("%s: feature cache unreadable (%s); recomputing", path, exc)
        return {}
    return rows


def _save_cache(path: Path, rows: dict[str, tuple[np.ndarray | None, Any, str]]) -> None:
    kept = [(i, f, lg) for i, (f, lg, _) in rows.items() if f is not None]
    left = [(i, reason) for i, (f, _, reason) in rows.items() if f is None]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(
        tmp,
        ids=np.array([i for i, _, _ in kept], dtype=str),
        features=np.stack([f for _, f, _ in kept]).astype(np.float32)
        if kept
        else np.zeros((0, 0), np.float32),
        logits=np.stack([lg for _, _, lg in kept]).astype(np.float32)
        if kept
        else np.zeros((0, 0), np.float32),
        excluded_ids=np.array([i for i, _ in left], dtype=str),
        excluded_reasons=np.array([r for _, r in left], dtype=str),
    )
    tmp.replace(path)


def extract_features(
    bundle: Bundle,
    items: Sequence[Item],
    *,
    workers: int | None = None,
    cache_dir: str | Path | None = None,
    thresholds: Any = None,
) -> FeatureSet:
    """Pooled features and logits of every item through the device pipeline.

    Args:
        bundle: the loaded base bundle (its folder is loaded again in each worker).
        items: :class:`Case` objects or ``(id, image path or bytes)`` pairs; ids unique.
        workers: worker processes (default: the usable CPUs).
        cache_dir: folder of the optional feature cache; rows are keyed by image id,
            so an id must always name the same image.
        thresholds: the quality gate's ``QualityThresholds`` (default: the device
            config's, as the clinic's uploads use).

    Returns:
        The features of the images that passed, in input order, and the ones left out.
    """
    started = time.perf_counter()
    if thresholds is None:
        from device.config import load_config

        thresholds = load_config().quality_thresholds()
    jobs = [_job(item) for item in items]
    ids = [image_id for image_id, _, _ in jobs]
    if len(set(ids)) != len(ids):
        raise ValueError("extract_features: image ids must be unique")
    path = cache_path(cache_dir, bundle, thresholds) if cache_dir is not None else None
    rows = _load_cache(path) if path is not None else {}
    todo = [job for job in jobs if job[0] not in rows]
    if todo:
        n_workers = max(1, min(workers or default_workers(), len(todo)))
        log.info(
            "features: %d images through the device pipeline (%d workers)", len(todo), n_workers
        )
        for image_id, pooled, logits, reason in _results(
            todo, str(bundle.path), thresholds, n_workers
        ):
            rows[image_id] = (pooled, logits, reason)
        if path is not None:
            _save_cache(path, rows)
    kept = [i for i in ids if rows[i][0] is not None]
    channels = bundle.manifest.classifier.feature_map.shape[-1]
    n_classes = len(bundle.manifest.labels)
    return FeatureSet(
        ids=kept,
        features=np.stack([rows[i][0] for i in kept]).astype(np.float32)  # type: ignore[misc]
        if kept
        else np.zeros((0, channels), np.float32),
        base_logits=np.stack([rows[i][1] for i in kept]).astype(np.float32)
        if kept
        else np.zeros((0, n_classes), np.float32),
        excluded=[(i, rows[i][2]) for i in ids if rows[i][0] is None],
        seconds=time.perf_counter() - started,
    )
