"""Giving a patient to a scan saved without one, the append-only way.

Records are never changed, so assigning a patient saves a correction
(:func:`device.records.api.correction_of`): a new record with the same photo,
result and lesion, the patient reference set, and ``corrects`` naming the
original, which stays as the audit trail. The correction keeps the scan's own
time (follow-up orders scans by when the photo was taken) and notes when the
patient was assigned in ``extra["patient_assigned_at"]``. Lists that show one
entry per scan use :func:`current_records` to hide the originals.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any, TypeVar

from device.records.api import InvalidRecordError, ScanRecord, correction_of
from device.records.qr import validate_patient_ref

_R = TypeVar("_R")


class PatientAlreadySetError(InvalidRecordError):
    """The scan has a patient already (or was given one by a later correction)."""


def assign_patient(
    store: Any, scan_id: str, patient_ref: str, *, now: str | None = None
) -> ScanRecord:
    """Save the correction that gives scan ``scan_id`` the patient ``patient_ref``.

    Args:
        store: a scan store (:class:`~device.records.api.ScanStore`).
        scan_id: the scan saved without a patient.
        patient_ref: the patient's opaque card reference.
        now: when the patient is assigned (default: now, UTC).

    Returns:
        The saved correction. A damaged heatmap stays left out and named.

    Raises:
        KeyError: no such scan.
        PatientRefError: ``patient_ref`` is not an opaque reference.
        PatientAlreadySetError: the scan has a patient, or a later correction gave it one.
        StorageError: the original cannot be read, or the correction cannot be saved.
    """
    ref = validate_patient_ref(patient_ref)
    original = _read(store, scan_id)
    if original.patient_ref is not None:
        raise PatientAlreadySetError(
            f"scan {scan_id[:8]} has a patient already; a wrong card is fixed at the clinic"
        )
    later = _corrections_of(store, scan_id)
    if later:
        raise PatientAlreadySetError(
            f"scan {scan_id[:8]} was corrected already by scan {later[0][:8]}"
        )
    when = now or datetime.now(timezone.utc).isoformat(timespec="seconds")
    correction = correction_of(
        original,
        created_at=original.created_at,
        patient_ref=ref,
        extra={**original.extra, "patient_assigned_at": when},
    )
    store.save(correction)
    return correction


def _read(store: Any, scan_id: str) -> ScanRecord:
    """The record, without a damaged heatmap where the store can leave one out."""
    if "salvage" in inspect.signature(store.get).parameters:
        return store.get(scan_id, salvage=True)
    return store.get(scan_id)


def _corrections_of(store: Any, scan_id: str) -> list[str]:
    """Scan ids of the records that correct ``scan_id`` (summaries, or the whole history)."""
    rows = store.summaries() if hasattr(store, "summaries") else store.history(limit=10**9)
    return [r.scan_id for r in rows if r.corrects == scan_id]


def current_records(records: Iterable[_R]) -> list[_R]:
    """``records`` without those a later record in the list corrects (order kept).

    Works on anything with ``scan_id`` and ``corrects`` (records, summaries, views).
    """
    items = list(records)
    replaced = {getattr(r, "corrects", None) for r in items} - {None}
    return [r for r in items if getattr(r, "scan_id", None) not in replaced]
