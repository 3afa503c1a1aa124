"""Free space on the data folder's file system, and the reserve a save must leave.

Why a reserve: a save that used the very last bytes would leave nothing for
SQLite's WAL, its ``-shm`` and the checkpoint that folds the WAL back into the
database, nor for the system itself when the records share its file system
(the Raspberry Pi's SD card). A store squeezed to 0 bytes can still be read
(see :mod:`device.records.sqlite_open`), but it is safer never to get there.

How much: 2 % of the file system, at least 1 MiB and at most 16 MiB.
16 MiB is 0.05 % of a 32 GB SD card and about 25 scans (a scan is an image
and a heatmap, roughly 0.3 MB each); 1 MiB holds a checkpoint of many hundreds
of rows (a row is about 2 KB; images live in their own files). 2 % keeps a
small disk useful: a 64 MiB partition keeps 1.3 MiB, not a quarter of itself.
"""

from __future__ import annotations

import os

MIB = 1024 * 1024
MAX_RESERVE_BYTES = 16 * MIB
MIN_RESERVE_BYTES = 1 * MIB
RESERVE_FRACTION = 0.02


def reserve_for(total_bytes: int) -> int:
    """Bytes to keep free on a file system of ``total_bytes`` (see the module docstring)."""
    return int(min(MAX_RESERVE_BYTES, max(MIN_RESERVE_BYTES, RESERVE_FRACTION * total_bytes)))


def free_bytes(folder: str | os.PathLike[str]) -> int | None:
    """Bytes an unprivileged writer may still use under ``folder``; None when unknown."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def total_bytes(folder: str | os.PathLike[str]) -> int | None:
    """Size of the file system holding ``folder``; None when unknown."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    return st.f_blocks * st.f_frsize


def human_bytes(n: int) -> str:
    """``n`` bytes in KiB or MiB, for messages."""
    if n >= MIB:
        return f"{n / MIB:.1f} MiB"
    return f"{n // 1024} KiB"
