"""The record type and the store interface shared by the app and the stores.

The controller only talks to :class:`ScanStore`; the SQLite store and the
in-memory store used in tests both implement it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class ScanRecord:
    """One saved scan. Images are RGB uint8 arrays; they are encrypted at rest.

    Attributes:
        scan_id: UUID4 string, set by the caller.
        created_at: ISO-8601 UTC timestamp.
        device_id: stable id of the device that made the scan.
        image: the analysed photo (the ROI crop shown on screen), RGB uint8.
        heatmap: the Grad-CAM overlay or map as RGB uint8, or None.
        probabilities: class code -> calibrated probability, all classes.
        label: the chosen class code.
        risk_tier: "refer", "monitor" or "uncertain".
        p_malignant: P(mel) + P(bcc) + P(akiec).
        quality: quality metric name -> value.
        bundle_id: the model bundle's id; bundle_sha256 its model.tflite sha256.
        app_version: skinscan version that made the record.
        patient_ref: opaque reference (from a QR card); never a name. Encrypted.
        operator: optional operator id.
        body_site: optional body site, e.g. "back".
        corrects: scan_id of an earlier record this one corrects (audit trail).
    """

    scan_id: str
    created_at: str
    device_id: str
    image: np.ndarray
    heatmap: np.ndarray | None
    probabilities: Mapping[str, float]
    label: str
    risk_tier: str
    p_malignant: float
    quality: Mapping[str, float]
    bundle_id: str
    bundle_sha256: str
    app_version: str
    patient_ref: str | None = None
    operator: str | None = None
    body_site: str | None = None
    corrects: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class ScanStore(Protocol):
    """Append-only store of scans."""

    def save(self, record: ScanRecord) -> str:
        """Durably save ``record`` and return its scan id. Raises StorageError/DiskFullError."""
        ...

    def get(self, scan_id: str) -> ScanRecord:
        """Load one record, decrypting it. Raises KeyError or TamperError."""
        ...

    def history(
        self, patient_ref: str | None = None, body_site: str | None = None, limit: int = 100
    ) -> Sequence[ScanRecord]:
        """Records newest first, optionally filtered by patient reference and body site."""
        ...

    def close(self) -> None:
        """Release the database."""
        ...
