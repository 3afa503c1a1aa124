"""Give a finished bundle spec v6: its frames' illuminant clamped into the training range.

A model trained on the archive's own colours (spec 3) is misled by a camera whose
white balance the archive never had, and fully colour-normalising its input takes
away what it learned from the archive's colours. Spec v6 sits between the two
(:func:`device.imaging.colour.clamped_target`): frames whose illuminant lies
inside the training images' range are left exactly as photographed, and frames
outside it are relit to the range's edge.

This step needs no TensorFlow and no retraining. From the run's ``split.csv`` and
images it:

1. fits the illuminant region on the **training** split's working images;
2. copies the bundle to a new folder under a new bundle id (the model files are
   unchanged, but a record must say which preprocessing produced it), with the
   v6 spec and without the previous spec's test, subgroup and shift figures;
3. refits the softmax temperature and the in-distribution referral threshold on
   the **validation** outputs of the device pipeline under v6, with the same rule
   as ``skinscan convert`` (sensitivity >= target at the given confidence);
4. refits the familiarity check under v6 (training and validation images);
5. runs the threshold-under-shift step (and, given the recipe's leave-one-source-out
   folds, the held-out-source cap), which also re-measures the test figures;
6. measures the test split per sex, age band, localization, source and skin tone at the
   final threshold (:mod:`conversion.subgroups`).

The test split chooses nothing.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from conversion.held_out_threshold import Fold
from conversion.subgroups import write_test_subgroups
from device import metrics
from device.errors import DatasetError, SkinScanError
from device.imaging.io import read_image
from device.imaging.pipeline import to_working_size
from device.runtime.bundle import read_manifest
from device.runtime.classifier import softmax
from training.calibration import pseudo_logits, refit_calibration
from training.colour_region import clamped_spec

log = logging.getLogger(__name__)

DEFAULT_QUANTILE = 0.975
# Figures measured under the previous spec: they no longer describe the new bundle.
STALE_METRICS = ("int8_test", "subgroups_int8_test", "shift_threshold", "familiarity")


def respecced_copy(source: Path, out: Path, **update: Any) -> Any:
    """Copy bundle ``source`` into ``out`` with manifest fields replaced; returns the manifest.

    The files are copied unchanged and every checksum is recomputed.
    """
    from conversion.bundle_rewrite import rewrite_bundle

    shutil.copytree(source, out, dirs_exist_ok=True)
    return rewrite_bundle(out, read_manifest(out).model_copy(update=update))


def clamp_bundle_colour(
    bundle_dir: str | Path,
    out_dir: str | Path,
    split_csv: str | Path,
    images_dir: str | Path | Sequence[str | Path],
    *,
    quantile: float = DEFAULT_QUANTILE,
    bundle_id: str | None = None,
    min_sensitivity: float = 0.90,
    confidence: float = 0.95,
    workers: int | None = None,
    seed: int = 0,
    shift_threshold: bool = True,
    held_out_folds: Sequence[Fold] | None = None,
) -> dict[str, Any]:
    """Write a copy of ``bundle_dir`` with spec v6 to ``out_dir`` (see the module docstring).

    Returns:
        The ``metrics.colour_clamp`` record written to the new manifest.

    Raises:
        SkinScanError: the bundle is not spec 3, or ``out_dir`` is not empty.
        DatasetError: the split lacks training or validation images.
    """
    from conversion.bundle_rewrite import rewrite_bundle
    from conversion.refit_familiarity import refit_familiarity
    from conversion.shift_threshold import apply_shift_threshold
    from device.evaluation.runner import read_labelled_csv, run_images

    source, out = Path(bundle_dir), Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise SkinScanError(f"{out} is not empty")
    manifest = read_manifest(source)
    train = read_labelled_csv(split_csv, images_dir, "train")[0]
    val = read_labelled_csv(split_csv, images_dir, "val")[0]
    if len(train) < 3 or not val:
        raise DatasetError(f"{split_csv}: need training and validation images")
    long_side = int(manifest.preprocessing.get("work_long_side", 200))
    working = (to_working_size(read_image(i.path), long_side)[0] for i in train)
    spec = clamped_spec(dict(manifest.preprocessing), working, quantile)
    region = spec.colour.region
    assert region is not None
    log.info("colour clamp: region radius %.3f at q=%s of %d training images",
             region.radius, quantile, len(train))  # fmt: skip

    respecced_copy(
        source,
        out,
        preprocessing=spec.to_dict(),
        bundle_id=bundle_id or f"{manifest.bundle_id}-clamp",
        metrics={k: v for k, v in manifest.metrics.items() if k not in STALE_METRICS},
    )

    before = manifest.calibration
    run = run_images(out, val, workers=workers)
    temperature, threshold = refit_calibration(
        run.probabilities, run.labels, before.temperature, min_sensitivity, confidence
    )
    val_probs = softmax(pseudo_logits(run.probabilities, before.temperature), temperature)
    record = {
        "spec_version": 6,
        "quantile": quantile,
        "radius": region.radius,
        "unusual_quantile": region.unusual_quantile,
        "unusual_radius": region.unusual_radius,
        "fitted_on": f"train ({len(train)} images), Shades of Gray p = 6 on the working image",
        "source_bundle": manifest.bundle_id,
        "calibration_before": {
            "temperature": before.temperature,
            "referral_threshold": float(
                (manifest.metrics.get("shift_threshold") or {}).get(
                    "in_distribution_threshold", before.referral_threshold
                )
            ),
        },
        "calibration_rule": {
            "min_sensitivity_target": min_sensitivity,
            "threshold_confidence": confidence,
        },
        "val": {
            "n_images": len(run.labels),
            "balanced_accuracy": metrics.balanced_accuracy(run.labels, val_probs),
            "malignant_auc": metrics.malignant_auc(run.labels, val_probs),
            "sensitivity": metrics.sensitivity(run.labels, val_probs, threshold),
            "specificity": metrics.specificity(run.labels, val_probs, threshold),
            "ece": metrics.ece(run.labels, val_probs),
            "referral_threshold": threshold,
        },
    }
    current = read_manifest(out)
    rewrite_bundle(
        out,
        current,
        calibration={"temperature": temperature, "referral_threshold": threshold},
        metrics={**current.metrics, "colour_clamp": metrics.json_safe(record)},
    )
    log.info("colour clamp: temperature %.3f, in-distribution threshold %.4f", temperature,
             threshold)  # fmt: skip
    refit_familiarity(out, split_csv, images_dir, seed=seed)
    if shift_threshold:
        apply_shift_threshold(
            out, split_csv, images_dir, workers=workers, seed=seed, held_out_folds=held_out_folds
        )
    else:
        write_test_subgroups(out, split_csv, images_dir, workers=workers)
    return record
