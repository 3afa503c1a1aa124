"""Finding a damaged database, and moving it (or orphaned images) aside without deleting.

Only the device app at start-up and ``skinscan records repair`` move anything;
read-only commands raise :class:`~device.records.api.DamagedDatabaseError` instead.
Folders made here take the data folder's permissions (0700 on a device), so a
moved-aside database is exactly as private as the live one.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

from device.errors import DiskFullError, StorageError
from device.records.crypto import fsync_dir
from device.records.durable import (
    SQLITE_CORRUPT,
    SQLITE_NOTADB,
    TMP_PREFIX,
    is_disk_full,
    now_tag,
)
from device.records.paths import DB_NAME, IMAGES_DIR
from device.records.schema import TABLES_SQL

log = logging.getLogger(__name__)


class CorruptDatabase(Exception):
    """The database file is not a readable SkinScan database (internal: see the store)."""


class CannotWrite(Exception):
    """The database could not be opened for writing (full disk, I/O error); reading may work."""


def check_database(conn: sqlite3.Connection, db_path: Path) -> sqlite3.Connection:
    """Return ``conn`` when it is a sound SkinScan database (an empty one is fine).

    Raises:
        CorruptDatabase: the file is damaged or not a SkinScan database (``conn`` is closed).
        CannotWrite: an I/O error or a full disk stopped SQLite (``conn`` is closed).
        StorageError: any other failure.
    """
    try:
        result = [r[0] for r in conn.execute("PRAGMA quick_check")]
        if result != ["ok"]:
            raise CorruptDatabase("; ".join(result[:3]))
        names = {r[0] for r in conn.execute(TABLES_SQL)}
    except sqlite3.DatabaseError as exc:
        conn.close()
        code = getattr(exc, "sqlite_errorcode", None)
        corrupt = code in (SQLITE_CORRUPT, SQLITE_NOTADB) or (
            code is None and type(exc) is sqlite3.DatabaseError
        )
        if corrupt:
            raise CorruptDatabase(str(exc)) from None
        if is_disk_full(exc) or is_io_error(exc):
            raise CannotWrite(str(exc)) from exc
        raise StorageError(f"cannot open {db_path}: {exc}") from exc
    except CorruptDatabase:
        conn.close()
        raise
    if names and not {"meta", "scans"} <= names - {"sqlite_sequence"}:
        conn.close()
        raise CorruptDatabase("it is not a SkinScan database")
    return conn


def is_io_error(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's "disk I/O error" family (a full tmpfs reports its -shm so)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF == 10  # SQLITE_IOERR and its extended codes
    return isinstance(exc, sqlite3.OperationalError) and "disk I/O error" in str(exc)


def private_dir(data_dir: Path, stem: str) -> Path:
    """A new folder ``<stem>-<UTC time>[-n]`` in ``data_dir``, with the data folder's mode."""
    mode = data_dir.stat().st_mode & 0o777
    dest = data_dir / f"{stem}-{now_tag()}"
    n = 1
    while dest.exists():
        n += 1
        dest = data_dir / f"{stem}-{now_tag()}-{n}"
    dest.mkdir(mode=mode)
    os.chmod(dest, mode)  # mkdir's mode is narrowed by the umask
    return dest


def move_aside(data_dir: Path) -> Path:
    """Move the database, its WAL files and its images to ``corrupt-<time>/``; delete nothing.

    Returns:
        The folder they are in now. A new, empty images folder is made.
    """
    dest = private_dir(data_dir, "corrupt")
    for name in (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", IMAGES_DIR):
        src = data_dir / name
        if src.exists():
            os.rename(src, dest / name)
    (data_dir / IMAGES_DIR).mkdir(mode=0o700, exist_ok=True)
    fsync_dir(dest)
    fsync_dir(data_dir)
    return dest


def quarantine_unowned_images(data_dir: Path) -> tuple[Path, int] | None:
    """A new database beside old image files: move those files to ``orphaned-images-<time>/``.

    Returns:
        (the folder, how many files), or None when there was nothing to move.
    """
    images = data_dir / IMAGES_DIR
    try:
        leftovers = [p for p in images.iterdir() if not p.name.startswith(TMP_PREFIX)]
    except FileNotFoundError:
        return None
    if not leftovers:
        return None
    dest = private_dir(data_dir, "orphaned-images")
    for path in leftovers:
        os.rename(path, dest / path.name)
    fsync_dir(dest)
    fsync_dir(images)
    return dest, len(leftovers)


def raise_full(exc: BaseException, what: str) -> None:
    """Raise DiskFullError for ``exc`` when it means a full disk."""
    if is_disk_full(exc):
        raise DiskFullError(f"no space left to {what}") from exc
