"""The scan store: SQLite plus encrypted image files, built to survive power cuts.

Guarantees the app can rely on (:class:`SqliteScanStore`):

* **Saved means saved.** When :meth:`~SqliteScanStore.save` returns, the record
  is on stable storage: each image file was written to a temporary name,
  fsynced, renamed and its folder fsynced *before* the database row that points
  at it is committed, in one transaction, with WAL and ``synchronous=FULL``.
  Only then may the screen say "saved".
* **All or nothing.** A save that raises left no record behind: not a row, and
  (after the next start at the latest) not a file. A power cut mid-save leaves
  either the whole record or nothing; leftover files are swept at the next start.
* **Disk full** raises :class:`~device.errors.DiskFullError` before anything
  partial is visible; earlier records stay readable.
* **Append-only.** Rows can be neither updated nor deleted (SQL triggers refuse
  it). A correction is a new record whose ``corrects`` names the old one
  (see :func:`device.records.api.correction_of`).
* **Private at rest.** Images, heatmaps and the patient reference are encrypted
  with AES-256-GCM under the device key. The patient reference is found for
  follow-up by a keyed HMAC stored beside it, never by its plaintext. Every row
  is authenticated as a whole, so any altered byte raises
  :class:`~device.errors.TamperError` when the record is read.
* **Damage is reported, never hidden.** A database that is not readable at
  start is moved aside to ``corrupt-<UTC time>/`` (with its images; nothing is
  deleted) and a new one is started. A read-only data folder opens the
  existing records for viewing, and every save raises
  :class:`~device.records.api.StoreReadOnlyError`. Either case adds a
  :class:`~device.records.api.StoreNotice` to :attr:`SqliteScanStore.notices`,
  which the app should show on screen at start.

Use :func:`open_store` in the app: it never raises for a bad data folder and
falls back to a :class:`MemoryScanStore` that refuses saves with a clear reason.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import math
import os
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import numpy as np

from device.errors import DiskFullError, StorageError, TamperError
from device.records.api import (
    RISK_TIERS,
    InvalidRecordError,
    PatientRefError,
    ScanRecord,
    StoreNotice,
    StoreReadOnlyError,
)
from device.records.crypto import (
    FileKeyProvider,
    KeyProvider,
    RecordCipher,
    StaticKeyProvider,
    fsync_dir,
)
from device.records.paths import DB_NAME, IMAGES_DIR, resolve_data_dir, resolve_key_file
from device.records.qr import validate_patient_ref

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DEFAULT_MIN_FREE_BYTES = 16 * 1024 * 1024
_ROW_OVERHEAD_BYTES = 64 * 1024  # WAL frames for one row and its index entries, generously
_LOCK_NAME = ".lock"
_TMP_PREFIX = ".tmp-"
_IMAGE_SUFFIXES = (".image", ".heatmap")
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_NOTADB = 26
_TABLES_SQL = "SELECT name FROM sqlite_master WHERE type = 'table'"

_SCHEMA = (
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

# Every column a row's seal authenticates, in a fixed order.
_SEALED_COLUMNS = (
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


# --------------------------------------------------------------------------- validation


def _parse_time(value: str) -> datetime:
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def _float_map(name: str, mapping: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in mapping.items():
        if not isinstance(key, str):
            raise InvalidRecordError(f"{name} keys must be text")
        number = float(value)
        if not math.isfinite(number):
            raise InvalidRecordError(f"{name}[{key!r}] is not a finite number")
        out[key] = number
    return out


def _check_image(name: str, image: object, allow_grey: bool) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise InvalidRecordError(f"the {name} must be a uint8 array")
    grey_ok = allow_grey and image.ndim == 2
    if not grey_ok and not (image.ndim == 3 and image.shape[2] == 3):
        raise InvalidRecordError(f"the {name} must be an RGB image, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidRecordError(f"the {name} is empty")
    return image


def validate_record(record: ScanRecord) -> str | None:
    """Check a record before saving; return its validated patient reference.

    Raises:
        InvalidRecordError: a field is malformed. Nothing was written.
    """
    if not _is_uuid(record.scan_id):
        raise InvalidRecordError("scan_id must be a UUID string in canonical form")
    try:
        _parse_time(record.created_at)
    except (TypeError, ValueError):
        raise InvalidRecordError(
            f"created_at is not an ISO-8601 time: {record.created_at!r}"
        ) from None
    _check_image("image", record.image, allow_grey=False)
    if record.heatmap is not None:
        _check_image("heatmap", record.heatmap, allow_grey=True)
    probabilities = _float_map("probabilities", record.probabilities)
    if record.label not in probabilities:
        raise InvalidRecordError(f"label {record.label!r} is not one of the probabilities")
    if record.risk_tier not in RISK_TIERS:
        raise InvalidRecordError(f"risk_tier must be one of {', '.join(RISK_TIERS)}")
    if not -1e-6 <= float(record.p_malignant) <= 1.0 + 1e-6:  # a sum of floats may pass 1
        raise InvalidRecordError("p_malignant must be within [0, 1]")
    _float_map("quality", record.quality)
    if record.corrects is not None:
        if not _is_uuid(record.corrects):
            raise InvalidRecordError("corrects must be the scan_id of an earlier record")
        if record.corrects == record.scan_id:
            raise InvalidRecordError("a record cannot correct itself")
    if any(not isinstance(k, str) or not isinstance(v, str) for k, v in record.extra.items()):
        raise InvalidRecordError("extra must map text to text")
    if record.patient_ref is None:
        return None
    try:
        return validate_patient_ref(record.patient_ref)
    except PatientRefError as exc:
        raise InvalidRecordError(f"patient reference refused: {exc}") from None


# --------------------------------------------------------------------------- image codec


def _encode_png(image: np.ndarray) -> bytes:
    import cv2

    pixels = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(pixels), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise InvalidRecordError("the image could not be encoded as PNG")
    return buf.tobytes()


def _decode_png(data: bytes, scan_id: str, purpose: str) -> np.ndarray:
    import cv2

    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise StorageError(f"scan {scan_id}: the {purpose} does not decode")
    return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB) if pixels.ndim == 3 else pixels


# --------------------------------------------------------------------------- files


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if not isinstance(exc, sqlite3.Error):
        return False
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    return code == _SQLITE_FULL or (code is None and "disk is full" in str(exc))


def _is_read_only(exc: OSError) -> bool:
    return exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM)


def _write_durable(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temporary file, fsync, rename.

    The caller fsyncs the folder afterwards (once for several files).
    """
    tmp = path.with_name(f"{_TMP_PREFIX}{path.name}-{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _now_tag() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


# --------------------------------------------------------------------------- SQLite store


class _Corrupt(Exception):
    """Internal: the database file is not a readable SkinScan database."""


class SqliteScanStore:
    """Append-only, encrypted, power-cut-safe store of scans (see the module docstring).

    Args:
        data_dir: the data folder; created if absent.
        key_provider: the device key, as a :class:`~device.records.crypto.KeyProvider`
            or 32 raw bytes. Default: the key file from
            :func:`~device.records.paths.resolve_key_file`, created at first start.
        device_id: this device's id; default the id saved in the database at
            first start (a new UUID then).
        min_free_bytes: space to keep free on the data folder's file system; a
            save that would go below it raises :class:`DiskFullError` early.

    Attributes:
        data_dir: the data folder.
        device_id: this device's id.
        writable: False when the folder is read-only; :meth:`save` then raises
            :class:`StoreReadOnlyError`.
        notices: things to show on screen at start (a damaged database moved
            aside, a read-only folder).
        swept: leftovers of interrupted saves removed at start.

    Raises:
        StorageError: the folder cannot be used at all, or the database is
            damaged while another process has it open.
        TamperError: the device key does not match the records.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        key_provider: KeyProvider | bytes | None = None,
        device_id: str | None = None,
        *,
        min_free_bytes: int = DEFAULT_MIN_FREE_BYTES,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.db_path = self.data_dir / DB_NAME
        self.images_dir = self.data_dir / IMAGES_DIR
        self.min_free_bytes = int(min_free_bytes)
        self.notices: list[StoreNotice] = []
        self.swept = SweepReport()
        self.writable = True
        self._lock = threading.RLock()
        self._lock_fd: int | None = None
        self._exclusive = False
        self._conn: sqlite3.Connection | None = None
        if key_provider is None:
            key_provider = FileKeyProvider(resolve_key_file(self.data_dir))
        elif isinstance(key_provider, (bytes, bytearray)):
            key_provider = StaticKeyProvider(bytes(key_provider))
        try:
            self._open(key_provider, device_id)
        except BaseException as exc:
            self.close()
            if isinstance(exc, OSError) and not isinstance(exc, StorageError):
                if _is_disk_full(exc):
                    raise DiskFullError(f"no space left in {self.data_dir}") from exc
                raise StorageError(f"cannot open the scan store in {self.data_dir}: {exc}") from exc
            raise

    # ----------------------------------------------------------------- opening

    def _open(self, key_provider: KeyProvider, device_id: str | None) -> None:
        self.writable = self._prepare_folder()
        if self.writable:
            exclusive = self._take_lock()
            self._conn = self._open_writable(exclusive)
        else:
            self._conn = self._open_read_only()
            self.notices.append(
                StoreNotice(
                    "read_only",
                    f"The data folder {self.data_dir} is read-only: scans can be viewed "
                    "but NOT saved.",
                    str(self.data_dir),
                )
            )
            log.warning("data folder %s is read-only; saving is disabled", self.data_dir)
        meta = self._meta()
        is_new = "key_check" not in meta
        if is_new and not self.writable:
            raise StoreReadOnlyError(
                f"the data folder {self.data_dir} is read-only and holds no records"
            )
        self._cipher = RecordCipher(key_provider.load_key(create=is_new))
        if is_new:
            self._initialise(device_id)
            meta = self._meta()
        elif meta["key_check"] != self._cipher.key_check:
            raise TamperError(
                "the device key does not match the saved records (wrong or replaced key file)"
            )
        if int(meta.get("schema_version", "0")) > SCHEMA_VERSION:
            raise StorageError(
                f"{self.db_path} was written by a newer SkinScan (schema "
                f"{meta['schema_version']}); update the software"
            )
        self.device_id = device_id or meta["device_id"]
        if self.writable and self._exclusive:
            self.swept = self._sweep()
            self._share_lock()

    def _prepare_folder(self) -> bool:
        """Create the folders; return False when the data folder cannot be written."""
        try:
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not self.images_dir.is_dir():
                self.images_dir.mkdir(mode=0o700, exist_ok=True)
                fsync_dir(self.data_dir)
            probe = self.data_dir / f"{_TMP_PREFIX}probe-{os.getpid()}-{secrets.token_hex(4)}"
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            if _is_read_only(exc) and self.data_dir.is_dir():
                return False
            if _is_disk_full(exc):
                raise DiskFullError(f"no space left in {self.data_dir}") from exc
            raise StorageError(f"cannot use the data folder {self.data_dir}: {exc}") from exc
        return True

    def _take_lock(self) -> bool:
        """Hold the folder's lock; exclusive (recovery allowed) when nobody else has it open."""
        self._lock_fd = os.open(self.data_dir / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._exclusive = True
        except BlockingIOError:
            # Another process (the app, or a CLI) has the store open: share it, no recovery.
            deadline = time.monotonic() + 10.0
            while True:
                try:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise StorageError(
                            f"the records in {self.data_dir} are busy (being recovered?)"
                        ) from None
                    time.sleep(0.05)
            self._exclusive = False
        return self._exclusive

    def _share_lock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_SH)
            self._exclusive = False

    def _connect(self, target: str, uri: bool = False) -> sqlite3.Connection:
        conn = sqlite3.connect(
            target, uri=uri, isolation_level=None, timeout=10.0, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row
        return conn

    def _open_writable(self, exclusive: bool) -> sqlite3.Connection:
        existed = self.db_path.exists()
        if not existed:
            # SQLite would create it 0644; its -wal and -shm copy the database's mode.
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self.db_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        try:
            conn = self._check_database(self._connect(str(self.db_path)))
        except _Corrupt as exc:
            if not exclusive:
                raise StorageError(
                    f"the scan database {self.db_path} is damaged ({exc}); close the app and "
                    "run this again to move it aside"
                ) from None
            self._move_aside(str(exc))
            os.close(os.open(self.db_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            conn = self._connect(str(self.db_path))
            existed = False
        if exclusive and (not existed or not self._has_schema(conn)):
            self._quarantine_unowned_images()
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as exc:
            conn.close()
            if _is_disk_full(exc):
                raise DiskFullError(f"no space left to open {self.db_path}") from exc
            raise StorageError(f"cannot open {self.db_path}: {exc}") from exc
        if str(mode).lower() != "wal":
            conn.close()
            raise StorageError(f"{self.db_path}: the file system does not support WAL ({mode})")
        return conn

    def _open_read_only(self) -> sqlite3.Connection:
        if not self.db_path.exists():
            raise StoreReadOnlyError(
                f"the data folder {self.data_dir} is read-only and holds no records"
            )
        path = quote(str(self.db_path.resolve()))
        last: Exception | None = None
        # mode=ro reads the WAL when its -shm is usable; immutable=1 always opens
        # but cannot see a WAL that was never checkpointed (after a power cut).
        for query in ("mode=ro", "immutable=1"):
            try:
                conn = self._check_database(self._connect(f"file:{path}?{query}", uri=True))
                if self._has_schema(conn):
                    if query != "mode=ro":
                        log.warning("opened %s as immutable: unsaved WAL pages are not seen", path)
                    return conn
                conn.close()
                last = StorageError("the database has no records table")
            except (sqlite3.Error, _Corrupt, StorageError) as exc:
                last = exc
        raise StoreReadOnlyError(
            f"the data folder {self.data_dir} is read-only and its database cannot be read: {last}"
        )

    @staticmethod
    def _has_schema(conn: sqlite3.Connection) -> bool:
        names = {r[0] for r in conn.execute(_TABLES_SQL)}
        return {"meta", "scans", "exports"} <= names

    def _check_database(self, conn: sqlite3.Connection) -> sqlite3.Connection:
        """Raise _Corrupt when ``conn`` is not a sound SkinScan database (an empty one is fine)."""
        try:
            result = [r[0] for r in conn.execute("PRAGMA quick_check")]
            if result != ["ok"]:
                raise _Corrupt("; ".join(result[:3]))
            names = {r[0] for r in conn.execute(_TABLES_SQL)}
        except sqlite3.DatabaseError as exc:
            conn.close()
            code = getattr(exc, "sqlite_errorcode", None)
            corrupt = code in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or (
                code is None and type(exc) is sqlite3.DatabaseError
            )
            if corrupt:
                raise _Corrupt(str(exc)) from None
            if _is_disk_full(exc):
                raise DiskFullError(f"no space left to open {self.db_path}") from exc
            raise StorageError(f"cannot open {self.db_path}: {exc}") from exc
        except _Corrupt:
            conn.close()
            raise
        if names and not {"meta", "scans"} <= names - {"sqlite_sequence"}:
            conn.close()
            raise _Corrupt("it is not a SkinScan database")
        return conn

    def _move_aside(self, reason: str) -> Path:
        """Move the damaged database and its images to ``corrupt-<time>/``; delete nothing."""
        dest = self.data_dir / f"corrupt-{_now_tag()}"
        n = 1
        while dest.exists():
            n += 1
            dest = self.data_dir / f"corrupt-{_now_tag()}-{n}"
        dest.mkdir()
        for name in (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", IMAGES_DIR):
            src = self.data_dir / name
            if src.exists():
                os.rename(src, dest / name)
        self.images_dir.mkdir(mode=0o700, exist_ok=True)
        fsync_dir(dest)
        fsync_dir(self.data_dir)
        log.error("scan database %s was damaged (%s); moved to %s", self.db_path, reason, dest)
        self.notices.append(
            StoreNotice(
                "corrupt_db_moved",
                f"The scan database was damaged and was moved to {dest.name}; a new one was "
                "started. Earlier scans are kept there for recovery but are not shown.",
                str(dest),
            )
        )
        return dest

    def _quarantine_unowned_images(self) -> None:
        """A new database beside old image files: keep those files apart rather than sweep them."""
        try:
            leftovers = [p for p in self.images_dir.iterdir() if not p.name.startswith(_TMP_PREFIX)]
        except FileNotFoundError:
            return
        if not leftovers:
            return
        dest = self.data_dir / f"orphaned-images-{_now_tag()}"
        n = 1
        while dest.exists():
            n += 1
            dest = self.data_dir / f"orphaned-images-{_now_tag()}-{n}"
        os.rename(self.images_dir, dest)
        self.images_dir.mkdir(mode=0o700)
        fsync_dir(self.data_dir)
        log.error("found %d image files without a database; moved to %s", len(leftovers), dest)
        self.notices.append(
            StoreNotice(
                "orphaned_images_moved",
                f"The scan database was missing; {len(leftovers)} earlier image files were "
                f"moved to {dest.name} and a new database was started.",
                str(dest),
            )
        )

    def _meta(self) -> dict[str, str]:
        conn = self._db()
        if not self._has_schema(conn):
            return {}
        return {r["key"]: r["value"] for r in conn.execute("SELECT key, value FROM meta")}

    def _initialise(self, device_id: str | None) -> None:
        conn = self._db()
        values = {
            "schema_version": str(SCHEMA_VERSION),
            "key_check": self._cipher.key_check,
            "device_id": device_id or str(uuid.uuid4()),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        try:
            conn.execute("BEGIN IMMEDIATE")
            if not self._has_schema(conn):
                for statement in _SCHEMA:  # executescript() would commit early
                    conn.execute(statement)
            conn.executemany(
                "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", list(values.items())
            )
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if _is_disk_full(exc):
                raise DiskFullError(f"no space left to create {self.db_path}") from exc
            raise StorageError(f"cannot create the scan database: {exc}") from exc
        fsync_dir(self.data_dir)
        log.info("started a new scan database at %s", self.db_path)

    def _sweep(self) -> SweepReport:
        """Remove leftovers of saves that never returned (only while nobody else has the store)."""
        referenced = set()
        for row in self._db().execute("SELECT image_file, heatmap_file FROM scans"):
            referenced.update(name for name in row if name)
        tmp = unreferenced = 0
        for folder in (self.data_dir, self.images_dir):
            for path in folder.iterdir():
                if path.name.startswith(_TMP_PREFIX) and path.is_file():
                    tmp += 1
                elif folder is self.images_dir and path.name not in referenced:
                    unreferenced += 1
                else:
                    continue
                with contextlib.suppress(OSError):
                    path.unlink()
        if tmp or unreferenced:
            fsync_dir(self.images_dir)
            log.info("swept %d temporary and %d unreferenced files", tmp, unreferenced)
        return SweepReport(tmp, unreferenced)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StorageError("the scan store is closed")
        return self._conn

    # ----------------------------------------------------------------- saving

    def save(self, record: ScanRecord) -> str:
        """Durably save ``record`` and return its scan id.

        When this returns, the record survives a power cut. When it raises,
        no part of the record is visible.

        Raises:
            InvalidRecordError: the record is malformed (nothing written).
            StoreReadOnlyError: the data folder is read-only.
            DiskFullError: not enough space; nothing partial was kept.
            StorageError: the scan id exists already, or another I/O failure.
        """
        if not self.writable:
            raise StoreReadOnlyError(f"cannot save: the data folder {self.data_dir} is read-only")
        patient_ref = validate_record(record)
        sid = record.scan_id
        image_blob = self._cipher.encrypt(_encode_png(record.image), sid, "image")
        heat_blob = None
        if record.heatmap is not None:
            heat_blob = self._cipher.encrypt(_encode_png(record.heatmap), sid, "heatmap")
        row = self._row(record, patient_ref, image_blob, heat_blob)
        seal = self._cipher.encrypt(
            json.dumps({"patient_ref": patient_ref}).encode(), sid, "record", _canonical(row)
        )
        files = [(row["image_file"], image_blob)]
        if heat_blob is not None:
            files.append((row["heatmap_file"], heat_blob))
        with self._lock:
            conn = self._db()
            if conn.execute("SELECT 1 FROM scans WHERE scan_id = ?", (sid,)).fetchone():
                raise StorageError(f"scan {sid} is saved already (records are append-only)")
            if (
                record.corrects is not None
                and not conn.execute(
                    "SELECT 1 FROM scans WHERE scan_id = ?", (record.corrects,)
                ).fetchone()
            ):
                raise InvalidRecordError(f"the corrected scan {record.corrects} does not exist")
            self._check_space(sum(len(b) for _, b in files) + len(seal) + _ROW_OVERHEAD_BYTES)
            written: list[Path] = []
            try:
                for name, blob in files:
                    _write_durable(self.images_dir / name, blob)
                    written.append(self.images_dir / name)
                fsync_dir(self.images_dir)
                self._insert(conn, {**row, "seal": seal})
            except BaseException as exc:
                self._undo_files(conn, sid, written)
                if _is_disk_full(exc):
                    raise DiskFullError(
                        f"the storage is full: scan {sid[:8]} was NOT saved; earlier scans are safe"
                    ) from exc
                if isinstance(exc, (OSError, sqlite3.Error)) and not isinstance(exc, StorageError):
                    raise StorageError(f"scan {sid[:8]} was NOT saved: {exc}") from exc
                raise
        log.info("saved scan %s (%s, %s)", sid, record.label, record.risk_tier)
        return sid

    def _row(
        self,
        record: ScanRecord,
        patient_ref: str | None,
        image_blob: bytes,
        heat_blob: bytes | None,
    ) -> dict[str, Any]:
        sid = record.scan_id
        return {
            "scan_id": sid,
            "created_at": record.created_at,
            "created_ts": _parse_time(record.created_at).timestamp(),
            "device_id": record.device_id,
            "operator": record.operator,
            "body_site": record.body_site,
            "patient_ref_index": None if patient_ref is None else self._cipher.index(patient_ref),
            "label": record.label,
            "risk_tier": record.risk_tier,
            "p_malignant": float(record.p_malignant),
            "probabilities": _json(_float_map("probabilities", record.probabilities)),
            "quality": _json(_float_map("quality", record.quality)),
            "bundle_id": record.bundle_id,
            "bundle_sha256": record.bundle_sha256,
            "app_version": record.app_version,
            "corrects": record.corrects,
            "extra": _json(dict(record.extra)),
            "image_file": f"{sid}.image",
            "image_sha256": _sha256(image_blob),
            "heatmap_file": None if heat_blob is None else f"{sid}.heatmap",
            "heatmap_sha256": None if heat_blob is None else _sha256(heat_blob),
        }

    @staticmethod
    def _insert(conn: sqlite3.Connection, row: Mapping[str, Any]) -> None:
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(f"INSERT INTO scans ({columns}) VALUES ({marks})", tuple(row.values()))
        conn.execute("COMMIT")

    def _undo_files(self, conn: sqlite3.Connection, sid: str, written: list[Path]) -> None:
        """After a failed save: roll back and remove its files, unless the row did commit."""
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            committed = conn.execute("SELECT 1 FROM scans WHERE scan_id = ?", (sid,)).fetchone()
        except sqlite3.Error:
            return  # cannot tell: leave the files for the sweep at next start
        if committed:
            return
        for path in written:
            with contextlib.suppress(OSError):
                path.unlink()
        with contextlib.suppress(OSError):
            fsync_dir(self.images_dir)

    def _check_space(self, needed: int) -> None:
        try:
            st = os.statvfs(self.data_dir)
        except OSError:
            return
        free = st.f_bavail * st.f_frsize
        if free < needed + self.min_free_bytes:
            raise DiskFullError(
                f"the storage is full ({free // 1024} KiB free): the scan was NOT saved; "
                "earlier scans are safe. Export and free space."
            )

    def record_export(self, file_name: str, scan_ids: Sequence[str]) -> None:
        """Append an entry to the export log (which records left the device, and when)."""
        if not self.writable:
            log.warning("export of %d records not logged: read-only folder", len(scan_ids))
            return
        with self._lock:
            conn = self._db()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT INTO exports (exported_at, file, scan_ids) VALUES (?, ?, ?)",
                (
                    datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    file_name,
                    _json(list(scan_ids)),
                ),
            )
            conn.execute("COMMIT")

    # ----------------------------------------------------------------- reading

    def get(self, scan_id: str) -> ScanRecord:
        """Load and decrypt one record.

        Raises:
            KeyError: no such record.
            TamperError: the record or one of its files was altered, or the key is wrong.
            StorageError: a file is missing or unreadable.
        """
        with self._lock:
            row = self._db().execute("SELECT * FROM scans WHERE scan_id = ?", (scan_id,)).fetchone()
        if row is None:
            raise KeyError(scan_id)
        return self._load(row)

    def history(
        self, patient_ref: str | None = None, body_site: str | None = None, limit: int = 100
    ) -> list[ScanRecord]:
        """Records newest first, optionally only one patient's and one body site's.

        Args:
            patient_ref: the patient's opaque reference (matched by keyed HMAC).
            body_site: body site to match exactly.
            limit: most records to return.

        Raises:
            PatientRefError: ``patient_ref`` is not an opaque reference.
            TamperError: a matching record was altered.
        """
        where, args = self._filters(patient_ref, body_site, None)
        sql = f"SELECT * FROM scans {where} ORDER BY created_ts DESC, seq DESC LIMIT ?"
        with self._lock:
            rows = self._db().execute(sql, (*args, int(limit))).fetchall()
        return [self._load(row) for row in rows]

    def summaries(
        self,
        since: datetime | None = None,
        patient_ref: str | None = None,
        body_site: str | None = None,
    ) -> list[RecordSummary]:
        """Plain fields of records, oldest first, without decrypting anything."""
        where, args = self._filters(patient_ref, body_site, since)
        sql = f"SELECT * FROM scans {where} ORDER BY created_ts, seq"
        with self._lock:
            rows = self._db().execute(sql, args).fetchall()
        return [
            RecordSummary(
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
            )
            for r in rows
        ]

    def __len__(self) -> int:
        with self._lock:
            return int(self._db().execute("SELECT COUNT(*) FROM scans").fetchone()[0])

    def __contains__(self, scan_id: object) -> bool:
        """Whether a record with this scan id is saved (nothing is decrypted)."""
        with self._lock:
            row = self._db().execute("SELECT 1 FROM scans WHERE scan_id = ?", (scan_id,))
            return row.fetchone() is not None

    def _filters(
        self, patient_ref: str | None, body_site: str | None, since: datetime | None
    ) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        if patient_ref is not None:
            clauses.append("patient_ref_index = ?")
            args.append(self._cipher.index(validate_patient_ref(patient_ref)))
        if body_site is not None:
            clauses.append("body_site = ?")
            args.append(body_site)
        if since is not None:
            when = since if since.tzinfo else since.replace(tzinfo=timezone.utc)
            clauses.append("created_ts >= ?")
            args.append(when.timestamp())
        return ("WHERE " + " AND ".join(clauses)) if clauses else "", args

    def _load(self, row: sqlite3.Row) -> ScanRecord:
        sid = row["scan_id"]
        values = {name: row[name] for name in _SEALED_COLUMNS}
        sealed = json.loads(self._cipher.decrypt(row["seal"], sid, "record", _canonical(values)))
        image = self._read_image(row["image_file"], row["image_sha256"], sid, "image")
        heatmap = None
        if row["heatmap_file"] is not None:
            heatmap = self._read_image(row["heatmap_file"], row["heatmap_sha256"], sid, "heatmap")
        return ScanRecord(
            scan_id=sid,
            created_at=row["created_at"],
            device_id=row["device_id"],
            image=image,
            heatmap=heatmap,
            probabilities=json.loads(row["probabilities"]),
            label=row["label"],
            risk_tier=row["risk_tier"],
            p_malignant=row["p_malignant"],
            quality=json.loads(row["quality"]),
            bundle_id=row["bundle_id"],
            bundle_sha256=row["bundle_sha256"],
            app_version=row["app_version"],
            patient_ref=sealed["patient_ref"],
            operator=row["operator"],
            body_site=row["body_site"],
            corrects=row["corrects"],
            extra=json.loads(row["extra"]),
        )

    def _read_image(self, name: str, digest: str, sid: str, purpose: str) -> np.ndarray:
        if "/" in name or name.startswith("."):
            raise TamperError(f"scan {sid}: bad {purpose} file name")
        path = self.images_dir / name
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            raise StorageError(f"scan {sid}: the {purpose} file {name} is missing") from None
        except OSError as exc:
            raise StorageError(f"scan {sid}: cannot read the {purpose}: {exc}") from exc
        if _sha256(blob) != digest:
            raise TamperError(f"scan {sid}: the {purpose} file was altered")
        return _decode_png(self._cipher.decrypt(blob, sid, purpose), sid, purpose)

    # ----------------------------------------------------------------- checking

    def verify(self) -> VerifyReport:
        """Check the database and every record and file: decrypt, authenticate, decode.

        Returns:
            A report; ``report.ok`` is True when everything checked out.
        """
        report = VerifyReport()
        with self._lock:
            conn = self._db()
            report.integrity = [r[0] for r in conn.execute("PRAGMA integrity_check")]
            rows = conn.execute("SELECT * FROM scans ORDER BY seq").fetchall()
        referenced: set[str] = set()
        for row in rows:
            report.records += 1
            referenced.update(n for n in (row["image_file"], row["heatmap_file"]) if n)
            try:
                self._load(row)
            except StorageError as exc:
                report.problems.append((row["scan_id"], str(exc)))
            except (ValueError, KeyError) as exc:
                report.problems.append((row["scan_id"], f"unreadable: {exc}"))
        try:
            names = sorted(p.name for p in self.images_dir.iterdir())
        except OSError as exc:
            report.problems.append(("-", f"cannot list {self.images_dir}: {exc}"))
            names = []
        report.unreferenced_files = [
            n for n in names if n not in referenced and not n.startswith(_TMP_PREFIX)
        ]
        return report

    # ----------------------------------------------------------------- lifetime

    def close(self) -> None:
        """Close the database and release the folder lock. Safe to call twice."""
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
                self._conn = None
            if self._lock_fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._lock_fd)
                self._lock_fd = None

    def __enter__(self) -> SqliteScanStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "rw" if self.writable else "ro"
        return f"SqliteScanStore({str(self.data_dir)!r}, {mode})"


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _canonical(values: Mapping[str, Any]) -> bytes:
    return json.dumps(
        [values[name] for name in _SEALED_COLUMNS], separators=(",", ":"), allow_nan=False
    ).encode()


# --------------------------------------------------------------------------- memory store


class MemoryScanStore:
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
            self._records[record.scan_id] = _frozen_copy(record)
        return record.scan_id

    def get(self, scan_id: str) -> ScanRecord:
        """Return a record by id. Raises KeyError when absent."""
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
        chosen.sort(key=lambda ir: (_parse_time(ir[1].created_at), ir[0]), reverse=True)
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
            records = [r for r in records if _parse_time(r.created_at) >= when]
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

    def __enter__(self) -> MemoryScanStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _frozen_copy(record: ScanRecord) -> ScanRecord:
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
    )


# --------------------------------------------------------------------------- factory


def open_store(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    configured_dir: str | os.PathLike[str] | None = None,
    key_provider: KeyProvider | bytes | None = None,
    device_id: str | None = None,
    min_free_bytes: int = DEFAULT_MIN_FREE_BYTES,
) -> SqliteScanStore | MemoryScanStore:
    """Open the device's store; never raises for a bad folder, so the app keeps scanning.

    Args:
        data_dir: an explicit data folder; default from
            :func:`~device.records.paths.resolve_data_dir` and ``configured_dir``.
        configured_dir: the data folder named in the device config, if any.
        key_provider: the device key (default: the key file).
        device_id: this device's id.
        min_free_bytes: see :class:`SqliteScanStore`.

    Returns:
        A :class:`SqliteScanStore`, or, when the folder cannot be used (or the
        key does not match), a :class:`MemoryScanStore` whose saves raise
        :class:`StoreReadOnlyError`. Show ``store.notices`` on screen either way.
    """
    folder = Path(data_dir) if data_dir is not None else resolve_data_dir(configured_dir)
    try:
        return SqliteScanStore(folder, key_provider, device_id, min_free_bytes=min_free_bytes)
    except StorageError as exc:
        log.error("scan records unavailable: %s", exc)
        return MemoryScanStore(
            read_only_reason=f"Scans can NOT be saved: {exc}", device_id=device_id or "unknown"
        )


def iter_records(
    store: SqliteScanStore | MemoryScanStore, since: datetime | None = None
) -> Iterator[ScanRecord]:
    """Yield every record (oldest first), decrypted, one at a time."""
    for summary in store.summaries(since=since):
        yield store.get(summary.scan_id)
