"""The SQLite scan store: saving, reading and checking records (opening is in sqlite_open)."""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from device.errors import DiskFullError, StorageError, TamperError
from device.records.api import ClosesOnExit, InvalidRecordError, ScanRecord, StoreReadOnlyError
from device.records.codec import decode_png, encode_png
from device.records.crypto import fsync_dir
from device.records.durable import TMP_PREFIX, is_disk_full, sha256_hex, write_durable
from device.records.queries import summary_of_row, where_clause
from device.records.schema import (
    SEAL_FORMAT,
    RecordSummary,
    VerifyReport,
    canonical,
    cell,
    sealed_columns,
    to_json,
)
from device.records.space import (
    MAX_RESERVE_BYTES,
    free_bytes,
    human_bytes,
    reserve_for,
    total_bytes,
)
from device.records.sqlite_open import SqliteStoreBase
from device.records.validation import float_map, parse_time, validate_record

log = logging.getLogger(__name__)

_ROW_OVERHEAD_BYTES = 64 * 1024  # WAL frames for one row and its index entries, generously


class SqliteScanStore(SqliteStoreBase, ClosesOnExit):
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
            Default (None): 2 % of the file system, between 1 and 16 MiB
            (see :mod:`device.records.space`).
        read_only: open for reading only: nothing in the data folder is created,
            moved or swept, and :meth:`save` raises :class:`StoreReadOnlyError`.
        recover: allow moving a damaged database aside (to ``corrupt-<time>/``),
            moving orphaned images aside and sweeping leftovers of cut-short saves.
            The device app and ``skinscan records repair`` allow it; other
            commands pass False and get :class:`DamagedDatabaseError` instead.

    Attributes:
        data_dir: the data folder.
        device_id: this device's id.
        writable: False when the folder is read-only; :meth:`save` then raises
            :class:`StoreReadOnlyError`.
        notices: things to show on screen at start (a damaged database moved
            aside, a read-only folder, a full disk).
        moved_aside: where a damaged database was moved at this start, else None.
        damaged: scan id -> problem, for records that :meth:`history` skipped.
        swept: leftovers of interrupted saves removed at start.

    Raises:
        DamagedDatabaseError: the database is damaged and may not be moved aside
            here (``recover=False``, a read-only open, or another process has it open).
        StorageError: the folder cannot be used at all.
        TamperError: the device key does not match the records.
    """

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
        image_blob = self._cipher.encrypt(encode_png(record.image), sid, "image")
        heat_blob = None
        if record.heatmap is not None:
            heat_blob = self._cipher.encrypt(encode_png(record.heatmap), sid, "heatmap")
        if self.schema_version < 2:
            raise StorageError(
                f"cannot save: the scan database {self.db_path} is not updated to schema 2 "
                "(was the disk full at start?); free space and start again"
            )
        row = self._row(record, patient_ref, image_blob, heat_blob)
        seal = self._cipher.encrypt(
            json.dumps({"patient_ref": patient_ref}).encode(),
            sid,
            "record",
            canonical(row, SEAL_FORMAT),
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
                    write_durable(self.images_dir / name, blob)
                    written.append(self.images_dir / name)
                fsync_dir(self.images_dir)
                self._insert(conn, {**row, "seal": seal})
            except BaseException as exc:
                self._undo_files(conn, sid, written)
                if is_disk_full(exc):
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
            "created_ts": parse_time(record.created_at).timestamp(),
            "device_id": record.device_id,
            "operator": record.operator,
            "body_site": record.body_site,
            "patient_ref_index": None if patient_ref is None else self._cipher.index(patient_ref),
            "label": record.label,
            "risk_tier": record.risk_tier,
            "p_malignant": float(record.p_malignant),
            "probabilities": to_json(float_map("probabilities", record.probabilities)),
            "quality": to_json(float_map("quality", record.quality)),
            "bundle_id": record.bundle_id,
            "bundle_sha256": record.bundle_sha256,
            "app_version": record.app_version,
            "corrects": record.corrects,
            "extra": to_json(dict(record.extra)),
            "image_file": f"{sid}.image",
            "image_sha256": sha256_hex(image_blob),
            "heatmap_file": None if heat_blob is None else f"{sid}.heatmap",
            "heatmap_sha256": None if heat_blob is None else sha256_hex(heat_blob),
            "body_side": record.body_side,
            "lesion": record.lesion,
            "mm_per_px": None if record.mm_per_px is None else float(record.mm_per_px),
            "bundle_label": record.bundle_label,
            "damaged": to_json(dict(record.damaged)) if record.damaged else None,
            "seal_format": SEAL_FORMAT,
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

    @property
    def reserve_bytes(self) -> int:
        """Space every save leaves free: ``min_free_bytes`` if given, else
        :func:`~device.records.space.reserve_for` the file system (1 to 16 MiB)."""
        if self.min_free_bytes is not None:
            return int(self.min_free_bytes)
        total = total_bytes(self.data_dir)
        return reserve_for(total) if total is not None else MAX_RESERVE_BYTES

    def _check_space(self, needed: int) -> None:
        free = free_bytes(self.data_dir)
        if free is None:
            return
        reserve = self.reserve_bytes
        if free < needed + reserve:
            raise DiskFullError(
                f"the storage is full: the scan was NOT saved; earlier scans are safe. "
                f"{human_bytes(free)} is free and {human_bytes(reserve)} is kept in reserve "
                "so that the records can always be opened, checked and exported. Export the "
                "records, then `skinscan records archive` the scans the clinic has "
                "acknowledged to free space."
            )

    def record_export(
        self,
        file_name: str,
        scan_ids: Sequence[str],
        export_id: str | None = None,
        proof_sha256: str | None = None,
    ) -> bool:
        """Append an entry to the export log (which records left the device, and when).

        Args:
            file_name: the export's file names.
            scan_ids: the records it holds.
            export_id: its id; with ``proof_sha256`` it is remembered so that the
                clinic's receipt can be checked (:func:`device.records.archive.acknowledge`).
            proof_sha256: SHA-256 of the receipt proof sealed into the export.

        Returns:
            True when logged; False when the store cannot be written (read-only
            folder, full disk): the export is valid but cannot be acknowledged.
        """
        if not self.writable:
            log.warning("export of %d records not logged: store not writable", len(scan_ids))
            return False
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with self._lock:
            conn = self._db()
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    "INSERT INTO exports (exported_at, file, scan_ids) VALUES (?, ?, ?)",
                    (now, file_name, to_json(list(scan_ids))),
                )
                if export_id is not None and proof_sha256 is not None:
                    conn.execute(
                        "INSERT INTO receipts (export_id, proof_sha256, scan_ids) VALUES (?, ?, ?)",
                        (export_id, proof_sha256, to_json(list(scan_ids))),
                    )
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if is_disk_full(exc):
                    log.warning("export not logged: the storage is full")
                    return False
                raise StorageError(f"cannot log the export: {exc}") from exc
        return True

    # ----------------------------------------------------------------- reading

    def get(self, scan_id: str, *, salvage: bool = False) -> ScanRecord:
        """Load and decrypt one record.

        Args:
            scan_id: the record's id.
            salvage: when only the heatmap is damaged (altered, missing, unreadable),
                return the record without it, the problem named in ``record.damaged``,
                instead of raising: the photo and the result are intact and still count.

        Raises:
            KeyError: no such record.
            TamperError: the record or one of its files was altered, or the key is wrong.
            StorageError: a file is missing or unreadable.
        """
        return self._load(self._row_of(scan_id), salvage=salvage)

    def _row_of(self, scan_id: str) -> sqlite3.Row:
        with self._lock:
            row = self._db().execute("SELECT * FROM scans WHERE scan_id = ?", (scan_id,)).fetchone()
        if row is None:
            raise KeyError(scan_id)
        return row

    def patient_ref_of(self, scan_id: str) -> str | None:
        """A record's patient reference, decrypted from its row alone (no image is read).

        Raises:
            KeyError: no such record.
            TamperError: the row was altered (its seal fails), or the key is wrong.
        """
        return self._open_seal(self._row_of(scan_id))["patient_ref"]

    def damage_of(self, scan_id: str) -> dict[str, str]:
        """Which parts of a record are damaged: part ("record", "photo", "heatmap") -> problem.

        Checks the row's seal and each file's presence and SHA-256 (which the seal
        covers); decodes nothing. Empty when the record is sound.

        Raises:
            KeyError: no such record.
        """
        row = self._row_of(scan_id)
        found: dict[str, str] = {}
        try:
            self._open_seal(row)
        except (StorageError, ValueError, KeyError) as exc:
            found["record"] = str(exc)
        parts = [("photo", "image_file", "image_sha256", "image")]
        if row["heatmap_file"] is not None:
            parts.append(("heatmap", "heatmap_file", "heatmap_sha256", "heatmap"))
        for part, name_col, digest_col, purpose in parts:
            try:
                self._read_blob(row[name_col], row[digest_col], row["scan_id"], purpose)
            except StorageError as exc:
                found[part] = str(exc)
        return found

    def history(
        self, patient_ref: str | None = None, body_site: str | None = None, limit: int = 100
    ) -> list[ScanRecord]:
        """Records newest first, optionally only one patient's and one body site's.

        Args:
            patient_ref: the patient's opaque reference (matched by keyed HMAC).
            body_site: body site to match exactly.
            limit: most records to return.

        A record that cannot be read (altered, a file missing) is skipped, so
        one bad record never hides the others: it is logged and listed in
        :attr:`damaged` (scan id -> problem) for the screen to mention. A record
        whose heatmap alone is damaged is returned without it (its photo and result
        are intact), the problem named in ``record.damaged``.
        :meth:`get` and :meth:`verify` still raise or report it.

        Raises:
            PatientRefError: ``patient_ref`` is not an opaque reference.
        """
        where, args = where_clause(self._cipher.index, patient_ref, body_site, None)
        sql = f"SELECT * FROM scans {where} ORDER BY created_ts DESC, seq DESC LIMIT ?"
        with self._lock:
            rows = self._db().execute(sql, (*args, int(limit))).fetchall()
        records = []
        for row in rows:
            try:
                records.append(self._load(row, salvage=True))
            except StorageError as exc:  # TamperError is one
                self.damaged[row["scan_id"]] = str(exc)
                log.error("history: skipped scan %s: %s", row["scan_id"], exc)
        return records

    def summaries(
        self,
        since: datetime | None = None,
        patient_ref: str | None = None,
        body_site: str | None = None,
    ) -> list[RecordSummary]:
        """Plain fields of records, oldest first, without decrypting anything."""
        where, args = where_clause(self._cipher.index, patient_ref, body_site, since)
        sql = f"SELECT * FROM scans {where} ORDER BY created_ts, seq"
        with self._lock:
            rows = self._db().execute(sql, args).fetchall()
        return [summary_of_row(r) for r in rows]

    def __len__(self) -> int:
        with self._lock:
            return int(self._db().execute("SELECT COUNT(*) FROM scans").fetchone()[0])

    def __contains__(self, scan_id: object) -> bool:
        """Whether a record with this scan id is saved (nothing is decrypted)."""
        with self._lock:
            row = self._db().execute("SELECT 1 FROM scans WHERE scan_id = ?", (scan_id,))
            return row.fetchone() is not None

    def _open_seal(self, row: sqlite3.Row) -> dict[str, Any]:
        """Authenticate the row's columns and return its sealed part (the patient reference)."""
        sid = row["scan_id"]
        seal_format = cell(row, "seal_format") or 1
        values = {name: cell(row, name) for name in sealed_columns(seal_format)}
        plain = self._cipher.decrypt(row["seal"], sid, "record", canonical(values, seal_format))
        return json.loads(plain)

    def _load(self, row: sqlite3.Row, *, salvage: bool = False) -> ScanRecord:
        sid = row["scan_id"]
        sealed = self._open_seal(row)
        image = self._read_image(row["image_file"], row["image_sha256"], sid, "image")
        heatmap = None
        damaged = dict(json.loads(cell(row, "damaged") or "{}"))
        if row["heatmap_file"] is not None:
            try:
                heatmap = self._read_image(
                    row["heatmap_file"], row["heatmap_sha256"], sid, "heatmap"
                )
            except StorageError as exc:  # TamperError is one
                if not salvage:
                    raise
                damaged["heatmap"] = str(exc)
                log.warning("scan %s read without its heatmap: %s", sid, exc)
        scale = cell(row, "mm_per_px")
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
            body_side=cell(row, "body_side"),
            lesion=cell(row, "lesion"),
            mm_per_px=None if scale is None else float(scale),
            bundle_label=cell(row, "bundle_label"),
            damaged=damaged,
        )

    def _read_blob(self, name: str, digest: str, sid: str, purpose: str) -> bytes:
        if "/" in name or name.startswith("."):
            raise TamperError(f"scan {sid}: bad {purpose} file name")
        path = self.images_dir / name
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            raise StorageError(f"scan {sid}: the {purpose} file {name} is missing") from None
        except OSError as exc:
            raise StorageError(f"scan {sid}: cannot read the {purpose}: {exc}") from exc
        if sha256_hex(blob) != digest:
            raise TamperError(f"scan {sid}: the {purpose} file was altered")
        return blob

    def _read_image(self, name: str, digest: str, sid: str, purpose: str) -> np.ndarray:
        blob = self._read_blob(name, digest, sid, purpose)
        return decode_png(self._cipher.decrypt(blob, sid, purpose), sid, purpose)

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
            n for n in names if n not in referenced and not n.startswith(TMP_PREFIX)
        ]
        return report

    def __repr__(self) -> str:
        mode = "rw" if self.writable else "ro"
        return f"SqliteScanStore({str(self.data_dir)!r}, {mode})"
