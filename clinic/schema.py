"""The layout of ``clinic.db`` and its migrations, versioned by SQLite's ``user_version``.

A database is at the version its ``PRAGMA user_version`` says. Opening runs, in
one ``BEGIN IMMEDIATE`` transaction, every migration above that version and then
sets it, so a power cut during a migration leaves the database as it was. A
database from a newer SkinScan (a higher version) is refused, never written.

Version 0 is a database made before the clinic store was versioned: its tables
were made with ``CREATE ... IF NOT EXISTS``, so migration 1 (the same statements)
brings any such database, or an empty file, to version 1 without touching rows.
"""

from __future__ import annotations

import sqlite3

from device.errors import StorageError
from device.labels import CLASS_CODES

VERDICTS = ("agree", "disagree")
# A confirmed diagnosis is one of the model's classes, or "other" (other / unknown):
# kept and counted, but never used to fit a head.
OTHER_DIAGNOSIS = "other"
CONFIRMED_DIAGNOSES = (*CLASS_CODES, OTHER_DIAGNOSIS)
# How a diagnosis was confirmed, from the strongest evidence to the weakest.
BASES = ("histopathology", "consensus", "follow-up")

_VERSION_1 = (
    """CREATE TABLE IF NOT EXISTS users (
        username TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        created_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS patients (
        ref_index TEXT PRIMARY KEY,
        ref_sealed BLOB NOT NULL,
        first_seen TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS reviews (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        scan_id TEXT NOT NULL,
        reviewer TEXT NOT NULL,
        created_at TEXT NOT NULL,
        verdict TEXT NOT NULL CHECK (verdict IN ('agree', 'disagree')),
        diagnosis TEXT,
        note_sealed BLOB
    )""",
    "CREATE INDEX IF NOT EXISTS reviews_scan ON reviews (scan_id, seq)",
    """CREATE TABLE IF NOT EXISTS imports (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        imported_at TEXT NOT NULL,
        imported_by TEXT NOT NULL,
        export_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        added INTEGER NOT NULL,
        already_present INTEGER NOT NULL
    )""",
    # The receipt of each imported export (device.records.archive.write_receipt), sealed:
    # its proof is what lets the scanner move the export's scans off the device.
    """CREATE TABLE IF NOT EXISTS receipts (
        export_id TEXT PRIMARY KEY,
        written_at TEXT NOT NULL,
        receipt_sealed BLOB NOT NULL
    )""",
    # Failed logins per account, for the lock-out (clinic.auth.LoginThrottle). The
    # account is a keyed hash: a password typed into the username field is not kept.
    """CREATE TABLE IF NOT EXISTS login_failures (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        account_index TEXT NOT NULL,
        failed_at REAL NOT NULL,
        address TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS login_failures_account "
    "ON login_failures (account_index, failed_at)",
    """CREATE TRIGGER IF NOT EXISTS reviews_no_update BEFORE UPDATE ON reviews
    BEGIN SELECT RAISE(ABORT, 'reviews are append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS reviews_no_delete BEFORE DELETE ON reviews
    BEGIN SELECT RAISE(ABORT, 'reviews are append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS imports_no_update BEFORE UPDATE ON imports
    BEGIN SELECT RAISE(ABORT, 'the import log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS imports_no_delete BEFORE DELETE ON imports
    BEGIN SELECT RAISE(ABORT, 'the import log is append-only'); END""",
)


def _quoted(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


_VERSION_2 = (
    # Confirmed diagnoses: append-only like reviews; the newest row of a scan is its
    # diagnosis, the earlier ones stay as its history.
    f"""CREATE TABLE confirmations (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        scan_id TEXT NOT NULL,
        confirmed_by TEXT NOT NULL,
        confirmed_at TEXT NOT NULL,
        diagnosis TEXT NOT NULL CHECK (diagnosis IN ({_quoted(CONFIRMED_DIAGNOSES)})),
        basis TEXT NOT NULL CHECK (basis IN ({_quoted(BASES)})),
        note_sealed BLOB
    )""",
    "CREATE INDEX confirmations_scan ON confirmations (scan_id, seq)",
    """CREATE TRIGGER confirmations_no_update BEFORE UPDATE ON confirmations
    BEGIN SELECT RAISE(ABORT, 'confirmed diagnoses are append-only'); END""",
    """CREATE TRIGGER confirmations_no_delete BEFORE DELETE ON confirmations
    BEGIN SELECT RAISE(ABORT, 'confirmed diagnoses are append-only'); END""",
    # Which scanner made each stored scan (the record's device_id), so that listing by
    # scanner needs no decryption. Filled on import; older scans are filled on demand.
    """CREATE TABLE scan_scanners (
        scan_id TEXT PRIMARY KEY,
        device_id TEXT NOT NULL
    )""",
    "CREATE INDEX scan_scanners_device ON scan_scanners (device_id)",
    # What each import was: "export", or "archive" (a `records archive` file, whose
    # scans the scanner has already removed; it carries no receipt proof).
    "ALTER TABLE imports ADD COLUMN kind TEXT NOT NULL DEFAULT 'export'",
    # A site is a named group of scanners; a scanner belongs to one site at most.
    """CREATE TABLE sites (
        name TEXT PRIMARY KEY,
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL
    )""",
    """CREATE TABLE site_scanners (
        device_id TEXT PRIMARY KEY,
        site TEXT NOT NULL REFERENCES sites (name),
        assigned_at TEXT NOT NULL,
        assigned_by TEXT NOT NULL
    )""",
)

MIGRATIONS: dict[int, tuple[str, ...]] = {1: _VERSION_1, 2: _VERSION_2}
SCHEMA_VERSION = max(MIGRATIONS)


def migrate(path: str, *, timeout: float = 10.0) -> tuple[int, int]:
    """Bring the database at ``path`` to :data:`SCHEMA_VERSION` (created when absent).

    Returns:
        (the version found, the version now).

    Raises:
        StorageError: the database is from a newer SkinScan, or cannot be migrated
            (it is left as it was).
    """
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            found = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if found > SCHEMA_VERSION:
                raise StorageError(
                    f"{path} was written by a newer SkinScan (clinic schema {found}, this "
                    f"version knows {SCHEMA_VERSION}); update the software"
                )
            for version in range(found + 1, SCHEMA_VERSION + 1):
                _run(conn, MIGRATIONS[version])
            if found != SCHEMA_VERSION:
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return found, SCHEMA_VERSION
    except sqlite3.Error as exc:
        raise StorageError(f"cannot bring {path} to clinic schema {SCHEMA_VERSION}: {exc}") from exc
    finally:
        conn.close()


def _run(conn: sqlite3.Connection, statements: tuple[str, ...]) -> None:
    for statement in statements:  # executescript() would commit early
        conn.execute(statement)
