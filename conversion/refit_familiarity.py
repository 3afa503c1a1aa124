"""Fit a bundle's familiarity check from images, for bundles converted before it existed.

``skinscan convert`` fits the check from the training run's cache. A bundle whose
run folder is gone (the v3 bundle) can still get one: the device pipeline runs
on training images (the density) and validation images (the threshold) of the
run's ``split.csv``, and the test split's fire rate is recorded. Nothing is
chosen on the test split.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from conversion.bundle_rewrite import rewrite_bundle
from conversion.convert import representative_indices
from device.errors import DatasetError
from device.evaluation.runner import read_labelled_csv
from device.imaging.io import read_image
from device.runtime.analyzer import Analyzer
from device.runtime.bundle import read_manifest
from device.runtime.familiarity import (
    FAMILIARITY_FILE,
    VALIDATION_QUANTILE,
    fit_feature_density,
    pooled,
)

log = logging.getLogger(__name__)


def _features(analyzer: Analyzer, paths: list[str]) -> np.ndarray:
    rows = [pooled(analyzer.analyze(read_image(p), explain=False).feature_map) for p in paths]
    return np.stack(rows)


def refit_familiarity(
    bundle_dir: str | Path,
    split_csv: str | Path,
    images_dir: str | Path,
    *,
    n_train: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit the familiarity check of ``bundle_dir`` from images and write it into the bundle.

    Returns:
        The manifest's familiarity entry plus the test fire rates.

    Raises:
        DatasetError: too few training or validation images.
    """
    bundle_dir = Path(bundle_dir)
    analyzer = Analyzer.from_path(bundle_dir)
    splits = {
        name: read_labelled_csv(split_csv, images_dir, name)[0] for name in ("train", "val", "test")
    }
    train = splits["train"]
    if len(train) <= 32 or not splits["val"]:
        raise DatasetError(f"{split_csv}: need over 32 training and some validation images")
    chosen = representative_indices(
        np.array([i.label for i in train]), min(n_train, len(train)), seed
    )
    log.info("familiarity: %d training, %d validation images", len(chosen), len(splits["val"]))
    density = fit_feature_density(
        _features(analyzer, [train[i].path for i in chosen]),
        val_features := _features(analyzer, [i.path for i in splits["val"]]),
    )
    test_features = _features(analyzer, [i.path for i in splits["test"]])
    malignant = np.array([analyzer.labels[i.label].malignant for i in splits["test"]])
    unfamiliar_test = density.scores(test_features) > density.threshold
    spec = {
        "file": FAMILIARITY_FILE,
        "threshold": density.threshold,
        "components": int(density.components.shape[1]),
        "fitted_on": (
            f"int8 pooled features of {len(chosen)} training images through the device "
            f"pipeline; threshold at the {100 * VALIDATION_QUANTILE:.1f}th percentile of "
            f"{len(val_features)} validation images"
        ),
        "validation_fire_rate": float(np.mean(density.scores(val_features) > density.threshold)),
    }
    manifest = read_manifest(bundle_dir)
    metrics = dict(manifest.metrics)
    report = {
        **spec,
        "test_fire_rate": float(np.mean(unfamiliar_test)),
        "test_fire_rate_malignant": float(np.mean(unfamiliar_test[malignant])),
    }
    metrics["familiarity"] = report
    rewrite_bundle(
        bundle_dir,
        manifest,
        metrics=metrics,
        familiarity=spec,
        extra_files={FAMILIARITY_FILE: density.to_bytes()},
    )
    return report
