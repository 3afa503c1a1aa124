"""The referral threshold under acquisition shift, fitted on validation and written into a bundle.

The in-distribution rule (``skinscan convert``: the lower 95% confidence bound of
validation sensitivity >= 0.90) holds only for cameras like HAM10000's. This step
runs the bundle through the device pipeline on the validation split under each
realistic colour and resolution shift (:data:`device.evaluation.shifts.
REALISTIC_THRESHOLD_SHIFTS`), lowers the threshold to the highest value that keeps
malignant sensitivity >= 0.85 under the worst of them (never raises it), and
re-measures the bundle's test figures at the new threshold with the live pipeline.
Everything it did is recorded in ``metrics.shift_threshold`` of the manifest and in
the model card. The test split chooses nothing.

Given a held-out cap (:mod:`conversion.held_out_threshold`: the threshold this
bundle needs on its own validation so that its recipe refers 90% of the melanomas of
clinics it never saw), the threshold is also lowered to that cap; the record says which
of the two set it.

Re-running it on a bundle starts again from the in-distribution threshold it
recorded the first time, so it is idempotent.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from conversion.bundle_rewrite import rewrite_bundle
from conversion.held_out_threshold import Fold, held_out_cap
from conversion.subgroups import write_test_subgroups
from device import metrics
from device.errors import DatasetError
from device.evaluation.runner import evaluate_folder
from device.evaluation.shift_report import MIN_SENSITIVITY_UNDER_SHIFT, evaluate_shifts
from device.evaluation.shifts import REALISTIC_THRESHOLD_SHIFTS, UNSHIFTED, shift_by_name
from device.runtime.bundle import read_manifest

log = logging.getLogger(__name__)

TEST_METRIC_KEYS = (
    "n_images",
    "classes_present",
    *metrics.HEADLINE_METRICS,
    "per_class_recall",
    "per_class_precision",
    "ci95",
)


def apply_shift_threshold(
    bundle_dir: str | Path,
    split_csv: str | Path,
    images_dir: str | Path | Sequence[str | Path],
    *,
    workers: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    minimum: float = MIN_SENSITIVITY_UNDER_SHIFT,
    held_out_folds: Sequence[Fold] | None = None,
) -> dict[str, Any]:
    """Fit the shift-safe referral threshold on validation and write it into the bundle.

    Args:
        bundle_dir: the bundle to update in place.
        split_csv: the training run's ``split.csv`` (``image_id``, ``dx``, ``split``).
        images_dir: the folder of ``<image_id>.jpg``, or one per archive.
        workers: worker processes for the device pipeline.
        n_boot: bootstrap resamples for the re-measured test figures.
        seed: shift and bootstrap seed.
        minimum: malignant sensitivity to keep under every realistic shift.
        held_out_folds: the recipe's leave-one-source-out folds; the threshold is then
            also lowered to :func:`conversion.held_out_threshold.held_out_cap`.

    Returns:
        The ``metrics.shift_threshold`` record written to the manifest.

    Raises:
        DatasetError: the split has no usable validation or test images.
    """
    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir)
    previous = manifest.metrics.get("shift_threshold") or {}
    in_distribution = float(
        previous.get("in_distribution_threshold", manifest.calibration.referral_threshold)
    )
    # Fit from the in-distribution threshold, so that a second run changes nothing.
    rewrite_bundle(bundle_dir, manifest, calibration={"referral_threshold": in_distribution})
    shifts = (UNSHIFTED, *(shift_by_name(n) for n in REALISTIC_THRESHOLD_SHIFTS))
    log.info("shift threshold: validation under %d shifts", len(shifts) - 1)
    val = evaluate_shifts(
        split_csv, images_dir, bundle_dir, shifts=shifts, split="val",
        workers=workers, n_boot=0, seed=seed,
    )  # fmt: skip
    if not val["shifts"]["none"]["n_images"]:
        raise DatasetError(f"{split_csv}: no validation images could be analysed")
    safe = val["shift_safe_threshold"]
    threshold = float(safe["threshold"])
    set_by = "shift" if threshold < in_distribution else "in-distribution"
    held_out = None
    if held_out_folds:
        held_out = held_out_cap(
            bundle_dir, split_csv, images_dir, held_out_folds, workers=workers, n_boot=n_boot
        )
    if held_out is not None and float(held_out["cap"]) < threshold:
        threshold, set_by = float(held_out["cap"]), "held-out sources"
    manifest = read_manifest(bundle_dir)
    rewrite_bundle(bundle_dir, manifest, calibration={"referral_threshold": threshold})
    log.info("shift threshold: test split at %.4f through the device pipeline", threshold)
    test = evaluate_folder(
        split_csv, images_dir, bundle_dir, workers=workers, n_boot=n_boot, seed=seed, split="test"
    )
    if not test["n_images"]:
        raise DatasetError(f"{split_csv}: no test images could be analysed")
    record = {
        "in_distribution_threshold": in_distribution,
        "threshold": threshold,
        "lowered": threshold < in_distribution,
        "set_by": set_by,
        "minimum_sensitivity": minimum,
        "worst_shift": safe.get("worst_shift"),
        "per_shift_safe_threshold": safe.get("per_shift", {}),
        "rule": safe.get("rule"),
        "fitted_on": f"val ({val['shifts']['none']['n_images']} images), device pipeline",
        "val_sensitivity_at_in_distribution_threshold": {
            name: row["sensitivity"] for name, row in val["shifts"].items()
        },
    }
    manifest = read_manifest(bundle_dir)
    figures = dict(manifest.metrics)
    figures["shift_threshold"] = record
    if held_out is not None:
        figures["held_out_sources"] = held_out.pop("figures")
        figures["held_out_threshold"] = held_out
    else:
        figures.pop("held_out_threshold", None)
        figures.pop("held_out_sources", None)
    figures["int8_test"] = {
        **{k: test[k] for k in TEST_METRIC_KEYS if k in test},
        "referral_threshold": threshold,
        "measured_with": "skinscan eval (device pipeline from the JPEGs) at the shipped threshold",
    }
    rewrite_bundle(
        bundle_dir, manifest, calibration={"referral_threshold": threshold}, metrics=figures
    )
    # The subgroup figures were measured at the earlier threshold: measure them again.
    write_test_subgroups(bundle_dir, split_csv, images_dir, workers=workers)
    return record
