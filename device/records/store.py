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

The code lives in small modules: :mod:`~device.records.validation`,
:mod:`~device.records.durable`, :mod:`~device.records.schema`,
:mod:`~device.records.sqlite_open` and :mod:`~device.records.sqlite_store`,
:mod:`~device.records.memory_store` and :mod:`~device.records.queries`; this
module keeps the public names importable from one place.

Use :func:`open_store` in the app: it never raises for a bad data folder and
falls back to a :class:`MemoryScanStore` that refuses saves with a clear reason.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from device.errors import StorageError
from device.records.crypto import KeyProvider
from device.records.memory_store import MemoryScanStore
from device.records.paths import resolve_data_dir
from device.records.queries import iter_records
from device.records.schema import SCHEMA_VERSION, RecordSummary, SweepReport, VerifyReport
from device.records.sqlite_open import DEFAULT_MIN_FREE_BYTES
from device.records.sqlite_store import SqliteScanStore
from device.records.validation import validate_record

__all__ = [
    "DEFAULT_MIN_FREE_BYTES",
    "SCHEMA_VERSION",
    "MemoryScanStore",
    "RecordSummary",
    "SqliteScanStore",
    "SweepReport",
    "VerifyReport",
    "iter_records",
    "open_store",
    "validate_record",
]

log = logging.getLogger(__name__)


def open_store(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    configured_dir: str | os.PathLike[str] | None = None,
    key_provider: KeyProvider | bytes | None = None,
    device_id: str | None = None,
    min_free_bytes: int | None = None,
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
