"""The clinic's own store: the device's encrypted scan store plus a small clinic database.

Layout of the clinic data folder (``skinscan serve --data-dir DIR``)::

    store.key      256-bit key of the clinic store, mode 0600 (back it up with the folder)
    scans/         a device ``SqliteScanStore``: scans, images and heatmaps, AES-256-GCM at rest
    clinic.db      users (argon2 hashes), reviews, confirmed diagnoses, the import log,
                   the patient list, failed logins (for the lock-out), receipts for the
                   scanners, sites (named groups of scanners) and each scan's scanner
    session.key    the secret that signs session cookies, mode 0600
    tmp/           uploads being read; emptied at start

Scans are kept by the device's own :class:`~device.records.store.SqliteScanStore`
(append-only, power-cut safe, every row authenticated), so the clinic's records
have exactly the device's guarantees. ``clinic.db`` holds what the device has
no place for. Its patient references and review notes are encrypted with the
device's :class:`~device.records.crypto.RecordCipher` under the same key, as are
the receipts (their proof lets a scanner archive scans off the device), and
reviews, confirmed diagnoses and the import log are append-only (SQL triggers
refuse UPDATE and DELETE). ``clinic.db`` is versioned and migrated by
:mod:`clinic.schema`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from clinic.schema import BASES, CONFIRMED_DIAGNOSES, OTHER_DIAGNOSIS, VERDICTS, migrate
from device.errors import SkinScanError, StorageError
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
SITE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,39}")

__all__ = [
    "BASES",
    "CONFIRMED_DIAGNOSES",
    "OTHER_DIAGNOSIS",
    "VERDICTS",
    "ClinicStore",
    "Confirmation",
    "EntryError",
    "Review",
    "Site",
]


class EntryError(SkinScanError, ValueError):
    """A clinician's entry was refused (unknown scan, diagnosis, basis or site); nothing saved."""


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
class Confirmation:
    """A confirmed (final) diagnosis of one scan; append-only, the newest one counts.

    Attributes:
        seq: its place in the log (higher is newer).
        scan_id: the scan.
        confirmed_by: the account that recorded it.
        confirmed_at: ISO-8601 UTC time.
        diagnosis: a class code of :data:`device.labels.CLASS_CODES`, or "other"
            (other / unknown: never used to fit a head).
        basis: "histopathology", "consensus" (dermatologist consensus) or
            "follow-up" (unchanged at follow-up).
        note: free-text note, or "".
        superseded_by: the ``seq`` of the newer confirmation of the same scan that
            replaces this one, or None when this is the scan's current diagnosis.
    """

    seq: int
    scan_id: str
    confirmed_by: str
    confirmed_at: str
    diagnosis: str
    basis: str
    note: str
    superseded_by: int | None = None

    @property
    def superseded(self) -> bool:
        """Whether a newer confirmation of the same scan replaces this one."""
        return self.superseded_by is not None


@dataclass(frozen=True)
class Site:
    """A named group of scanners (one clinic's dermoscopes, say).

    Attributes:
        name: lower-case letters, digits, ``.``, ``_``, ``-`` (it goes on command lines).
        created_at: ISO-8601 UTC time.
        created_by: the account that made it.
        scanners: the device ids assigned to it, sorted.
    """

    name: str
    created_at: str
    created_by: str
    scanners: tuple[str, ...] = ()


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
    kind: str = "export"


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
            migrate(str(self._db_path))
        except StorageError:
            self.scans.close()
            raise

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
            self._remember_scanner(record.scan_id, record.device_id)
            return True

    def _remember_scanner(self, scan_id: str, device_id: str) -> None:
        with self._connect() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO scan_scanners (scan_id, device_id) VALUES (?, ?)",
                (scan_id, device_id),
            )

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
        return [self._review(r) for r in rows]

    def all_reviews(self) -> list[Review]:
        """Every review of every scan, oldest first (for the CSV export)."""
        with self._connect() as conn:
            rows = conn.execute("SELECT * FROM reviews ORDER BY seq").fetchall()
        return [self._review(r) for r in rows]

    def reviewed_scan_ids(self) -> set[str]:
        """The scans that have at least one review."""
        with self._connect() as conn:
            return {r[0] for r in conn.execute("SELECT DISTINCT scan_id FROM reviews")}

    def _review(self, row: sqlite3.Row) -> Review:
        note = ""
        if row["note_sealed"] is not None:
            note = self._cipher.decrypt(row["note_sealed"], row["scan_id"], "review-note").decode()
        return Review(
            scan_id=row["scan_id"],
            reviewer=row["reviewer"],
            created_at=row["created_at"],
            verdict=row["verdict"],
            diagnosis=row["diagnosis"],
            note=note,
        )

    # ----------------------------------------------------------------- confirmed diagnoses

    def add_confirmation(
        self, scan_id: str, confirmed_by: str, diagnosis: str, basis: str, note: str = ""
    ) -> Confirmation:
        """Append a confirmed diagnosis of a stored scan; it supersedes the scan's earlier ones.

        Raises:
            EntryError: no such scan, or the diagnosis or basis is not one of
                :data:`CONFIRMED_DIAGNOSES` / :data:`BASES` (nothing saved).
        """
        if diagnosis not in CONFIRMED_DIAGNOSES:
            raise EntryError(
                f"unknown diagnosis {diagnosis!r}: one of {', '.join(CONFIRMED_DIAGNOSES)}"
            )
        if basis not in BASES:
            raise EntryError(f"unknown basis {basis!r}: one of {', '.join(BASES)}")
        if not self.has_scan(scan_id):
            raise EntryError(f"there is no scan {scan_id!r} in the clinic store")
        when = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        sealed = self._cipher.encrypt(note.encode(), scan_id, "confirmation-note") if note else None
        with self._connect() as conn:
            cursor = conn.execute(
                "INSERT INTO confirmations (scan_id, confirmed_by, confirmed_at, diagnosis, "
                "basis, note_sealed) VALUES (?, ?, ?, ?, ?, ?)",
                (scan_id, confirmed_by, when, diagnosis, basis, sealed),
            )
            seq = int(cursor.lastrowid or 0)
        log.info("diagnosis of %s confirmed by %s: %s, %s", scan_id, confirmed_by, diagnosis, basis)
        return Confirmation(seq, scan_id, confirmed_by, when, diagnosis, basis, note)

    def confirmations(self, scan_id: str | None = None) -> list[Confirmation]:
        """The confirmed diagnoses of one scan (or of every scan), oldest first.

        Each entry says which newer entry of its scan supersedes it.

        Raises:
            TamperError: a note was altered.
        """
        query = "SELECT * FROM confirmations"
        params: tuple[str, ...] = ()
        if scan_id is not None:
            query, params = query + " WHERE scan_id = ?", (scan_id,)
        with self._connect() as conn:
            rows = conn.execute(query + " ORDER BY seq", params).fetchall()
        newer: dict[str, int] = {}
        out: list[Confirmation] = []
        for row in reversed(rows):  # newest first, so each row knows its successor
            out.append(self._confirmation(row, newer.get(row["scan_id"])))
            newer[row["scan_id"]] = row["seq"]
        return out[::-1]

    def current_confirmations(self) -> dict[str, Confirmation]:
        """Each confirmed scan's current (newest) diagnosis, by scan id."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT * FROM confirmations WHERE seq IN "
                "(SELECT MAX(seq) FROM confirmations GROUP BY scan_id) ORDER BY seq"
            ).fetchall()
        return {r["scan_id"]: self._confirmation(r, None) for r in rows}

    def _confirmation(self, row: sqlite3.Row, superseded_by: int | None) -> Confirmation:
        note = ""
        if row["note_sealed"] is not None:
            note = self._cipher.decrypt(
                row["note_sealed"], row["scan_id"], "confirmation-note"
            ).decode()
        return Confirmation(
            seq=int(row["seq"]),
            scan_id=row["scan_id"],
            confirmed_by=row["confirmed_by"],
            confirmed_at=row["confirmed_at"],
            diagnosis=row["diagnosis"],
            basis=row["basis"],
            note=note,
            superseded_by=superseded_by,
        )

    # ----------------------------------------------------------------- scanners and sites

    def scanner_of_scans(self) -> dict[str, str]:
        """The scanner (the record's device id) of every stored scan, by scan id.

        Scans stored before the clinic kept this (clinic schema 1) are read once
        and remembered; a scan that cannot be read is left out (and logged).
        """
        with self._connect() as conn:
            known = {
                r["scan_id"]: r["device_id"]
                for r in conn.execute("SELECT scan_id, device_id FROM scan_scanners")
            }
        missing = [s.scan_id for s in self.scans.summaries() if s.scan_id not in known]
        for scan_id in missing:
            try:
                device_id = self.scans.get(scan_id).device_id
            except (KeyError, StorageError) as exc:  # TamperError is a StorageError
                log.error("scan %s cannot be read to find its scanner: %s", scan_id, exc)
                continue
            self._remember_scanner(scan_id, device_id)
            known[scan_id] = device_id
        return known

    def scanners(self) -> list[str]:
        """Every scanner that made a stored scan, sorted."""
        return sorted(set(self.scanner_of_scans().values()))

    def add_site(self, name: str, created_by: str) -> Site:
        """Create a site (a named group of scanners).

        Raises:
            EntryError: the name is not 1-40 lower-case letters, digits, ``.``, ``_``,
                ``-`` (starting with a letter or digit), or the site exists already.
        """
        name = name.strip().lower()
        if not SITE_NAME.fullmatch(name):
            raise EntryError(
                f"site name {name!r} refused: 1 to 40 lower-case letters, digits, '.', '_' "
                "or '-', starting with a letter or digit (it goes on the adapt command line)"
            )
        when = now_utc()
        try:
            with self._connect() as conn:
                conn.execute(
                    "INSERT INTO sites (name, created_at, created_by) VALUES (?, ?, ?)",
                    (name, when, created_by),
                )
        except StorageError as exc:
            if "UNIQUE" in str(exc):
                raise EntryError(f"the site {name!r} exists already") from None
            raise
        log.info("site %s created by %s", name, created_by)
        return Site(name, when, created_by)

    def assign_scanner(self, device_id: str, site: str | None, assigned_by: str) -> None:
        """Put a scanner into ``site`` (out of any other), or into none with ``site=None``.

        Raises:
            EntryError: no such site.
        """
        with self._connect() as conn:
            if site is None:
                conn.execute("DELETE FROM site_scanners WHERE device_id = ?", (device_id,))
                log.info("scanner %s taken out of its site by %s", device_id, assigned_by)
                return
            if conn.execute("SELECT 1 FROM sites WHERE name = ?", (site,)).fetchone() is None:
                raise EntryError(f"there is no site {site!r}")
            conn.execute(
                "INSERT OR REPLACE INTO site_scanners (device_id, site, assigned_at, assigned_by) "
                "VALUES (?, ?, ?, ?)",
                (device_id, site, now_utc(), assigned_by),
            )
        log.info("scanner %s assigned to site %s by %s", device_id, site, assigned_by)

    def sites(self) -> list[Site]:
        """Every site with its scanners, by name."""
        with self._connect() as conn:
            rows = conn.execute("SELECT * FROM sites ORDER BY name").fetchall()
            members = conn.execute(
                "SELECT site, device_id FROM site_scanners ORDER BY device_id"
            ).fetchall()
        scanners: dict[str, list[str]] = {}
        for m in members:
            scanners.setdefault(m["site"], []).append(m["device_id"])
        return [
            Site(r["name"], r["created_at"], r["created_by"], tuple(scanners.get(r["name"], ())))
            for r in rows
        ]

    def site(self, name: str) -> Site | None:
        """One site by name, or None."""
        return next((s for s in self.sites() if s.name == name), None)

    def site_of_scanners(self) -> dict[str, str]:
        """Each assigned scanner's site, by device id."""
        with self._connect() as conn:
            return {
                r["device_id"]: r["site"]
                for r in conn.execute("SELECT device_id, site FROM site_scanners")
            }

    # ----------------------------------------------------------------- import log

    def log_import(
        self,
        imported_by: str,
        export_id: str,
        device_id: str,
        added: int,
        already: int,
        kind: str = "export",
    ) -> None:
        """Append one entry to the import log (``kind``: "export" or "archive")."""
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO imports (imported_at, imported_by, export_id, device_id, added, "
                "already_present, kind) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (now_utc(), imported_by, export_id, device_id, int(added), int(already), kind),
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
                r["kind"],
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

    def receipted_scan_ids(self) -> set[str]:
        """Every scan id listed in a receipt this clinic has written.

        Raises:
            TamperError: a stored receipt was altered.
        """
        with self._connect() as conn:
            rows = conn.execute("SELECT export_id, receipt_sealed FROM receipts").fetchall()
        ids: set[str] = set()
        for row in rows:
            receipt = self._cipher.decrypt(row["receipt_sealed"], row["export_id"], "receipt")
            ids.update(json.loads(receipt).get("scan_ids", []))
        return ids

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
