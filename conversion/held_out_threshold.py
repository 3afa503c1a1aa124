"""A referral threshold that holds on clinics the model never saw.

The in-distribution rule (validation sensitivity >= 0.90 at 95% confidence) is fitted on
images from the training cameras, and the leave-one-source-out folds showed that such a
threshold does not travel: on a held-out clinic it refers too few or too many. A shipped
model is trained on every source, so it has no held-out predictions of its own. Its
recipe does: each fold of ``skinscan bench sources --full`` trained the same recipe
without one source and predicted that source.

This step carries the held-out requirement over as a *validation sensitivity level*,
which is free of each model's own probability scale:

1. pool the folds' held-out predictions and take the highest threshold that refers
   ``min_melanoma_sensitivity`` of their melanomas (:func:`training.calibration.
   melanoma_threshold`);
2. for each fold model, measure the malignant sensitivity that threshold gives on that
   model's own validation split (the training sources): how far past the
   in-distribution target a model of this recipe must refer to reach the target on a
   clinic it never saw. The level is the largest of them (the most demanding fold);
3. on the shipped bundle's own validation outputs (device pipeline, int8), the cap is the
   highest threshold whose malignant sensitivity reaches that level.

The bundle's threshold then becomes the lowest of the in-distribution, the shift-safe
(:mod:`conversion.shift_threshold`) and this cap; it is never raised. No held-out
source's labels touch the shipped model's threshold directly, and the test split
chooses nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device import metrics
from device.errors import DatasetError
from device.labels import CLASS_CODES, MALIGNANT_CODES
from device.runtime.classifier import softmax
from training.calibration import melanoma_threshold

log = logging.getLogger(__name__)

MALIGNANT_INDICES = [CLASS_CODES.index(code) for code in sorted(MALIGNANT_CODES)]


@dataclass(frozen=True)
class Fold:
    """One leave-one-source-out fold of the shipped recipe.

    Attributes:
        name: e.g. ``all-rosendahl`` (candidate and held-out source).
        run_dir: the fold's training run (``logits.npz`` with validation logits, and
            ``calibration.json`` with its temperature).
        predictions: the held-out source's predictions (``image_ids``, ``labels``,
            ``probabilities``), as ``skinscan bench sources --full`` saves them.
    """

    name: str
    run_dir: Path
    predictions: Path


def folds_from_bench(bench_dir: str | Path, names: Sequence[str]) -> list[Fold]:
    """The named folds of a ``bench sources --full`` output folder.

    Raises:
        DatasetError: a fold's run or predictions are missing.
    """
    root = Path(bench_dir)
    folds = [Fold(n, root / "runs" / n, root / "predictions" / f"{n}.npz") for n in names]
    for fold in folds:
        for needed in (fold.run_dir / "logits.npz", fold.run_dir / "calibration.json"):
            if not needed.is_file():
                raise DatasetError(f"fold {fold.name}: {needed} is missing")
        if not fold.predictions.is_file():
            raise DatasetError(f"fold {fold.name}: {fold.predictions} is missing")
    if not folds:
        raise DatasetError("name at least one fold (--fold)")
    return folds


def malignant_probability(probs: np.ndarray) -> np.ndarray:
    """P(malignant) = P(akiec) + P(bcc) + P(mel), per image."""
    return np.asarray(probs)[:, MALIGNANT_INDICES].sum(axis=1)


def threshold_at_sensitivity(probs: np.ndarray, labels: np.ndarray, level: float) -> float:
    """The highest threshold on P(malignant) that refers at least ``level`` of the malignant.

    Raises:
        ValueError: no malignant image in ``labels``.
    """
    malignant = np.isin(np.asarray(labels), MALIGNANT_INDICES)
    scores = np.sort(malignant_probability(probs)[malignant])[::-1]
    if scores.size == 0:
        raise ValueError("no malignant image to choose a threshold from")
    return float(scores[int(np.ceil(level * scores.size)) - 1])


def _sensitivity(probs: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    malignant = np.isin(np.asarray(labels), MALIGNANT_INDICES)
    return float(np.mean(malignant_probability(probs)[malignant] >= threshold))


def validation_level(folds: Sequence[Fold], min_melanoma_sensitivity: float = 0.90) -> dict:
    """Steps 1 and 2 of the module docstring: the pooled threshold and the level it implies.

    Returns:
        ``{"pooled_threshold", "level", "per_fold": {name: {...}}, ...}``.
    """
    pooled = [np.load(f.predictions) for f in folds]
    probs = np.concatenate([p["probabilities"] for p in pooled])
    labels = np.concatenate([p["labels"] for p in pooled])
    pooled_threshold = melanoma_threshold(probs, labels, min_melanoma_sensitivity)
    per_fold: dict[str, Any] = {}
    for fold, held in zip(folds, pooled, strict=True):
        calibration = json.loads((fold.run_dir / "calibration.json").read_text())
        logits = np.load(fold.run_dir / "logits.npz")
        val_probs = softmax(logits["val_logits"], float(calibration["temperature"]))
        mel = held["labels"] == CLASS_CODES.index("mel")
        per_fold[fold.name] = {
            "validation_sensitivity_at_pooled": _sensitivity(
                val_probs, logits["val_labels"], pooled_threshold
            ),
            "own_threshold": float(calibration["referral_threshold"]),
            "held_out_melanoma_sensitivity_at_pooled": float(
                np.mean(malignant_probability(held["probabilities"])[mel] >= pooled_threshold)
            ),
            "held_out_images": int(len(held["labels"])),
        }
    level = max(row["validation_sensitivity_at_pooled"] for row in per_fold.values())
    return {
        "min_melanoma_sensitivity": min_melanoma_sensitivity,
        "pooled_threshold": pooled_threshold,
        "pooled_images": int(len(labels)),
        "pooled_melanomas": int(np.sum(labels == CLASS_CODES.index("mel"))),
        "level": level,
        "per_fold": per_fold,
    }


def held_out_cap(
    bundle_dir: str | Path,
    split_csv: str | Path,
    images_dir: str | Path | Sequence[str | Path],
    folds: Sequence[Fold],
    *,
    min_melanoma_sensitivity: float = 0.90,
    workers: int | None = None,
) -> dict[str, Any]:
    """Step 3: the cap on the bundle's threshold, from its own validation outputs.

    Returns:
        The record kept in the manifest (``metrics.held_out_threshold``), with ``cap``.

    Raises:
        DatasetError: the split has no validation image with a malignant label.
    """
    from device.evaluation.runner import read_labelled_csv, run_images

    evidence = validation_level(folds, min_melanoma_sensitivity)
    val = read_labelled_csv(split_csv, images_dir, "val")[0]
    run = run_images(Path(bundle_dir), val, workers=workers)
    try:
        cap = threshold_at_sensitivity(run.probabilities, run.labels, evidence["level"])
    except ValueError as exc:
        raise DatasetError(f"{split_csv}: {exc}") from exc
    log.info(
        "held-out threshold: pooled %.4f over %d folds, level %.3f, cap %.4f",
        evidence["pooled_threshold"], len(folds), evidence["level"], cap,
    )  # fmt: skip
    return metrics.json_safe(
        {
            **evidence,
            "cap": cap,
            "validation_images": int(len(run.labels)),
            "validation_specificity_at_cap": metrics.specificity(
                run.labels, run.probabilities, cap
            ),
            "rule": (
                f"the threshold that refers {min_melanoma_sensitivity:.0%} of the melanomas "
                f"of {len(folds)} pooled held-out sources needed validation sensitivity up to "
                f"{evidence['level']:.3f} in their fold models; the cap keeps that on this "
                "bundle's validation"
            ),
        }
    )
