"""Receipts from the clinic, and archiving acknowledged scans off the device to free space.

The flow, and why each step can be trusted:

1. ``skinscan records export`` seals a random 32-byte *proof* into the export
   (to the clinic's public key) and logs its SHA-256 with the export's scan ids.
2. At the clinic, ``skinscan records open EXPORT --clinic-key KEY --receipt FILE``
   writes a receipt holding the export id, the scan ids it read and the proof.
   Only the holder of the clinic's private key can know the proof.
3. On the device, ``skinscan records ack FILE`` checks the proof against the
   logged hash and records which scans the clinic has.
4. ``skinscan records archive --to DIR`` seals those scans (again to the
   clinic's key) into ``skinscan-archive-*.sealed`` files, reads each file back
   and compares its SHA-256 with what was written, and only then removes the
   scans (rows and image files) from the device, logging what went where.
   Nothing is ever deleted that is not in a checked archive file and
   acknowledged by the clinic. The archive opens with ``records open`` like an export.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from device.errors import StorageError, TamperError
from device.records.crypto import fsync_dir
from device.records.durable import write_durable
from device.records.export import OpenedExport, export_records
from device.records.schema import to_json
from device.records.sqlite_store import SqliteScanStore

log = logging.getLogger(__name__)

RECEIPT_FORMAT = "skinscan-receipt-1"


class ReceiptError(StorageError, ValueError):
    """A receipt is malformed, for another device, or for an export this device did not log."""


@dataclass(frozen=True)
class AckResult:
    """An accepted receipt: its export and how many of its scans the clinic has."""

    export_id: str
    acknowledged: int


@dataclass
class ArchiveResult:
    """What :func:`archive_acknowledged` did.

    Attributes:
        files: archive files written and checked.
        archived: scan ids removed from the device (they are in ``files``).
        damaged: scan id -> problem, for acknowledged scans that could not be
            read (kept on the device; see ``records verify``).
        kept_for_corrections: acknowledged scans kept because a scan still on
            the device corrects them.
        unacknowledged: scans on the device that the clinic has not acknowledged.
    """

    files: list[Path] = field(default_factory=list)
    archived: list[str] = field(default_factory=list)
    damaged: dict[str, str] = field(default_factory=dict)
    kept_for_corrections: list[str] = field(default_factory=list)
    unacknowledged: int = 0


def new_proof() -> tuple[bytes, str]:
    """A fresh receipt proof and the SHA-256 (hex) the device keeps of it."""
    proof = secrets.token_bytes(32)
    return proof, hashlib.sha256(proof).hexdigest()


def write_receipt(opened: OpenedExport, path: str | os.PathLike[str]) -> Path:
    """Write the receipt for an opened export (clinic side).

    Raises:
        ReceiptError: the export carries no proof (made before receipts existed).
    """
    if opened.receipt_proof is None:
        raise ReceiptError(
            f"export {opened.export_id} carries no receipt proof (made by an older SkinScan); "
            "export again from the device"
        )
    receipt = {
        "format": RECEIPT_FORMAT,
        "export_id": opened.export_id,
        "device_id": opened.device_id,
        "received_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "scan_ids": sorted(r.scan_id for r in opened.records),
        "proof": opened.receipt_proof,
    }
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_durable(out, json.dumps(receipt, indent=1).encode())
    fsync_dir(out.parent)
    return out


def acknowledge(store: SqliteScanStore, receipt_path: str | os.PathLike[str]) -> AckResult:
    """Check a clinic receipt and record which scans the clinic has (device side).

    Raises:
        ReceiptError: the file is not a receipt of an export this device logged.
        TamperError: the proof does not match (not made from the sealed export).
        StoreReadOnlyError / StorageError: the store cannot be written.
    """
    try:
        receipt = json.loads(Path(receipt_path).read_text())
        export_id, proof = receipt["export_id"], base64.b64decode(receipt["proof"], validate=True)
        claimed = set(receipt["scan_ids"])
        if receipt.get("format") != RECEIPT_FORMAT:
            raise ValueError(f"format {receipt.get('format')!r}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ReceiptError(f"{receipt_path} is not a SkinScan receipt: {exc}") from None
    if receipt.get("device_id") != store.device_id:
        raise ReceiptError(f"{receipt_path} is for device {receipt.get('device_id')}, not this one")
    if not store.writable:
        raise StorageError("the store cannot be written (read-only or full): cannot record it")
    with store._lock:
        conn = store._db()
        row = conn.execute(
            "SELECT proof_sha256, scan_ids FROM receipts WHERE export_id = ?", (export_id,)
        ).fetchone()
        if row is None:
            raise ReceiptError(f"export {export_id} is not in this device's export log")
        if not hmac.compare_digest(row["proof_sha256"], hashlib.sha256(proof).hexdigest()):
            raise TamperError(f"{receipt_path}: the proof does not match export {export_id}")
        ids = sorted(claimed & set(json.loads(row["scan_ids"])))
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO acks (export_id, acknowledged_at, scan_ids) VALUES (?, ?, ?)",
            (export_id, datetime.now(timezone.utc).isoformat(timespec="seconds"), to_json(ids)),
        )
        conn.execute("COMMIT")
    log.info("clinic acknowledged %d scans of export %s", len(ids), export_id)
    return AckResult(export_id, len(ids))


def acknowledged_ids(store: SqliteScanStore) -> set[str]:
    """Scan ids the clinic has acknowledged (whether or not still on the device)."""
    with store._lock:
        rows = store._db().execute("SELECT scan_ids FROM acks").fetchall()
    return {sid for (ids,) in rows for sid in json.loads(ids)}


def _check_written(path: Path, digest: str) -> None:
    """Read the file back (past the page cache where the OS allows) and compare its hash."""
    with open(path, "rb") as fh:
        with contextlib.suppress(AttributeError, OSError):
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        actual = hashlib.sha256(fh.read()).hexdigest()
    if actual != digest:
        raise StorageError(f"the archive file {path} reads back differently; nothing was removed")


def archive_acknowledged(
    store: SqliteScanStore, to_dir: str | os.PathLike[str], clinic_public_key: bytes
) -> ArchiveResult:
    """Move every acknowledged scan into checked archive files, then off the device.

    Raises:
        StorageError: the archive could not be written or checked (nothing was
            removed), or the store cannot be written.
    """
    if not store.writable:
        raise StorageError("the store cannot be written (read-only folder): nothing to free")
    result = ArchiveResult()
    acked = acknowledged_ids(store)
    with store._lock:
        rows = store._db().execute("SELECT scan_id, corrects FROM scans ORDER BY seq").fetchall()
    present = [r["scan_id"] for r in rows]
    result.unacknowledged = sum(1 for sid in present if sid not in acked)
    chosen = {sid for sid in present if sid in acked}
    # A scan that a remaining scan corrects stays, so the audit trail stays whole.
    referenced = {r["corrects"] for r in rows if r["corrects"] and r["scan_id"] not in chosen}
    result.kept_for_corrections = sorted(chosen & referenced)
    chosen -= referenced
    records = []
    for sid in present:
        if sid in chosen:
            try:
                records.append(store.get(sid, salvage=True))  # a damaged heatmap only: kept out
            except StorageError as exc:
                result.damaged[sid] = str(exc)
    if not records:
        return result
    written = export_records(
        records, to_dir, clinic_public_key, device_id=store.device_id, name="skinscan-archive"
    )
    for path, digest in zip(written.files, written.sha256s, strict=True):
        _check_written(path, digest)
    result.files = written.files
    result.archived = written.scan_ids
    _remove(store, written.scan_ids, written.files, written.sha256s)
    return result


def _remove(store: SqliteScanStore, ids: list[str], files: list[Path], digests: list[str]) -> None:
    """Delete the archived rows in one transaction (with the log entry), then their files."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with store._lock:
        conn = store._db()
        names = [
            n
            for sid in ids
            for n in conn.execute(
                "SELECT image_file, heatmap_file FROM scans WHERE scan_id = ?", (sid,)
            ).fetchone()
            if n
        ]
        try:
            conn.execute("BEGIN IMMEDIATE")
            trigger = conn.execute(
                "SELECT sql FROM sqlite_master WHERE name = 'scans_no_delete'"
            ).fetchone()[0]
            # The append-only trigger is lifted inside this transaction only.
            conn.execute("DROP TRIGGER scans_no_delete")
            conn.executemany("DELETE FROM scans WHERE scan_id = ?", [(sid,) for sid in ids])
            conn.execute(trigger)
            conn.execute(
                "INSERT INTO archives (archived_at, files, sha256s, scan_ids) VALUES (?, ?, ?, ?)",
                (now, to_json([str(f) for f in files]), to_json(digests), to_json(ids)),
            )
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StorageError(f"archive written but scans not removed: {exc}") from exc
    for name in names:
        with contextlib.suppress(OSError):
            (store.images_dir / name).unlink()
    fsync_dir(store.images_dir)
    log.info("archived %d scans to %s", len(ids), ", ".join(str(f) for f in files))
