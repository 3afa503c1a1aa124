"""The in-memory store: for tests, and the app's fallback when nothing can be saved."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timezone

import numpy as np

from device.errors import StorageError
from device.records.api import (
    ClosesOnExit,
    InvalidRecordError,
    ScanRecord,
    StoreNotice,
    StoreReadOnlyError,
)
from device.records.qr import validate_patient_ref
from device.records.schema import RecordSummary
from device.records.validation import parse_time, validate_record

log = logging.getLogger(__name__)


class MemoryScanStore(ClosesOnExit):
    """A :class:`ScanStore` in memory: for tests, and the fallback when nothing can be saved.

    Args:
        read_only_reason: when given, every save raises
            :class:`StoreReadOnlyError` with this message (the app keeps
            scanning and shows it), and a "read_only" notice is set.
        device_id: this device's id.

    Attributes:
        writable: False when saves are refused.
        notices: things to show on screen at start.
    """

    def __init__(self, read_only_reason: str | None = None, device_id: str = "memory") -> None:
        self.device_id = device_id
        self.read_only_reason = read_only_reason
        self.writable = read_only_reason is None
        self.notices: list[StoreNotice] = []
        if read_only_reason:
            self.notices.append(StoreNotice("read_only", read_only_reason))
        self._records: dict[str, ScanRecord] = {}
        self._lock = threading.Lock()
        self._closed = False

    def save(self, record: ScanRecord) -> str:
        """Keep a copy of ``record`` (same checks as the SQLite store); return its scan id."""
        if self.read_only_reason:
            raise StoreReadOnlyError(self.read_only_reason)
        validate_record(record)
        with self._lock:
            self._check_open()
            if record.scan_id in self._records:
                raise StorageError(f"scan {record.scan_id} is saved already")
            if record.corrects is not None and record.corrects not in self._records:
                raise InvalidRecordError(f"the corrected scan {record.corrects} does not exist")
            self._records[record.scan_id] = frozen_copy(record)
        return record.scan_id

    def get(self, scan_id: str, *, salvage: bool = False) -> ScanRecord:
        """Return a record by id (nothing in memory is ever damaged). Raises KeyError."""
        with self._lock:
            self._check_open()
            return self._records[scan_id]

    def history(
        self, patient_ref: str | None = None, body_site: str | None = None, limit: int = 100
    ) -> list[ScanRecord]:
        """Records newest first, optionally filtered by patient reference and body site."""
        if patient_ref is not None:
            patient_ref = validate_patient_ref(patient_ref)
        with self._lock:
            self._check_open()
            records = list(self._records.values())
        chosen = [
            (i, r)
            for i, r in enumerate(records)
            if (patient_ref is None or r.patient_ref == patient_ref)
            and (body_site is None or r.body_site == body_site)
        ]
        chosen.sort(key=lambda ir: (parse_time(ir[1].created_at), ir[0]), reverse=True)
        return [r for _, r in chosen[: int(limit)]]

    def summaries(
        self,
        since: datetime | None = None,
        patient_ref: str | None = None,
        body_site: str | None = None,
    ) -> list[RecordSummary]:
        """Plain fields of records, oldest first."""
        records = list(reversed(self.history(patient_ref, body_site, limit=len(self._records))))
        if since is not None:
            when = since if since.tzinfo else since.replace(tzinfo=timezone.utc)
            records = [r for r in records if parse_time(r.created_at) >= when]
        return [
            RecordSummary(
                scan_id=r.scan_id,
                created_at=r.created_at,
                label=r.label,
                risk_tier=r.risk_tier,
                p_malignant=float(r.p_malignant),
                body_site=r.body_site,
                operator=r.operator,
                has_patient_ref=r.patient_ref is not None,
                corrects=r.corrects,
                bundle_id=r.bundle_id,
                body_side=r.body_side,
                lesion=r.lesion,
                bundle_label=r.bundle_label,
                mm_per_px=r.mm_per_px,
            )
            for r in records
        ]

    def record_export(self, file_name: str, scan_ids: Sequence[str]) -> None:
        """Exports from memory are not logged (there is nothing durable to log into)."""
        log.info("exported %d in-memory records to %s", len(scan_ids), file_name)

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, scan_id: object) -> bool:
        """Whether a record with this scan id is saved."""
        return scan_id in self._records

    def close(self) -> None:
        """Forget nothing, but refuse further use."""
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("the scan store is closed")


def frozen_copy(record: ScanRecord) -> ScanRecord:
    def freeze(a: np.ndarray | None) -> np.ndarray | None:
        if a is None:
            return None
        copy = np.array(a, copy=True)
        copy.flags.writeable = False
        return copy

    return replace(
        record,
        image=freeze(record.image),
        heatmap=freeze(record.heatmap),
        probabilities=dict(record.probabilities),
        quality=dict(record.quality),
        extra=dict(record.extra),
        damaged=dict(record.damaged),
    )
