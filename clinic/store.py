"""The clinic's own store: the device's encrypted scan store plus a small clinic database.

Layout of the clinic data folder (``skinscan serve --data-dir DIR``)::

    store.key      256-bit key of the clinic store, mode 0600 (back it up with the folder)
    scans/         a device ``SqliteScanStore``: scans, images and heatmaps, AES-256-GCM at rest
    clinic.db      users (argon2 hashes), reviews, the import log, the patient list,
                   failed logins (for the lock-out), receipts for the scanners
    session.key    the secret that signs session cookies, mode 0600
    tmp/           uploads being read; emptied at start

Scans are kept by the device's own :class:`~device.records.store.SqliteScanStore`
(append-only, power-cut safe, every row authenticated), so the clinic's records
have exactly the device's guarantees. ``clinic.db`` holds what the device has
no place for. Its patient references and review notes are encrypted with the
device's :class:`~device.records.crypto.RecordCipher` under the same key, as are
the receipts (their proof lets a scanner archive scans off the device), and
reviews and the import log are append-only (SQL triggers refuse UPDATE and DELETE).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from device.errors import StorageError
from device.records.api import ClosesOnExit, ScanRecord
from device.records.crypto import FileKeyProvider, RecordCipher
from device.records.paths import DB_NAME
from device.records.store import RecordSummary, SqliteScanStore

log = logging.getLogger(__name__)

KEY_NAME = "store.key"
SCANS_DIR = "scans"
CLINIC_DB = "clinic.db"
SESSION_KEY_NAME = "session.key"
TMP_DIR = "tmp"
VERDICTS = ("agree", "disagree")

_SCHEMA = (
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


def now_utc() -> str:
    """The current time, ISO-8601 UTC with seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Review:
    """A clinician's assessment of one scan (append-only; a later review supersedes).

    Attributes:
        scan_id: the reviewed scan.
        reviewer: the account that wrote it.
        created_at: ISO-8601 UTC time.
        verdict: "agree" or "disagree" with the device's result.
        diagnosis: the clinician's diagnosis (class code or free text), or None.
        note: free-text note, or "".
    """

    scan_id: str
    reviewer: str
    created_at: str
    verdict: str
    diagnosis: str | None
    note: str


@dataclass(frozen=True)
class PatientSummary:
    """One patient in the list: the scanner's opaque reference and their scans.

    Attributes:
        patient_ref: the reference from the patient's QR card (never a name).
        scans: number of scans.
        last_scan: ISO-8601 time of the newest scan.
        last_tier: risk tier of the newest scan.
    """

    patient_ref: str
    scans: int
    last_scan: str
    last_tier: str


@dataclass(frozen=True)
class ImportEntry:
    """One line of the import log."""

    imported_at: str
    imported_by: str
    export_id: str
    device_id: str
    added: int
    already_present: int
    has_receipt: bool = False


def _write_secret(path: Path, nbytes: int) -> bytes:
    """Read a secret file of mode 0600, creating it with random bytes when absent."""
    with contextlib.suppress(FileNotFoundError):
        return path.read_bytes()
    secret = secrets.token_bytes(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secret)
        os.fsync(fd)
    finally:
        os.close(fd)
    return secret


class ClinicStore(ClosesOnExit):
    """The clinic's encrypted records, users and reviews in one data folder.

    Safe to share between the web server's threads.

    Args:
        data_dir: the clinic data folder; created if absent.
        clear_tmp: empty ``tmp/`` (the app at start); False for an admin command
            that may run beside the app, whose uploads in progress are there.

    Attributes:
        data_dir: the folder.
        scans: the device scan store holding the imported and uploaded scans.

    Raises:
        StorageError: the folder cannot be used.
        TamperError: the key does not open the saved scans.
    """

    def __init__(self, data_dir: str | os.PathLike[str], *, clear_tmp: bool = True) -> None:
        self.data_dir = Path(data_dir)
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.tmp_dir = self.data_dir / TMP_DIR
            if clear_tmp:
                shutil.rmtree(self.tmp_dir, ignore_errors=True)
            self.tmp_dir.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot use the clinic data folder {self.data_dir}: {exc}") from exc
        scans_dir = self.data_dir / SCANS_DIR
        is_new = not (scans_dir / DB_NAME).exists()
        key = FileKeyProvider(self.data_dir / KEY_NAME).load_key(create=is_new)
        self._cipher = RecordCipher(key)
        self.scans = SqliteScanStore(scans_dir, key, device_id="clinic")
        self._lock = threading.Lock()
        self._db_path = self.data_dir / CLINIC_DB
        try:
            with self._connect() as conn:
                for statement in _SCHEMA:
                    conn.execute(statement)
        except sqlite3.Error as exc:
            self.scans.close()
            raise StorageError(f"cannot open {self._db_path}: {exc}") from exc

    # ----------------------------------------------------------------- plumbing

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A short-lived connection (one per call: safe across threads), committed on success."""
        conn = sqlite3.connect(self._db_path, timeout=10.0)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            with conn:
                yield conn
        except sqlite3.Error as exc:
            raise StorageError(f"clinic database error: {exc}") from exc
        finally:
            conn.close()

    def session_secret(self) -> bytes:
        """The secret that signs session cookies (created at first start)."""
        return _write_secret(self.data_dir / SESSION_KEY_NAME, 32)

    def temp_path(self, suffix: str = "") -> Path:
        """A fresh path under ``tmp/`` for an upload being read (the caller deletes it)."""
        return self.tmp_dir / f"{secrets.token_hex(8)}{suffix}"

    def close(self) -> None:
        """Close the scan store."""
        self.scans.close()

    # ----------------------------------------------------------------- users

    def add_user(self, username: str, password_hash: str) -> None:
        """Create an account.

        Raises:
            StorageError: the username exists already.
        """
        try:
            with self._connect() as conn:
                conn.execute(
                    "INSERT INTO users (username, password_hash, created_at) VALUES (?, ?, ?)",
                    (username, password_hash, now_utc()),
                )
        except StorageError as exc:
            if "UNIQUE" in str(exc):
                raise StorageError(f"the user {username!r} exists already") from None
            raise

    def set_password_hash(self, username: str, password_hash: str) -> None:
        """Replace a user's password hash (a rehash with newer parameters, or a reset)."""
        with self._connect() as conn:
            conn.execute(
                "UPDATE users SET password_hash = ? WHERE username = ?", (password_hash, username)
            )

    def password_hash(self, username: str) -> str | None:
        """The stored hash of ``username``, or None when there is no such user."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT password_hash FROM users WHERE username = ?", (username,)
            ).fetchone()
        return None if row is None else str(row["password_hash"])

    def usernames(self) -> list[str]:
        """Every account name, sorted."""
        with self._connect() as conn:
            return [r["username"] for r in conn.execute("SELECT username FROM users ORDER BY 1")]

    # ----------------------------------------------------------------- failed logins

    def add_login_failure(self, account: str, at: float, address: str | None) -> None:
        """Record one failed login of ``account`` at ``at`` (seconds since the epoch)."""
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO login_failures (account_index, failed_at, address) VALUES (?, ?, ?)",
                (self._cipher.index(account), float(at), address),
            )

    def login_failures(self, account: str, since: float) -> list[float]:
        """The times of ``account``'s failed logins at or after ``since``, oldest first."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT failed_at FROM login_failures WHERE account_index = ? AND failed_at >= ? "
                "ORDER BY failed_at",
                (self._cipher.index(account), float(since)),
            ).fetchall()
        return [float(r["failed_at"]) for r in rows]

    def clear_login_failures(self, account: str) -> int:
        """Forget ``account``'s failed logins (a login, or the admin's unlock); how many."""
        with self._connect() as conn:
            cursor = conn.execute(
                "DELETE FROM login_failures WHERE account_index = ?", (self._cipher.index(account),)
            )
            return int(cursor.rowcount)

    def prune_login_failures(self, before: float) -> int:
        """Forget every account's failed logins older than ``before``; how many."""
        with self._connect() as conn:
            cursor = conn.execute(
                "DELETE FROM login_failures WHERE failed_at < ?", (float(before),)
            )
            return int(cursor.rowcount)

    # ----------------------------------------------------------------- scans

    def has_scan(self, scan_id: str) -> bool:
        """Whether a scan with this id is stored (nothing is decrypted)."""
        return scan_id in self.scans

    def add_scan(self, record: ScanRecord) -> bool:
        """Save ``record`` unless a scan with its id is stored; True when it was added.

        Raises:
            InvalidRecordError: the record is malformed (nothing written).
            StorageError: it could not be saved.
        """
        with self._lock:
            if self.has_scan(record.scan_id):
                return False
            self.scans.save(record)
            if record.patient_ref is not None:
                self._remember_patient(record.patient_ref.strip())
            return True

    def _remember_patient(self, patient_ref: str) -> None:
        index = self._cipher.index(patient_ref)
        sealed = self._cipher.encrypt(patient_ref.encode(), index, "patient-ref")
        with self._connect() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO patients (ref_index, ref_sealed, first_seen) "
                "VALUES (?, ?, ?)",
                (index, sealed, now_utc()),
            )

    def get_scan(self, scan_id: str) -> ScanRecord:
        """Load and decrypt one scan. Raises KeyError, TamperError or StorageError."""
        return self.scans.get(scan_id)

    def patients(self) -> list[PatientSummary]:
        """Every patient with at least one scan, the most recently scanned first."""
        with self._connect() as conn:
            rows = conn.execute("SELECT ref_index, ref_sealed FROM patients").fetchall()
        out: list[PatientSummary] = []
        for row in rows:
            ref = self._cipher.decrypt(row["ref_sealed"], row["ref_index"], "patient-ref").decode()
            scans = self.scans.summaries(patient_ref=ref)
            if scans:
                last = scans[-1]
                out.append(PatientSummary(ref, len(scans), last.created_at, last.risk_tier))
        out.sort(key=lambda p: p.last_scan, reverse=True)
        return out

    def scans_of(self, patient_ref: str | None) -> list[RecordSummary]:
        """A patient's scans newest first; ``None``: the scans without a patient reference."""
        if patient_ref is None:
            rows = [s for s in self.scans.summaries() if not s.has_patient_ref]
        else:
            rows = self.scans.summaries(patient_ref=patient_ref)
        return rows[::-1]

    def scan_count(self) -> int:
        """Number of stored scans."""
        return len(self.scans)

    # ----------------------------------------------------------------- reviews

    def add_review(
        self, scan_id: str, reviewer: str, verdict: str, diagnosis: str | None, note: str
    ) -> Review:
        """Append a clinician's review of a stored scan and return it.

        Raises:
            KeyError: no such scan.
            ValueError: the verdict is not "agree" or "disagree".
        """
        if verdict not in VERDICTS:
            raise ValueError(f"the verdict must be one of {', '.join(VERDICTS)}")
        if not self.has_scan(scan_id):
            raise KeyError(scan_id)
        when = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        sealed = self._cipher.encrypt(note.encode(), scan_id, "review-note") if note else None
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO reviews (scan_id, reviewer, created_at, verdict, diagnosis, "
                "note_sealed) VALUES (?, ?, ?, ?, ?, ?)",
                (scan_id, reviewer, when, verdict, diagnosis or None, sealed),
            )
        log.info("review of %s by %s: %s", scan_id, reviewer, verdict)
        return Review(scan_id, reviewer, when, verdict, diagnosis or None, note)

    def reviews(self, scan_id: str) -> list[Review]:
        """A scan's reviews, oldest first. Raises TamperError if a note was altered."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT * FROM reviews WHERE scan_id = ? ORDER BY seq", (scan_id,)
            ).fetchall()
        return [
            Review(
                scan_id=r["scan_id"],
                reviewer=r["reviewer"],
                created_at=r["created_at"],
                verdict=r["verdict"],
                diagnosis=r["diagnosis"],
                note=""
                if r["note_sealed"] is None
                else self._cipher.decrypt(r["note_sealed"], scan_id, "review-note").decode(),
            )
            for r in rows
        ]

    # ----------------------------------------------------------------- import log

    def log_import(
        self, imported_by: str, export_id: str, device_id: str, added: int, already: int
    ) -> None:
        """Append one entry to the import log."""
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO imports (imported_at, imported_by, export_id, device_id, added, "
                "already_present) VALUES (?, ?, ?, ?, ?, ?)",
                (now_utc(), imported_by, export_id, device_id, int(added), int(already)),
            )

    def imports(self, limit: int = 20) -> Sequence[ImportEntry]:
        """The newest entries of the import log."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT imports.*, receipts.export_id IS NOT NULL AS has_receipt FROM imports "
                "LEFT JOIN receipts USING (export_id) ORDER BY seq DESC LIMIT ?",
                (int(limit),),
            ).fetchall()
        return [
            ImportEntry(
                r["imported_at"],
                r["imported_by"],
                r["export_id"],
                r["device_id"],
                r["added"],
                r["already_present"],
                bool(r["has_receipt"]),
            )
            for r in rows
        ]

    # ----------------------------------------------------------------- receipts

    def save_receipt(self, export_id: str, receipt: bytes) -> None:
        """Keep (encrypted) the receipt for an imported export, replacing an earlier one."""
        sealed = self._cipher.encrypt(receipt, export_id, "receipt")
        with self._connect() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO receipts (export_id, written_at, receipt_sealed) "
                "VALUES (?, ?, ?)",
                (export_id, now_utc(), sealed),
            )

    def receipt(self, export_id: str) -> bytes | None:
        """The receipt for an imported export, or None when there is none.

        Raises:
            TamperError: the stored receipt was altered.
        """
        with self._connect() as conn:
            row = conn.execute(
                "SELECT receipt_sealed FROM receipts WHERE export_id = ?", (export_id,)
            ).fetchone()
        if row is None:
            return None
        return self._cipher.decrypt(row["receipt_sealed"], export_id, "receipt")
