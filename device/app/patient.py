"""The patient on the device: body sites, the patient line, and follow-up pairs.

A patient is set by reading their card (an opaque reference, see
:mod:`device.records.qr`); a body site is chosen from :data:`BODY_SITES`. Both
go into every scan saved until the patient is changed. Earlier scans of the
same patient and site are offered side by side, as the clinic's follow-up view
does.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

from device.app.events import ResultView

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


def patient_line(patient_ref: str | None, body_site: str | None) -> str:
    """What every screen shows while a patient is set ("" when none is)."""
    if not patient_ref:
        return ""
    return f"Patient {patient_ref} · {body_site or 'site not chosen'}"


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


def earlier_same_site(items: Sequence[ResultView], index: int) -> list[int]:
    """Indices of scans older than ``items[index]`` of the same patient and body site.

    ``items`` are newest first (as history loads them). A scan without a patient
    or without a site has no follow-up: comparing it could pair two people's lesions.
    """
    shown = items[index]
    if not shown.patient_ref or not shown.body_site:
        return []
    return [
        i
        for i in range(index + 1, len(items))
        if items[i].patient_ref == shown.patient_ref and items[i].body_site == shown.body_site
    ]


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
