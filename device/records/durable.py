"""Durable files: atomic writes that survive a power cut, and what a failed write means.

A file is written to a temporary name, fsynced, then renamed; the caller fsyncs
the folder. Temporary names start with :data:`TMP_PREFIX` so that a start-up
sweep can remove the leftovers of a write that was cut short.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import sqlite3
import time
from pathlib import Path

TMP_PREFIX = ".tmp-"
SQLITE_CORRUPT = 11
SQLITE_FULL = 13
SQLITE_NOTADB = 26


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (OSError or sqlite3.Error) means the file system is full."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if not isinstance(exc, sqlite3.Error):
        return False
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    return code == SQLITE_FULL or (code is None and "disk is full" in str(exc))


def is_read_only(exc: OSError) -> bool:
    """Whether ``exc`` means the folder cannot be written (read-only or no permission)."""
    return exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM)


def write_durable(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temporary file, fsync, rename.

    The caller fsyncs the folder afterwards (once for several files).
    """
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}-{os.getpid()}-{secrets.token_hex(4)}")
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


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data`` as hex."""
    return hashlib.sha256(data).hexdigest()


def now_tag() -> str:
    """The current UTC time for folder names, e.g. ``20240101T120000Z``."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
