"""Follow-up: what changed between two scans of the same lesion.

The lesion area is measured on each scan's saved photo (the analysed square)
with the device's own preprocessing (:func:`device.imaging.pipeline.preprocess`:
hair removal, then k-means segmentation), as the fraction of the square that
is lesion. The scanner crops the whole short side of the frame, so at the
dermoscope's fixed distance the fraction is comparable between visits. When
both scans carry their photo's scale (``mm_per_px``, from the scanner's
configured field width), the areas are also given in mm².

Two scans are of the same lesion only when their patient, body site, side and
lesion label are equal and the label is set (:attr:`ScanRecord.lesion_key`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from device.app.lesion_area import lesion_area_fraction as _device_area_fraction
from device.records.api import ScanRecord

TIER_ORDER = {"monitor": 0, "uncertain": 1, "refer": 2}


def lesion_area_fraction(photo: np.ndarray, spec: object | None = None) -> float | None:
    """Fraction of ``photo`` that the device's segmentation calls lesion, or None if none found.

    Args:
        photo: a scan's saved photo, RGB uint8.
        spec: the bundle's ``PreprocessSpec`` (default: the current default spec).
    """
    return _device_area_fraction(photo, spec)


def same_lesion(a: ScanRecord, b: ScanRecord) -> bool:
    """Whether two scans are of one lesion: same patient, site, side and lesion label."""
    return bool(a.patient_ref and a.body_site and a.lesion) and a.lesion_key == b.lesion_key


def different_lesions(a: ScanRecord, b: ScanRecord) -> bool:
    """Whether two labelled scans are known to be of different lesions (site, side or label
    differ). Scans saved before lesion labels existed are not known to differ."""
    return bool(a.lesion and b.lesion) and a.lesion_key[1:] != b.lesion_key[1:]


def area_mm2(record: ScanRecord, fraction: float | None) -> float | None:
    """The lesion's area in mm² from its share of the photo, or None without a scale."""
    if fraction is None or not record.mm_per_px:
        return None
    side_mm = record.image.shape[1] * float(record.mm_per_px)
    return fraction * side_mm * side_mm


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
        same_lesion: whether both are of one lesion (patient, site, side, lesion label).
        area_mm2_earlier, area_mm2_later: the areas in mm², or None without a scale.
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
    area_mm2_earlier: float | None = None
    area_mm2_later: float | None = None

    @property
    def area_mm2_change(self) -> float | None:
        """Later minus earlier area in mm², when both scans have a scale."""
        if self.area_mm2_earlier is None or self.area_mm2_later is None:
            return None
        return self.area_mm2_later - self.area_mm2_earlier


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
    same = same_lesion(earlier, later)
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
        area_mm2_earlier=area_mm2(earlier, area_a),
        area_mm2_later=area_mm2(later, area_b),
    )
