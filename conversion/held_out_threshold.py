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
from device.labels import CLASS_CODES
from device.metrics import MALIGNANT_INDICES, malignant_probability
from device.runtime.classifier import softmax
from training.calibration import melanoma_threshold

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fold:
    """One leave-one-source-out fold of the shipped recipe.

    Attributes:
        name: e.g. ``all-rosendahl`` (candidate and held-out source).
        validation: the fold model's outputs on its own validation split (the training
            sources): its training run folder (``logits.npz`` and the temperature in
            ``calibration.json``), or a ``skinscan eval --predictions`` file of its bundle.
        predictions: the held-out source's predictions (``labels``, ``probabilities``), as
            ``skinscan bench sources --full`` and ``skinscan eval --predictions`` save them.
    """

    name: str
    validation: Path
    predictions: Path

    def validation_outputs(self) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, labels) of the fold model on its own validation split."""
        if self.validation.is_dir():
            calibration = json.loads((self.validation / "calibration.json").read_text())
            logits = np.load(self.validation / "logits.npz")
            temperature = float(calibration["temperature"])
            return softmax(logits["val_logits"], temperature), logits["val_labels"]
        saved = np.load(self.validation)
        return saved["probabilities"], saved["labels"]


def folds_from_bench(
    bench_dir: str | Path | None,
    names: Sequence[str],
    files: Sequence[Sequence[str]] = (),
) -> list[Fold]:
    """Folds named in a ``bench sources --full`` output folder, and folds given as files.

    Args:
        bench_dir: the bench folder (``runs/<name>`` and ``predictions/<name>.npz``).
        names: folds of ``bench_dir``.
        files: (name, validation predictions, held-out predictions) of other fold models,
            for example an earlier bundle that never saw one source.

    Raises:
        DatasetError: a fold's validation outputs or held-out predictions are missing.
    """
    folds = []
    if names:
        if bench_dir is None:
            raise DatasetError("--fold needs --held-out-folds BENCH_DIR")
        root = Path(bench_dir)
        folds += [Fold(n, root / "runs" / n, root / "predictions" / f"{n}.npz") for n in names]
    folds += [Fold(name, Path(val), Path(held)) for name, val, held in files]
    for fold in folds:
        needed = [fold.predictions]
        if fold.validation.is_dir():
            needed += [fold.validation / "logits.npz", fold.validation / "calibration.json"]
        else:
            needed.append(fold.validation)
        for path in needed:
            if not path.is_file():
                raise DatasetError(f"fold {fold.name}: {path} is missing")
    if not folds:
        raise DatasetError("name at least one fold (--fold or --fold-predictions)")
    return folds


def threshold_at_sensitivity(probs: np.ndarray, labels: np.ndarray, level: float) -> float:
    """The highest threshold on P(malignant) that refers at least ``level`` of the malignant.

    Raises:
        ValueError: no malignant image in ``labels``.
    """
    malignant = np.isin(np.asarray(labels), list(MALIGNANT_INDICES))
    scores = np.sort(malignant_probability(probs)[malignant])[::-1]
    if scores.size == 0:
        raise ValueError("no malignant image to choose a threshold from")
    return float(scores[int(np.ceil(level * scores.size)) - 1])


def held_out_figures(folds: Sequence[Fold], threshold: float, n_boot: int = 1000) -> dict:
    """Each fold's figures on its held-out source, at ``threshold`` (the pooled one).

    These describe the recipe, not the shipped model: each fold model never saw its
    source. Returns source name -> :func:`device.metrics.evaluate` figures with CIs.
    """
    figures = {}
    for fold in folds:
        held = np.load(fold.predictions)
        figures[fold.name] = metrics.json_safe(
            metrics.evaluate(held["labels"], held["probabilities"], threshold, n_boot=n_boot)
        )
    return figures


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
        val_probs, val_labels = fold.validation_outputs()
        mel = held["labels"] == CLASS_CODES.index("mel")
        per_fold[fold.name] = {
            "validation_sensitivity_at_pooled": metrics.sensitivity(
                val_labels, val_probs, pooled_threshold
            ),
            "validation_images": int(len(val_labels)),
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
    n_boot: int = 1000,
) -> dict[str, Any]:
    """Step 3: the cap on the bundle's threshold, from its own validation outputs.

    Returns:
        The record kept in the manifest (``metrics.held_out_threshold``), with ``cap``, and
        under ``figures`` each fold's held-out figures at the pooled threshold
        (:func:`held_out_figures`; the model card's table of sources it was not trained on).

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
            "figures": held_out_figures(folds, evidence["pooled_threshold"], n_boot),
            "rule": (
                f"the threshold that refers {min_melanoma_sensitivity:.0%} of the melanomas "
                f"of {len(folds)} pooled held-out sources needed validation sensitivity up to "
                f"{evidence['level']:.3f} in their fold models; the cap keeps that on this "
                "bundle's validation"
            ),
        }
    )
