"""Follow-up: what changed between two scans of the same lesion.

The lesion area is measured on each scan's saved photo (the analysed square)
with the device's own preprocessing (:func:`device.imaging.pipeline.preprocess`:
hair removal, then k-means segmentation), as the fraction of the square that
is lesion. The scanner crops the whole short side of the frame, so at the
dermoscope's fixed distance the fraction is comparable between visits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from device.records.api import ScanRecord

TIER_ORDER = {"monitor": 0, "uncertain": 1, "refer": 2}


def lesion_area_fraction(photo: np.ndarray, spec: object | None = None) -> float | None:
    """Fraction of ``photo`` that the device's segmentation calls lesion, or None if none found.

    Args:
        photo: a scan's saved photo, RGB uint8.
        spec: the bundle's ``PreprocessSpec`` (default: the current default spec).
    """
    from device.imaging.pipeline import preprocess

    pre = preprocess(photo, spec)  # type: ignore[arg-type]
    if not pre.lesion_found:
        return None
    return float(np.count_nonzero(pre.mask)) / float(pre.mask.size)


@dataclass(frozen=True)
class Comparison:
    """Two scans of one lesion, older first, and the change between them.

    Attributes:
        earlier, later: the two records.
        days: days between them.
        p_malignant_change: later minus earlier P(malignant).
        tier_change: "higher", "lower" or "same" (monitor < uncertain < refer).
        area_earlier, area_later: lesion area as a fraction of the photo, or None.
        area_change: relative change of the area (0.1 = 10% larger), or None.
        same_lesion: whether both carry the same body site (and patient).
    """

    earlier: ScanRecord
    later: ScanRecord
    days: float
    p_malignant_change: float
    tier_change: str
    area_earlier: float | None
    area_later: float | None
    area_change: float | None
    same_lesion: bool


def compare(a: ScanRecord, b: ScanRecord, spec: object | None = None) -> Comparison:
    """Compare two scans (in either order) of the same patient's lesion."""
    from datetime import datetime

    earlier, later = sorted((a, b), key=lambda r: r.created_at)
    when = [datetime.fromisoformat(r.created_at.replace("Z", "+00:00")) for r in (earlier, later)]
    days = (when[1] - when[0]).total_seconds() / 86400.0
    rank = TIER_ORDER.get(later.risk_tier, 1) - TIER_ORDER.get(earlier.risk_tier, 1)
    tier_change = "higher" if rank > 0 else "lower" if rank < 0 else "same"
    area_a = lesion_area_fraction(earlier.image, spec)
    area_b = lesion_area_fraction(later.image, spec)
    change = None if not area_a or area_b is None else area_b / area_a - 1.0
    same = earlier.patient_ref == later.patient_ref and earlier.body_site == later.body_site
    return Comparison(
        earlier=earlier,
        later=later,
        days=days,
        p_malignant_change=float(later.p_malignant) - float(earlier.p_malignant),
        tier_change=tier_change,
        area_earlier=area_a,
        area_later=area_b,
        area_change=change,
        same_lesion=same,
    )
