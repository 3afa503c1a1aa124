"""Queries over saved records: filters, plain summaries, and reading every record in turn."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any, Protocol

from device.errors import StorageError
from device.records.api import ScanRecord
from device.records.qr import validate_patient_ref
from device.records.schema import RecordSummary, cell


class SummaryStore(Protocol):
    """What :func:`iter_records` needs of a store."""

    def summaries(
        self,
        since: datetime | None = None,
        patient_ref: str | None = None,
        body_site: str | None = None,
    ) -> list[RecordSummary]: ...

    def get(self, scan_id: str) -> ScanRecord: ...


def where_clause(
    index_of: Callable[[str], str],
    patient_ref: str | None,
    body_site: str | None,
    since: datetime | None,
) -> tuple[str, list[Any]]:
    """The ``WHERE`` clause and its arguments for the scans table.

    Args:
        index_of: the keyed HMAC that stands for a patient reference in the database.
        patient_ref: only this patient's records (validated first).
        body_site: only this body site.
        since: only records at or after this time (naive means UTC).

    Raises:
        PatientRefError: ``patient_ref`` is not an opaque reference.
    """
    clauses: list[str] = []
    args: list[Any] = []
    if patient_ref is not None:
        clauses.append("patient_ref_index = ?")
        args.append(index_of(validate_patient_ref(patient_ref)))
    if body_site is not None:
        clauses.append("body_site = ?")
        args.append(body_site)
    if since is not None:
        when = since if since.tzinfo else since.replace(tzinfo=timezone.utc)
        clauses.append("created_ts >= ?")
        args.append(when.timestamp())
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", args


def summary_of_row(r: sqlite3.Row) -> RecordSummary:
    """A row's plain fields (nothing is decrypted)."""
    return RecordSummary(
        scan_id=r["scan_id"],
        created_at=r["created_at"],
        label=r["label"],
        risk_tier=r["risk_tier"],
        p_malignant=r["p_malignant"],
        body_site=r["body_site"],
        operator=r["operator"],
        has_patient_ref=r["patient_ref_index"] is not None,
        corrects=r["corrects"],
        bundle_id=r["bundle_id"],
        body_side=cell(r, "body_side"),
        lesion=cell(r, "lesion"),
        bundle_label=cell(r, "bundle_label"),
        mm_per_px=cell(r, "mm_per_px"),
    )


def iter_records(store: SummaryStore, since: datetime | None = None) -> Iterator[ScanRecord]:
    """Yield every record (oldest first), decrypted, one at a time."""
    for summary in store.summaries(since=since):
        yield store.get(summary.scan_id)


def iter_exportable(
    store: Any,
    since: datetime | None,
    skipped: dict[str, str],
    salvaged: dict[str, str] | None = None,
) -> Iterator[ScanRecord]:
    """Every record that can leave the device, oldest first, for an export.

    A record whose heatmap alone is damaged is yielded without it (photo and result
    intact, the problem in ``record.damaged`` and in ``salvaged``); a record that
    cannot be read at all (its row altered, its photo damaged) is left out and listed
    in ``skipped`` (scan id -> problem). Nothing is raised for one bad record.
    """
    for summary in store.summaries(since=since):
        try:
            record = store.get(summary.scan_id, salvage=True)
        except StorageError as exc:  # TamperError is one
            skipped[summary.scan_id] = str(exc)
            continue
        if record.damaged and salvaged is not None:
            salvaged[record.scan_id] = "; ".join(f"{k}: {v}" for k, v in record.damaged.items())
        yield record
