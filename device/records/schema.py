"""The database layout: tables, the columns a row's seal covers, and the reports built from rows."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 2
BASE_SCHEMA_VERSION = 1  # what SCHEMA creates; MIGRATIONS bring it up to SCHEMA_VERSION
TABLES_SQL = "SELECT name FROM sqlite_master WHERE type = 'table'"

SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE scans (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        scan_id TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        created_ts REAL NOT NULL,
        device_id TEXT NOT NULL,
        operator TEXT,
        body_site TEXT,
        patient_ref_index TEXT,
        label TEXT NOT NULL,
        risk_tier TEXT NOT NULL,
        p_malignant REAL NOT NULL,
        probabilities TEXT NOT NULL,
        quality TEXT NOT NULL,
        bundle_id TEXT NOT NULL,
        bundle_sha256 TEXT NOT NULL,
        app_version TEXT NOT NULL,
        corrects TEXT REFERENCES scans (scan_id),
        extra TEXT NOT NULL,
        image_file TEXT NOT NULL,
        image_sha256 TEXT NOT NULL,
        heatmap_file TEXT,
        heatmap_sha256 TEXT,
        seal BLOB NOT NULL
    )""",
    "CREATE INDEX scans_follow_up ON scans (patient_ref_index, body_site, created_ts)",
    "CREATE INDEX scans_time ON scans (created_ts)",
    """CREATE TABLE exports (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        exported_at TEXT NOT NULL,
        file TEXT NOT NULL,
        scan_ids TEXT NOT NULL
    )""",
    """CREATE TRIGGER scans_no_update BEFORE UPDATE ON scans
    BEGIN SELECT RAISE(ABORT, 'scan records are append-only'); END""",
    """CREATE TRIGGER scans_no_delete BEFORE DELETE ON scans
    BEGIN SELECT RAISE(ABORT, 'scan records are append-only'); END""",
    """CREATE TRIGGER exports_no_update BEFORE UPDATE ON exports
    BEGIN SELECT RAISE(ABORT, 'the export log is append-only'); END""",
    """CREATE TRIGGER exports_no_delete BEFORE DELETE ON exports
    BEGIN SELECT RAISE(ABORT, 'the export log is append-only'); END""",
)

# Added after schema 1 shipped; created when missing by every writable open (old
# readers ignore them). receipts: what the clinic must prove to acknowledge an export;
# acks: accepted receipts; archives: scans moved off the device, and where to.
RECEIPT_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS receipts (
        export_id TEXT PRIMARY KEY,
        proof_sha256 TEXT NOT NULL,
        scan_ids TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS acks (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        export_id TEXT NOT NULL,
        acknowledged_at TEXT NOT NULL,
        scan_ids TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS archives (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        archived_at TEXT NOT NULL,
        files TEXT NOT NULL,
        sha256s TEXT NOT NULL,
        scan_ids TEXT NOT NULL
    )""",
    *(
        f"""CREATE TRIGGER IF NOT EXISTS {table}_no_{verb} BEFORE {verb.upper()} ON {table}
        BEGIN SELECT RAISE(ABORT, 'the {table} log is append-only'); END"""
        for table in ("receipts", "acks", "archives")
        for verb in ("update", "delete")
    ),
)

# Schema version -> the statements that bring the version before it up to it, run in one
# transaction by every writable open (old rows keep seal_format 1: their seals stay valid).
MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: (
        # The lesion's key within a patient: side of a paired site and a label within it;
        # the photo's scale; how the bundle described itself; parts found damaged on import.
        "ALTER TABLE scans ADD COLUMN body_side TEXT",
        "ALTER TABLE scans ADD COLUMN lesion TEXT",
        "ALTER TABLE scans ADD COLUMN mm_per_px REAL",
        "ALTER TABLE scans ADD COLUMN bundle_label TEXT",
        "ALTER TABLE scans ADD COLUMN damaged TEXT",
        "ALTER TABLE scans ADD COLUMN seal_format INTEGER NOT NULL DEFAULT 1",
    ),
}
SEAL_FORMAT = 2  # rows saved now; a row's seal_format says which columns its seal covers

# Every column a row's seal authenticates, in a fixed order.
SEALED_COLUMNS = (
    "scan_id",
    "created_at",
    "created_ts",
    "device_id",
    "operator",
    "body_site",
    "patient_ref_index",
    "label",
    "risk_tier",
    "p_malignant",
    "probabilities",
    "quality",
    "bundle_id",
    "bundle_sha256",
    "app_version",
    "corrects",
    "extra",
    "image_file",
    "image_sha256",
    "heatmap_file",
    "heatmap_sha256",
)
# Added by schema 2; sealed (after the columns above) in rows of seal_format 2.
SEALED_COLUMNS_V2 = ("body_side", "lesion", "mm_per_px", "bundle_label", "damaged")


@dataclass(frozen=True)
class RecordSummary:
    """A record's plain fields, for listing without decrypting its images.

    Attributes:
        scan_id: the record's UUID.
        created_at: ISO-8601 time as saved.
        label: chosen class code.
        risk_tier: "refer", "monitor" or "uncertain".
        p_malignant: P(malignant).
        body_site: body site, if given.
        operator: operator id, if given.
        has_patient_ref: whether an (encrypted) patient reference is attached.
        corrects: scan id this record corrects, if any.
        bundle_id: model bundle that produced it.
        body_side: "left"/"right" of a paired site, if given.
        lesion: the lesion's label within its site, if given.
        bundle_label: e.g. "adapted for clinic-north, 2026-12-07", for an adapted bundle.
        mm_per_px: the photo's scale, if the device knew it.
    """

    scan_id: str
    created_at: str
    label: str
    risk_tier: str
    p_malignant: float
    body_site: str | None
    operator: str | None
    has_patient_ref: bool
    corrects: str | None
    bundle_id: str
    body_side: str | None = None
    lesion: str | None = None
    bundle_label: str | None = None
    mm_per_px: float | None = None


@dataclass
class VerifyReport:
    """What :meth:`SqliteScanStore.verify` found.

    Attributes:
        records: number of records checked.
        integrity: lines of ``PRAGMA integrity_check`` (``["ok"]`` when sound).
        problems: (scan id, problem) for each record that failed.
        unreferenced_files: image files that no record points at.
    """

    records: int = 0
    integrity: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    unreferenced_files: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the database is sound and every record and file checked out."""
        return self.integrity == ["ok"] and not self.problems and not self.unreferenced_files


@dataclass(frozen=True)
class SweepReport:
    """Files removed at start: leftovers of saves cut short, which never returned."""

    temporary_files: int = 0
    unreferenced_files: int = 0


def has_schema(conn: sqlite3.Connection) -> bool:
    """Whether ``conn`` holds the SkinScan tables (a new, empty file does not)."""
    names = {r[0] for r in conn.execute(TABLES_SQL)}
    return {"meta", "scans", "exports"} <= names


def to_json(value: object) -> str:
    """Compact, key-sorted JSON as stored in the text columns."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def sealed_columns(seal_format: int) -> tuple[str, ...]:
    """The columns a row of ``seal_format`` seals, in order."""
    return SEALED_COLUMNS + (SEALED_COLUMNS_V2 if seal_format >= 2 else ())


def canonical(values: Mapping[str, Any], seal_format: int = 1) -> bytes:
    """The sealed columns of a row in their fixed order: what a row's seal authenticates.

    A row of seal_format 1 (saved before schema 2) seals the schema-1 columns; a row of
    format 2 also seals the schema-2 ones, and its format is part of what is sealed (so
    changing the format of a row breaks its seal).
    """
    names = sealed_columns(seal_format)
    cells: list[Any] = [values.get(name) for name in names]
    if seal_format >= 2:
        cells.append(seal_format)
    return json.dumps(cells, separators=(",", ":"), allow_nan=False).encode()


def cell(row: Any, name: str) -> Any:
    """``row[name]``, or None for a column a schema-1 database (read-only) does not have."""
    return row[name] if name in row.keys() else None  # noqa: SIM118 (Row "in" tests values)
