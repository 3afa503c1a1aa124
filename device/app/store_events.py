"""The record store's answers as the app shows them: a history list with the count of
unreadable scans, the free and reserved space when the disk is full, and the store's
start-up notices as events."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from device.app.events import (
    Notice,
)
from device.records.paths import DB_NAME


def read_history(store: Any, patient_ref: str | None, limit: int) -> tuple[list[Any], int]:
    """Saved scans, newest first, and how many of this list could not be read.

    The store skips a record it cannot read and lists it in ``store.damaged``
    (scan id -> problem), which keeps what every earlier call found. To count only
    this list's damaged scans, the call runs against an empty ``damaged``, and the
    earlier entries are put back afterwards.
    """
    damaged = getattr(store, "damaged", None)
    if not isinstance(damaged, dict):
        return list(store.history(patient_ref=patient_ref, limit=limit)), 0
    earlier = dict(damaged)
    damaged.clear()
    try:
        records = list(store.history(patient_ref=patient_ref, limit=limit))
        found = len(damaged)
    finally:
        now = dict(damaged)
        damaged.update(earlier)
        damaged.update(now)
    return records, found


def space_detail(store: Any, exc: Exception) -> str:
    """How much space is free and reserved, and why the reserve exists, for the full-disk screen.

    Falls back to the error's own text for a store that does not say.
    """
    return space_line(store) or str(exc)


def space_line(store: Any) -> str | None:
    """ "X free; Y is kept in reserve so that...", or None for a store that does not say."""
    from device.records.space import free_bytes, human_bytes

    reserve = getattr(store, "reserve_bytes", None)
    folder = getattr(store, "data_dir", None)
    free = free_bytes(folder) if folder is not None else None
    if not isinstance(reserve, int) or free is None:
        return None
    return (
        f"{human_bytes(free)} free; {human_bytes(reserve)} is kept in reserve so that saved "
        "scans can always be opened, checked and exported."
    )


# The store's corrupt_db_moved message: "The scan database was damaged (REASON) and was moved".
_DAMAGE_REASON = re.compile(r"damaged \((?P<reason>.+?)\) and was moved")


def notice_event(notice: Any, store: Any = None) -> Notice:
    """The event for one of the store's start-up notices (``StoreNotice``).

    For a database moved aside, the path shown is the old database file itself
    when it is there, and the detail is the damage found (the message would
    repeat the path). For a full disk, the detail is how much ``store`` has free
    and keeps in reserve, as on the Storage-full screen (the steps say the rest).
    """
    message = str(getattr(notice, "message", notice))
    kind = str(getattr(notice, "kind", "") or "")
    path = str(getattr(notice, "path", "") or "")
    if kind == "corrupt_db_moved" and path:
        old_db = Path(path) / DB_NAME
        if old_db.is_file():
            path = str(old_db)
        found = _DAMAGE_REASON.search(message)
        if found:
            message = f"Damage found: {found['reason']}."
    if kind == "storage_full":
        message = space_line(store) or message
    return Notice(message, kind=kind, path=path)
