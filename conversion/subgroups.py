"""The test split per subgroup, measured with the bundle's shipped threshold."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from conversion.bundle_rewrite import rewrite_bundle
from device import metrics
from device.runtime.bundle import read_manifest


def write_test_subgroups(
    bundle_dir: Path,
    split_csv: str | Path,
    images_dir: str | Path | Sequence[str | Path],
    *,
    workers: int | None = None,
) -> dict[str, Any] | None:
    """Measure the bundle per subgroup of the test split, at its threshold; write it in.

    Groups: sex, age band, localization, acquisition source (the ``dataset`` column) and
    the ITA skin-tone band of the skin around each lesion (:mod:`training.skin_tone`).
    Needs the split CSV's metadata columns (``skinscan train`` writes them); without
    them, or without test images, nothing is written and None is returned.
    """
    from device.evaluation.runner import read_labelled_csv, run_images
    from training.data import read_split_csv
    from training.report import subgroup_metrics
    from training.skin_tone import skin_tones

    rows = {r["image_id"]: r for r in read_split_csv(Path(split_csv)) if r.get("split") == "test"}
    items = read_labelled_csv(split_csv, images_dir, "test")[0]
    if not items or not all("localization" in r for r in rows.values()):
        return None
    run = run_images(bundle_dir, items, workers=workers)
    manifest = read_manifest(bundle_dir)
    threshold = manifest.calibration.referral_threshold
    found = [rows[i] for i in run.image_ids]
    path_of = {i.image_id: i.path for i in items}
    bands = [t.band for t in skin_tones([path_of[i] for i in run.image_ids], workers=workers or 2)]
    subgroups = metrics.json_safe(
        subgroup_metrics(found, run.labels, run.probabilities, threshold, bands)
    )
    rewrite_bundle(
        bundle_dir, manifest, metrics={**manifest.metrics, "subgroups_int8_test": subgroups}
    )
    return subgroups
