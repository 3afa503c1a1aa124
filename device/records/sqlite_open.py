"""Opening the SQLite store: the folder, its lock, the key check and damage handling.

:class:`SqliteStoreBase` holds everything :class:`~device.records.sqlite_store.SqliteScanStore`
does before its first save or read: create or check the folder, take the
folder lock, open the database (read-write, or read-only when the folder
cannot be written), move a damaged database aside when allowed, and sweep
the leftovers of saves cut short.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import shutil
import sqlite3
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

from device.errors import DiskFullError, StorageError, TamperError
from device.records.api import DamagedDatabaseError, StoreNotice, StoreReadOnlyError
from device.records.crypto import (
    FileKeyProvider,
    KeyProvider,
    RecordCipher,
    StaticKeyProvider,
    fsync_dir,
)
from device.records.damage import (
    CannotWrite,
    CorruptDatabase,
    check_database,
    is_io_error,
    move_aside,
    quarantine_unowned_images,
)
from device.records.durable import TMP_PREFIX, is_disk_full, is_read_only
from device.records.paths import DB_NAME, IMAGES_DIR, resolve_key_file
from device.records.schema import (
    BASE_SCHEMA_VERSION,
    MIGRATIONS,
    RECEIPT_SCHEMA,
    SCHEMA,
    SCHEMA_VERSION,
    TABLES_SQL,
    SweepReport,
    has_schema,
)
from device.records.space import free_bytes, human_bytes

log = logging.getLogger(__name__)

DEFAULT_MIN_FREE_BYTES = 16 * 1024 * 1024
_LOCK_NAME = ".lock"


class SqliteStoreBase:
    """The opening half of :class:`~device.records.sqlite_store.SqliteScanStore`.

    See that class for the arguments, attributes and errors.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        key_provider: KeyProvider | bytes | None = None,
        device_id: str | None = None,
        *,
        min_free_bytes: int | None = None,
        read_only: bool = False,
        recover: bool = True,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.db_path = self.data_dir / DB_NAME
        self.images_dir = self.data_dir / IMAGES_DIR
        self.min_free_bytes = min_free_bytes
        self.recover = recover
        self.moved_aside: Path | None = None
        self.notices: list[StoreNotice] = []
        self.swept = SweepReport()
        self.damaged: dict[str, str] = {}
        self.writable = True
        self._lock = threading.RLock()
        self._lock_fd: int | None = None
        self._exclusive = False
        self._conn: sqlite3.Connection | None = None
        self._snapshot_dir: Path | None = None
        if key_provider is None:
            key_provider = FileKeyProvider(resolve_key_file(self.data_dir))
        elif isinstance(key_provider, (bytes, bytearray)):
            key_provider = StaticKeyProvider(bytes(key_provider))
        try:
            self._open(key_provider, device_id, read_only)
        except BaseException as exc:
            self.close()
            if isinstance(exc, OSError) and not isinstance(exc, StorageError):
                if is_disk_full(exc):
                    raise DiskFullError(f"no space left in {self.data_dir}") from exc
                raise StorageError(f"cannot open the scan store in {self.data_dir}: {exc}") from exc
            raise

    # ----------------------------------------------------------------- opening

    def _open(self, key_provider: KeyProvider, device_id: str | None, read_only: bool) -> None:
        if read_only:
            self.writable = False
            if not self.db_path.exists():
                raise StorageError(f"no scan records in {self.data_dir}")
            self._conn = self._open_read_only()
        else:
            self._open_for_saving()
        meta = self._meta()
        is_new = "key_check" not in meta
        if is_new and not self.writable:
            raise StoreReadOnlyError(f"the data folder {self.data_dir} holds no records")
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
        self.schema_version = int(meta.get("schema_version", str(BASE_SCHEMA_VERSION)))
        if self.writable:
            self._add_receipt_tables()
            self._migrate()
        if self.writable and self._exclusive and self.recover:
            self.swept = self._sweep()
        if self._exclusive:
            self._share_lock()

    def _open_for_saving(self) -> None:
        """Open read-write; fall back to reading only on a read-only folder or a full disk."""
        try:
            self.writable = self._prepare_folder()
            if self.writable:
                exclusive = self._take_lock()
                self._conn = self._open_writable(exclusive)
                return
        except CannotWrite as exc:
            self._drop_connection()
            if not self.db_path.exists():
                raise DiskFullError(f"no space left in {self.data_dir}: {exc}") from None
            self.writable = False
            self._conn = self._open_read_only()
            free = free_bytes(self.data_dir)
            where = "" if free is None else f" ({human_bytes(free)} free)"
            self.notices.append(
                StoreNotice(
                    "storage_full",
                    f"The storage is full{where}: saved scans can be viewed and exported, "
                    "but new scans can NOT be saved. Export the records, then archive the "
                    "ones the clinic has acknowledged to free space.",
                    str(self.data_dir),
                )
            )
            log.warning("cannot write %s (%s); saving is disabled", self.db_path, exc)
            return
        self._conn = self._open_read_only()
        self.notices.append(
            StoreNotice(
                "read_only",
                f"The data folder {self.data_dir} is read-only: scans can be viewed but NOT saved.",
                str(self.data_dir),
            )
        )
        log.warning("data folder %s is read-only; saving is disabled", self.data_dir)

    def _prepare_folder(self) -> bool:
        """Create the folders; return False when the data folder cannot be written."""
        try:
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not self.images_dir.is_dir():
                self.images_dir.mkdir(mode=0o700, exist_ok=True)
                fsync_dir(self.data_dir)
            probe = self.data_dir / f"{TMP_PREFIX}probe-{os.getpid()}-{secrets.token_hex(4)}"
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            if is_read_only(exc) and self.data_dir.is_dir():
                return False
            if is_disk_full(exc) and self.data_dir.is_dir():
                raise CannotWrite(str(exc)) from exc
            if is_disk_full(exc):
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
            conn = check_database(self._connect(str(self.db_path)), self.db_path)
        except CorruptDatabase as exc:
            if not (exclusive and self.recover):
                raise DamagedDatabaseError(str(self.db_path), str(exc)) from None
            self._move_aside(str(exc))
            os.close(os.open(self.db_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            conn = self._connect(str(self.db_path))
            existed = False
        if exclusive and self.recover and (not existed or not has_schema(conn)):
            self._quarantine_unowned_images()
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as exc:
            conn.close()
            if is_disk_full(exc) or is_io_error(exc):
                raise CannotWrite(str(exc)) from exc
            raise StorageError(f"cannot open {self.db_path}: {exc}") from exc
        if str(mode).lower() != "wal":
            conn.close()
            raise StorageError(f"{self.db_path}: the file system does not support WAL ({mode})")
        return conn

    def _open_read_only(self) -> sqlite3.Connection:
        """Open the database for reading only; change nothing in the data folder.

        Without a WAL (a cleanly closed store) ``immutable=1`` reads the file as
        it is and creates nothing. With one, ``mode=ro`` reads it through its
        ``-shm``; when that fails (a full disk cannot grow the ``-shm``), a copy
        of the database and its WAL in memory (/dev/shm) is read instead, so no
        saved scan is hidden. ``immutable=1`` without the WAL is the last resort.

        Raises:
            DamagedDatabaseError: the database is damaged.
            StoreReadOnlyError: it cannot be read at all.
        """
        if not self.db_path.exists():
            raise StoreReadOnlyError(
                f"the data folder {self.data_dir} is read-only and holds no records"
            )
        wal = self.db_path.with_name(f"{DB_NAME}-wal")
        has_wal = wal.exists() and wal.stat().st_size > 0
        ways = ("mode=ro", "snapshot", "immutable=1") if has_wal else ("immutable=1",)
        path = quote(str(self.db_path.resolve()))
        last: Exception | None = None
        for how in ways:
            try:
                if how == "snapshot":
                    conn = self._open_snapshot()
                else:
                    conn = self._connect(f"file:{path}?{how}", uri=True)
                    conn = check_database(conn, self.db_path)
                if has_schema(conn):
                    if how == "immutable=1" and has_wal:
                        log.warning("opened %s as immutable: unsaved WAL pages are not seen", path)
                    return conn
                conn.close()
                last = StorageError("the database has no records table")
            except CorruptDatabase as exc:
                raise DamagedDatabaseError(str(self.db_path), str(exc)) from None
            except (sqlite3.Error, CannotWrite, StorageError, OSError) as exc:
                last = exc
        raise StoreReadOnlyError(f"the scan database in {self.data_dir} cannot be read: {last}")

    def _open_snapshot(self) -> sqlite3.Connection:
        """Copy the database and its WAL to a private folder in memory and open the copy."""
        shm = Path("/dev/shm")
        base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
        self._drop_snapshot()
        self._snapshot_dir = Path(tempfile.mkdtemp(prefix="skinscan-read-", dir=base))
        for name in (DB_NAME, f"{DB_NAME}-wal"):
            shutil.copyfile(self.data_dir / name, self._snapshot_dir / name)
        log.warning("reading a copy of %s in %s", self.db_path, self._snapshot_dir)
        return check_database(self._connect(str(self._snapshot_dir / DB_NAME)), self.db_path)

    def _drop_snapshot(self) -> None:
        if self._snapshot_dir is not None:
            shutil.rmtree(self._snapshot_dir, ignore_errors=True)
            self._snapshot_dir = None

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    def _move_aside(self, reason: str) -> None:
        dest = move_aside(self.data_dir)
        self.moved_aside = dest
        log.error("scan database %s was damaged (%s); moved to %s", self.db_path, reason, dest)
        self.notices.append(
            StoreNotice(
                "corrupt_db_moved",
                f"The scan database was damaged ({reason}) and was moved to {dest}; a new one "
                "was started. Earlier scans are kept there for recovery but are not shown.",
                str(dest),
            )
        )

    def _quarantine_unowned_images(self) -> None:
        moved = quarantine_unowned_images(self.data_dir)
        if moved is None:
            return
        dest, count = moved
        log.error("found %d image files without a database; moved to %s", count, dest)
        self.notices.append(
            StoreNotice(
                "orphaned_images_moved",
                f"The scan database was missing; {count} earlier image files were "
                f"moved to {dest} and a new database was started.",
                str(dest),
            )
        )

    def _meta(self) -> dict[str, str]:
        conn = self._db()
        if not has_schema(conn):
            return {}
        return {r["key"]: r["value"] for r in conn.execute("SELECT key, value FROM meta")}

    def _initialise(self, device_id: str | None) -> None:
        conn = self._db()
        values = {
            "schema_version": str(BASE_SCHEMA_VERSION),  # _migrate brings it up to date
            "key_check": self._cipher.key_check,
            "device_id": device_id or str(uuid.uuid4()),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        try:
            conn.execute("BEGIN IMMEDIATE")
            if not has_schema(conn):
                for statement in SCHEMA:  # executescript() would commit early
                    conn.execute(statement)
            conn.executemany(
                "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", list(values.items())
            )
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if is_disk_full(exc):
                raise DiskFullError(f"no space left to create {self.db_path}") from exc
            raise StorageError(f"cannot create the scan database: {exc}") from exc
        fsync_dir(self.data_dir)
        log.info("started a new scan database at %s", self.db_path)

    def _migrate(self) -> None:
        """Bring the database up to :data:`SCHEMA_VERSION`, one version per transaction.

        Each step re-reads the version inside its transaction, so two processes opening
        the same old database migrate it once. A full disk leaves the database as it is
        (readable; saving fails anyway until space is freed).
        """
        conn = self._db()
        while self.schema_version < SCHEMA_VERSION:
            target = self.schema_version + 1
            try:
                conn.execute("BEGIN IMMEDIATE")
                row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                current = int(row[0]) if row else BASE_SCHEMA_VERSION
                if current < target:
                    for statement in MIGRATIONS[target]:
                        conn.execute(statement)
                    conn.execute(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                        (str(target),),
                    )
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if not (is_disk_full(exc) or is_io_error(exc)):
                    raise StorageError(
                        f"cannot update {self.db_path} to schema {target}: {exc}"
                    ) from exc
                log.warning("no space to update %s to schema %d", self.db_path, target)
                return
            self.schema_version = max(current, target)
            log.info("scan database %s is at schema %d", self.db_path, self.schema_version)

    def _add_receipt_tables(self) -> None:
        """Create the tables added after schema 1 (receipts, acks, archives) when missing."""
        conn = self._db()
        names = {r[0] for r in conn.execute(TABLES_SQL)}
        if {"receipts", "acks", "archives"} <= names:
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
            for statement in RECEIPT_SCHEMA:
                conn.execute(statement)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if not (is_disk_full(exc) or is_io_error(exc)):
                raise StorageError(f"cannot add receipt tables to {self.db_path}: {exc}") from exc
            # Full: the records stay readable; exports are not acknowledged until space is freed.
            log.warning("no space to add the receipt tables to %s", self.db_path)

    def _sweep(self) -> SweepReport:
        """Remove leftovers of saves that never returned (only while nobody else has the store)."""
        referenced = set()
        for row in self._db().execute("SELECT image_file, heatmap_file FROM scans"):
            referenced.update(name for name in row if name)
        tmp = unreferenced = 0
        for folder in (self.data_dir, self.images_dir):
            for path in folder.iterdir():
                if path.name.startswith(TMP_PREFIX) and path.is_file():
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
            self._drop_snapshot()
