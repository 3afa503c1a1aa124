"""Evaluate a bundle on a labelled image folder through the device's own pipeline.

Every image goes through :class:`device.runtime.analyzer.Analyzer` (the device's
preprocessing, the TFLite runtime, the bundle's temperature and thresholds), in
a pool of worker processes that each load the bundle once.
"""

from __future__ import annotations

import ast
import csv
import logging
import math
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from device import metrics
from device.errors import DatasetError, ImageError
from device.evaluation.groups import grouped_figures
from device.evaluation.screen_outcomes import screen_outcomes
from device.labels import CLASS_CODES

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("image_id", "dx")
IMAGE_SUFFIX = ".jpg"


@dataclass(frozen=True)
class Item:
    """One row to evaluate."""

    image_id: str
    label: int
    path: str
    group: str = ""


@dataclass
class EvalRun:
    """Raw results of evaluating a folder.

    Attributes:
        image_ids: ids of the evaluated images, in CSV order.
        labels: their true class indices.
        probabilities: calibrated probabilities (N, 7).
        unfamiliar: per image, whether the bundle's out-of-distribution check fired.
        atypical: per image, whether the frame was not typical enough for Monitor
            (:func:`device.runtime.decision.is_atypical`, or ink or a plaster in view).
        skipped: ``{"image_id", "reason"}`` for rows that could not be evaluated.
        seconds: wall-clock time of the analysis stage (worker start-up included).
        workers: number of worker processes used.
    """

    image_ids: list[str]
    labels: np.ndarray
    probabilities: np.ndarray
    unfamiliar: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    atypical: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    skipped: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    workers: int = 1


def read_labelled_csv(
    csv_path: str | Path,
    images_dir: str | Path | Sequence[str | Path],
    split: str | None = None,
    by: str | None = None,
    skip_unknown: bool = True,
) -> tuple[list[Item], list[dict[str, str]]]:
    """Read a metadata CSV with at least ``image_id`` and ``dx`` columns.

    Rows with an unknown ``dx``, an empty or repeated ``image_id`` are returned
    as skipped, not raised. The image of a row is ``images_dir/<image_id>.jpg``; with
    several folders (a run trained on several archives), the first that holds it.

    Args:
        csv_path: the CSV (HAM10000 metadata, or a run's split.csv).
        images_dir: the image folder.
        split: keep only rows whose ``split`` column equals this (e.g. "test");
            None keeps every row.
        by: a column whose value becomes each item's ``group`` (``--by``).
        skip_unknown: skip rows whose ``dx`` is not a HAM10000 code; when False,
            refuse the CSV instead, naming each unknown label and its count.

    Returns:
        (items to evaluate, skipped rows with a reason).

    Raises:
        DatasetError: the CSV is missing, unreadable or lacks a required column, or
            (``skip_unknown`` False) has rows with an unknown ``dx``.
    """
    csv_path = Path(csv_path)
    folders = image_folders(images_dir)
    if not csv_path.is_file():
        raise DatasetError(f"{csv_path}: metadata CSV not found")
    for folder in folders:
        if not folder.is_dir():
            raise DatasetError(f"{folder}: image folder not found")
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise DatasetError(
                    f"{csv_path}: missing column(s) {missing}; found {columns or 'no header'}"
                )
            rows = [{(k or "").strip(): (v or "").strip() for k, v in r.items()} for r in reader]
            if split is not None:
                if "split" not in columns:
                    raise DatasetError(f"{csv_path}: --split given but the CSV has no split column")
                rows = [r for r in rows if r.get("split") == split]
            if by is not None and by not in columns:
                raise DatasetError(
                    f"{csv_path}: --by {by}: no such column; found {', '.join(columns)}"
                )
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{csv_path}: cannot be read ({exc})") from exc
    items: list[Item] = []
    skipped: list[dict[str, str]] = []
    seen: set[str] = set()
    for number, row in enumerate(rows, start=2):
        image_id, dx = row.get("image_id", ""), row.get("dx", "")
        if not image_id:
            skipped.append({"image_id": f"<row {number}>", "reason": "empty image_id"})
        elif image_id in seen:
            skipped.append({"image_id": image_id, "reason": "duplicate row"})
        elif dx not in CLASS_CODES:
            skipped.append({"image_id": image_id, "reason": f"unknown dx {dx!r}"})
        else:
            seen.add(image_id)
            path = _find_image(folders, image_id)
            group = row.get(by, "") if by is not None else ""
            items.append(Item(image_id, CLASS_CODES.index(dx), str(path), group))
    unknown = unknown_labels(skipped)
    if unknown and not skip_unknown:
        raise DatasetError(
            f"{csv_path}: {sum(unknown.values())} of {len(rows)} rows have a dx that is not "
            f"a HAM10000 code: {format_counts(unknown)} (known: {', '.join(CLASS_CODES)}). "
            "Fix the labels, or pass --skip-unknown to evaluate without those rows"
        )
    return items, skipped


def unknown_labels(skipped: Sequence[dict[str, str]]) -> Counter[str]:
    """Each unknown ``dx`` among skipped rows and how many rows carry it."""
    prefix = "unknown dx "
    return Counter(
        ast.literal_eval(s["reason"][len(prefix) :])
        for s in skipped
        if s["reason"].startswith(prefix)
    )


def format_counts(counts: Counter[str]) -> str:
    """``'melanoma' (20 rows), 'NEVUS' (12 rows)``, most frequent first."""
    return ", ".join(
        f"{label!r} ({n} row{'s' if n != 1 else ''})" for label, n in counts.most_common()
    )


def image_folders(images_dir: str | Path | Sequence[str | Path]) -> list[Path]:
    """One folder, or several, as a list of paths (at least one)."""
    if isinstance(images_dir, (str, Path)):
        return [Path(images_dir)]
    folders = [Path(p) for p in images_dir]
    if not folders:
        raise DatasetError("no image folder given")
    return folders


def _find_image(folders: Sequence[Path], image_id: str) -> Path:
    """The first folder's ``<image_id>.jpg`` that exists (else the first folder's path)."""
    name = f"{image_id}{IMAGE_SUFFIX}"
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    return folders[0] / name


# Worker state: one Analyzer per process, created by the pool initializer.
_worker_analyzer: Any = None


def _init_worker(bundle_dir: str, runtime: str | None) -> None:
    global _worker_analyzer
    import cv2

    from device.runtime.analyzer import Analyzer

    # One thread per process: the pool is the parallelism.
    cv2.setNumThreads(1)
    _worker_analyzer = Analyzer.from_path(bundle_dir, runtime=runtime, num_threads=1)


def _analyze_one(job: tuple[Item, str, int]) -> tuple[np.ndarray | None, bool, bool, str]:
    """Analyse one (item, shift name, seed) job: (probabilities, unfamiliar, atypical, skip
    reason)."""
    from device.evaluation.shifts import UNSHIFTED, image_seed, shift_by_name
    from device.imaging.io import read_image

    item, shift_name, seed = job
    if not os.path.isfile(item.path):
        return None, False, False, "image file not found"
    try:
        frame = read_image(item.path)
        if shift_name != UNSHIFTED.name:
            frame = shift_by_name(shift_name).apply(frame, image_seed(item.image_id, seed))
        analysis = _worker_analyzer.analyze(frame, explain=False)
    except ImageError as exc:
        return None, False, False, str(exc)
    decision = analysis.decision
    return analysis.probabilities.astype(np.float64), decision.unfamiliar, decision.atypical, ""


def _results(
    jobs: Sequence[tuple[Item, str, int]], bundle_dir: str, workers: int, runtime: str | None
) -> Iterator[tuple[np.ndarray | None, bool, bool, str]]:
    if workers <= 1 or len(jobs) < 2:
        _init_worker(bundle_dir, runtime)
        yield from (_analyze_one(job) for job in jobs)
        return
    # spawn, not fork: the parent may hold runtime or OpenCV threads.
    context = multiprocessing.get_context("spawn")
    chunksize = max(1, min(32, len(jobs) // (4 * workers)))
    with context.Pool(workers, initializer=_init_worker, initargs=(bundle_dir, runtime)) as pool:
        yield from pool.imap(_analyze_one, jobs, chunksize=chunksize)


def default_workers() -> int:
    """Worker processes: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def run_images(
    bundle_dir: str | Path,
    items: Sequence[Item],
    *,
    workers: int | None = None,
    runtime: str | None = None,
    shift: str = "none",
    seed: int = 0,
) -> EvalRun:
    """Analyse every item with the bundle; unreadable images are skipped with a reason.

    Args:
        bundle_dir: the (already verified) bundle folder.
        items: images to analyse.
        workers: worker processes (default: the usable CPUs).
        runtime: force a TFLite runtime.
        shift: name of an acquisition shift applied to each frame first
            (:mod:`device.evaluation.shifts`; "none" for the frames as they are).
        seed: seed of the shifts that draw per image.

    Returns:
        The probabilities of the images that could be analysed.
    """
    return run_shifted(bundle_dir, items, (shift,), workers=workers, runtime=runtime, seed=seed)[
        shift
    ]


def run_shifted(
    bundle_dir: str | Path,
    items: Sequence[Item],
    shifts: Sequence[str],
    *,
    workers: int | None = None,
    runtime: str | None = None,
    seed: int = 0,
) -> dict[str, EvalRun]:
    """Analyse every item under each named shift, in one pool of workers.

    Returns:
        Shift name -> its :class:`EvalRun` (``seconds`` is the shared wall time).
    """
    jobs = [(item, name, seed) for name in shifts for item in items]
    workers = workers or default_workers()
    workers = max(1, min(workers, len(jobs)))
    started = time.perf_counter()
    collected: dict[str, tuple[list, list, list, list, list, list]] = {
        name: ([], [], [], [], [], []) for name in shifts
    }
    for (item, name, _), (p, unfamiliar, atypical, reason) in zip(
        jobs, _results(jobs, str(bundle_dir), workers, runtime), strict=True
    ):
        ids, labels, probs, flags, skipped, atypicals = collected[name]
        if p is None:
            skipped.append({"image_id": item.image_id, "reason": reason})
            continue
        ids.append(item.image_id)
        labels.append(item.label)
        probs.append(p)
        flags.append(unfamiliar)
        atypicals.append(atypical)
    seconds = time.perf_counter() - started
    return {
        name: EvalRun(
            image_ids=ids,
            labels=np.array(labels, dtype=np.int64),
            probabilities=np.stack(probs) if probs else np.zeros((0, len(CLASS_CODES))),
            unfamiliar=np.array(flags, dtype=bool),
            atypical=np.array(atypicals, dtype=bool),
            skipped=skipped,
            seconds=seconds,
            workers=workers,
        )
        for name, (ids, labels, probs, flags, skipped, atypicals) in collected.items()
    }


def save_predictions(path: str | Path, run: EvalRun) -> None:
    """Write a run's per-image results as ``.npz`` (ids, labels, probabilities, unfamiliar)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        image_ids=np.array(run.image_ids),
        labels=run.labels,
        probabilities=run.probabilities,
        unfamiliar=run.unfamiliar,
    )


def evaluate_folder(
    csv_path: str | Path,
    images_dir: str | Path | Sequence[str | Path],
    bundle_dir: str | Path | None = None,
    *,
    workers: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    runtime: str | None = None,
    split: str | None = None,
    by: str | None = None,
    skip_unknown: bool = True,
    predictions: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate a bundle on a labelled folder and return the JSON-ready report.

    Args:
        csv_path: metadata CSV with ``image_id`` and ``dx`` (HAM10000 codes).
        images_dir: folder holding ``<image_id>.jpg``.
        bundle_dir: the bundle; defaults to the shipped one.
        workers: worker processes.
        n_boot: bootstrap resamples for the 95% intervals.
        seed: bootstrap seed.
        runtime: force a TFLite runtime.
        split: evaluate only the CSV rows of this split (needs a ``split`` column).
        by: also report every metric per value of this CSV column (``"by"`` in the report).
        skip_unknown: skip rows with an unknown ``dx`` (listed in the report) instead
            of refusing the CSV.
        predictions: also write each image's probabilities here (``.npz``, see
            :func:`save_predictions`), for thresholds fitted on pooled predictions.

    Returns:
        The report written by ``skinscan eval --json`` (see :mod:`device.evaluation.cli`).

    Raises:
        DatasetError: bad CSV or folder.
        BundleError: the bundle is invalid.
    """
    from device.runtime.bundle import DEFAULT_BUNDLE_DIR, load_bundle

    bundle_path = Path(bundle_dir) if bundle_dir is not None else DEFAULT_BUNDLE_DIR
    # Load once here so an invalid bundle fails before any worker starts.
    bundle = load_bundle(bundle_path, runtime=runtime)
    items, skipped_rows = read_labelled_csv(csv_path, images_dir, split, by, skip_unknown)
    run = run_images(bundle_path, items, workers=workers, runtime=runtime)
    if predictions is not None:
        save_predictions(predictions, run)
    threshold = bundle.manifest.calibration.referral_threshold
    skipped = skipped_rows + run.skipped
    n = len(run.labels)
    if n:
        figures = metrics.evaluate(
            run.labels, run.probabilities, threshold, n_boot=n_boot, seed=seed
        )
    else:
        figures = {name: math.nan for name in metrics.HEADLINE_METRICS}
        figures.update(classes_present=[], per_class_recall={}, per_class_precision={}, ci95={})
    report: dict[str, Any] = {
        "n_images": n,
        "n_skipped": len(skipped),
        "classes_present": figures["classes_present"],
        "balanced_accuracy_over": (
            "the classes present" if len(figures["classes_present"]) < len(CLASS_CODES) else "all 7"
        ),
        **{name: figures[name] for name in metrics.HEADLINE_METRICS},
        "per_class_recall": figures["per_class_recall"],
        "per_class_precision": figures["per_class_precision"],
        "ci95": figures["ci95"],
        "referral_threshold": threshold,
        "seconds_per_image": run.seconds / max(1, n + len(run.skipped)),
        "seconds_total": run.seconds,
        "workers": run.workers,
        "n_boot": n_boot,
        "seed": seed,
        "skipped": skipped,
        "bundle": {
            "path": str(bundle_path),
            "bundle_id": bundle.bundle_id,
            "model_sha256": bundle.model_sha256,
            "runtime": bundle.runtime,
        },
        "metadata": str(csv_path),
        "split": split,
        "screen": (
            screen_outcomes(
                run.labels,
                run.probabilities,
                run.unfamiliar,
                bundle.manifest.labels,
                bundle.manifest.calibration,
                atypical=run.atypical,
            )
            if n
            else None
        ),
        "images": " ".join(str(p) for p in image_folders(images_dir)),
    }
    if by is not None:
        group_of = {item.image_id: item.group for item in items}
        report["by"] = {
            "column": by,
            "groups": grouped_figures(
                run.labels,
                run.probabilities,
                [group_of[i] for i in run.image_ids],
                threshold,
                n_boot=n_boot,
                seed=seed,
            ),
        }
    return metrics.json_safe(report)
