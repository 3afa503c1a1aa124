"""Checks a record must pass before it is saved (shared by every store and the clinic importer)."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import numpy as np

from device.records.api import (
    BODY_SIDES,
    LESION_LABELS,
    RISK_TIERS,
    InvalidRecordError,
    PatientRefError,
    ScanRecord,
)
from device.records.qr import validate_patient_ref

__all__ = [
    "check_image",
    "check_lesion_identity",
    "float_map",
    "is_uuid",
    "parse_time",
    "validate_record",
]


def parse_time(value: str) -> datetime:
    """An ISO-8601 time; a trailing Z and a missing zone both mean UTC."""
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def is_uuid(value: object) -> bool:
    """Whether ``value`` is a UUID string in canonical form."""
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def float_map(name: str, mapping: Mapping[str, Any]) -> dict[str, float]:
    """Text keys to finite floats. Raises InvalidRecordError, naming ``name``."""
    out: dict[str, float] = {}
    for key, value in mapping.items():
        if not isinstance(key, str):
            raise InvalidRecordError(f"{name} keys must be text")
        number = float(value)
        if not math.isfinite(number):
            raise InvalidRecordError(f"{name}[{key!r}] is not a finite number")
        out[key] = number
    return out


def check_image(name: str, image: object, allow_grey: bool) -> np.ndarray:
    """A non-empty uint8 RGB (or, if allowed, greyscale) image. Raises InvalidRecordError."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise InvalidRecordError(f"the {name} must be a uint8 array")
    grey_ok = allow_grey and image.ndim == 2
    if not grey_ok and not (image.ndim == 3 and image.shape[2] == 3):
        raise InvalidRecordError(f"the {name} must be an RGB image, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidRecordError(f"the {name} is empty")
    return image


DAMAGEABLE_PARTS = ("heatmap",)
MAX_BUNDLE_LABEL = 200


def check_lesion_identity(record: ScanRecord) -> None:
    """Side, lesion label, scale, bundle label and damage notes. Raises InvalidRecordError."""
    if record.body_side is not None and record.body_side not in BODY_SIDES:
        raise InvalidRecordError(f"body_side must be one of {', '.join(BODY_SIDES)} or empty")
    if record.lesion is not None and record.lesion not in LESION_LABELS:
        raise InvalidRecordError(f"lesion must be one of {', '.join(LESION_LABELS)} or empty")
    if record.mm_per_px is not None:
        scale = float(record.mm_per_px)
        if not (math.isfinite(scale) and 0.0 < scale < 10.0):
            raise InvalidRecordError("mm_per_px must be a positive number of millimetres")
    label = record.bundle_label
    if label is not None and (not isinstance(label, str) or len(label) > MAX_BUNDLE_LABEL):
        raise InvalidRecordError(f"bundle_label must be text of at most {MAX_BUNDLE_LABEL} chars")
    for part, problem in record.damaged.items():
        if part not in DAMAGEABLE_PARTS or not isinstance(problem, str):
            raise InvalidRecordError(f"damaged names a part that cannot be left out: {part!r}")
        if part == "heatmap" and record.heatmap is not None:
            raise InvalidRecordError("a record with its heatmap cannot say the heatmap is damaged")


def validate_record(record: ScanRecord) -> str | None:
    """Check a record before saving; return its validated patient reference.

    Raises:
        InvalidRecordError: a field is malformed. Nothing was written.
    """
    if not is_uuid(record.scan_id):
        raise InvalidRecordError("scan_id must be a UUID string in canonical form")
    try:
        parse_time(record.created_at)
    except (TypeError, ValueError):
        raise InvalidRecordError(
            f"created_at is not an ISO-8601 time: {record.created_at!r}"
        ) from None
    check_image("image", record.image, allow_grey=False)
    if record.heatmap is not None:
        check_image("heatmap", record.heatmap, allow_grey=True)
    probabilities = float_map("probabilities", record.probabilities)
    if record.label not in probabilities:
        raise InvalidRecordError(f"label {record.label!r} is not one of the probabilities")
    if record.risk_tier not in RISK_TIERS:
        raise InvalidRecordError(f"risk_tier must be one of {', '.join(RISK_TIERS)}")
    if not -1e-6 <= float(record.p_malignant) <= 1.0 + 1e-6:  # a sum of floats may pass 1
        raise InvalidRecordError("p_malignant must be within [0, 1]")
    float_map("quality", record.quality)
    if record.corrects is not None:
        if not is_uuid(record.corrects):
            raise InvalidRecordError("corrects must be the scan_id of an earlier record")
        if record.corrects == record.scan_id:
            raise InvalidRecordError("a record cannot correct itself")
    if any(not isinstance(k, str) or not isinstance(v, str) for k, v in record.extra.items()):
        raise InvalidRecordError("extra must map text to text")
    check_lesion_identity(record)
    if record.patient_ref is None:
        return None
    try:
        return validate_patient_ref(record.patient_ref)
    except PatientRefError as exc:
        raise InvalidRecordError(f"patient reference refused: {exc}") from None
