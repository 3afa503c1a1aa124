"""CSV exports of the clinicians' reviews and confirmed diagnoses.

RFC 4180 CSV (``csv`` module: quoted where needed, CRLF line ends), UTF-8. A text
cell that a spreadsheet would run as a formula (starting with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return) is prefixed with ``'``, so a note such
as ``=HYPERLINK(...)`` is shown as text, never run (CSV formula injection).
The files carry no patient reference: the scan id leads back to the clinic app.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

from clinic.store import ClinicStore
from device.records.store import RecordSummary

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

SCAN_COLUMNS = (
    "scan_id",
    "scan_time",
    "scanner",
    "site",
    "device_tier",
    "device_label",
    "p_malignant",
    "bundle_id",
    "bundle_label",
)
REVIEW_COLUMNS = (*SCAN_COLUMNS, "reviewer", "reviewed_at", "verdict", "diagnosis", "note")
CONFIRMATION_COLUMNS = (
    *SCAN_COLUMNS,
    "entry",
    "confirmed_by",
    "confirmed_at",
    "diagnosis",
    "basis",
    "status",
    "superseded_by_entry",
    "note",
)


def safe_cell(value: Any) -> Any:
    """``value``, with ``'`` put before a text that a spreadsheet would take for a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return "" if value is None else value


def to_csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A CSV document: the header, then each row, every cell through :func:`safe_cell`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([safe_cell(h) for h in header])
    for row in rows:
        writer.writerow([safe_cell(v) for v in row])
    return out.getvalue()


def _scan_cells(
    scan_id: str,
    summaries: dict[str, RecordSummary],
    scanner_of: dict[str, str],
    site_of: dict[str, str],
) -> list[Any]:
    summary = summaries.get(scan_id)
    scanner = scanner_of.get(scan_id, "")
    if summary is None:  # not expected: reviews and confirmations need a stored scan
        return [scan_id, "", scanner, site_of.get(scanner, ""), "", "", "", "", ""]
    return [
        scan_id,
        summary.created_at,
        scanner,
        site_of.get(scanner, ""),
        summary.risk_tier,
        summary.label,
        f"{summary.p_malignant:.4f}",
        summary.bundle_id,
        getattr(summary, "bundle_label", None) or "",  # "adapted for <site>, <date>"
    ]


def _context(store: ClinicStore) -> tuple[dict[str, RecordSummary], dict[str, str], dict[str, str]]:
    summaries = {s.scan_id: s for s in store.scans.summaries()}
    return summaries, store.scanner_of_scans(), store.site_of_scanners()


def reviews_csv(store: ClinicStore) -> str:
    """Every review, oldest first, with the scan's device result, scanner and site."""
    summaries, scanner_of, site_of = _context(store)
    rows = (
        [
            *_scan_cells(r.scan_id, summaries, scanner_of, site_of),
            r.reviewer,
            r.created_at,
            r.verdict,
            r.diagnosis or "",
            r.note,
        ]
        for r in store.all_reviews()
    )
    return to_csv(REVIEW_COLUMNS, rows)


def confirmations_csv(store: ClinicStore) -> str:
    """Every confirmed diagnosis, oldest first; superseded ones say so and by which entry."""
    summaries, scanner_of, site_of = _context(store)
    rows = (
        [
            *_scan_cells(c.scan_id, summaries, scanner_of, site_of),
            c.seq,
            c.confirmed_by,
            c.confirmed_at,
            c.diagnosis,
            c.basis,
            "superseded" if c.superseded else "current",
            c.superseded_by or "",
            c.note,
        ]
        for c in store.confirmations()
    )
    return to_csv(CONFIRMATION_COLUMNS, rows)
