"""The patient on the device: body sites, the patient line, and follow-up pairs.

A patient is set by reading their card (an opaque reference, see
:mod:`device.records.qr`); a body site is chosen from :data:`BODY_SITES`, with its
side for a paired site (:data:`PAIRED_SITES`) and a lesion label within the site
(:data:`~device.records.api.LESION_LABELS`). All of it goes into every scan saved
until the patient is changed. Earlier scans of the same lesion (patient, site,
side and label) are offered side by side, as the clinic's follow-up view does.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

from device.app.events import ResultView
from device.records.api import BODY_SIDES, LESION_LABELS, lesion_text

__all__ = [
    "BODY_SIDES",
    "BODY_SITES",
    "LESION_LABELS",
    "PAIRED_SITES",
    "area_line",
    "change_line",
    "earlier_same_lesion",
    "earlier_same_site",
    "lesion_text",
    "patient_line",
    "when_text",
]

# HAM10000's localization vocabulary, with its limbs split the way a health worker
# names them (HAM10000's "upper extremity" is upper arm or forearm, "lower extremity"
# thigh or lower leg) and its rare sites (ear, genital, acral, trunk) under "other".
BODY_SITES: tuple[str, ...] = (
    "face",
    "scalp",
    "neck",
    "chest",
    "back",
    "abdomen",
    "upper arm",
    "forearm",
    "hand",
    "thigh",
    "lower leg",
    "foot",
    "other",
)
# Sites a body has two of: the side is asked, so that two lesions are never mixed up.
PAIRED_SITES: frozenset[str] = frozenset(
    {"upper arm", "forearm", "hand", "thigh", "lower leg", "foot"}
)


def patient_line(
    patient_ref: str | None,
    body_site: str | None,
    body_side: str | None = None,
    lesion: str | None = None,
) -> str:
    """What every screen shows while a patient is set ("" when none is)."""
    if not patient_ref:
        return ""
    return (
        f"Patient {patient_ref} · {lesion_text(body_site, body_side, lesion) or 'site not chosen'}"
    )


def when_text(created_at: str) -> str:
    """An ISO-8601 time as a person reads it, always in UTC: "2025-03-01 14:02 UTC"."""
    if not created_at:
        return ""
    try:
        when = datetime.fromisoformat(created_at.replace("Z", "+00:00"))
    except ValueError:
        return created_at
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def earlier_same_lesion(items: Sequence[ResultView], index: int) -> list[int]:
    """Indices of scans older than ``items[index]`` of the same lesion.

    ``items`` are newest first (as history loads them). Two scans are of the same
    lesion when the patient, body site, side and lesion label are all equal; a scan
    without a patient, a site or a lesion label has no follow-up: comparing it could
    pair two people's, or two of one person's, lesions.
    """
    shown = items[index]
    if not (shown.patient_ref and shown.body_site and shown.lesion):
        return []
    key = (shown.patient_ref, shown.body_site, shown.body_side, shown.lesion)
    return [
        i
        for i in range(index + 1, len(items))
        if (items[i].patient_ref, items[i].body_site, items[i].body_side, items[i].lesion) == key
    ]


# The old name: scans of one site are compared only when they are of one lesion.
earlier_same_site = earlier_same_lesion


def area_mm2(item: ResultView) -> float | None:
    """The lesion's area in mm² (its share of the photo times the photo's area), or None
    when the scan has no scale or no measured area."""
    if item.lesion_area is None or not item.mm_per_px:
        return None
    side_mm = item.image.shape[1] * item.mm_per_px
    return item.lesion_area * side_mm * side_mm


def area_line(earlier: ResultView, later: ResultView) -> str:
    """The change in lesion area, when both scans have a scale ("" otherwise)."""
    before, after = area_mm2(earlier), area_mm2(later)
    if before is None or after is None:
        missing = "no scale" if not (earlier.mm_per_px and later.mm_per_px) else "not measured"
        return f"Lesion area: {missing}"
    text = f"Lesion area {before:.1f} → {after:.1f} mm²"
    if before > 0:
        text += f" ({after / before - 1.0:+.0%})"
    return text


def change_line(earlier: ResultView, later: ResultView) -> str:
    """What changed between two scans: days apart and P(malignant) before and after."""
    text = f"P(malignant) {earlier.p_malignant:.0%} → {later.p_malignant:.0%}"
    try:
        start, end = (
            datetime.fromisoformat(v.created_at.replace("Z", "+00:00")) for v in (earlier, later)
        )
    except ValueError:
        return text
    days = (end - start).total_seconds() / 86400.0
    if days < 1:
        return f"same day · {text}"
    return f"{days:.0f} day{'s' if round(days) != 1 else ''} later · {text}"
