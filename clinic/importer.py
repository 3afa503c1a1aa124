"""Importing sealed exports (``skinscan records export``) into the clinic store.

The export is opened with :func:`device.records.export.open_export`, the same
code as ``skinscan records open``. Every part is decrypted and every record is
validated *before* the first one is saved, so a tampered, foreign or malformed
export imports nothing. Records already in the store (same scan id) are
skipped, so importing an export twice adds nothing the second time.

Once every record of an export is stored, its receipt is written
(:func:`device.records.archive.write_receipt`, as ``records open --receipt``
does) and kept, encrypted, in the clinic store for download: on the scanner,
``skinscan records ack RECEIPT`` checks it, after which ``records archive`` may
move those scans off the device.

An *archive file* (``skinscan records archive``) opens like an export but carries
no receipt proof: its scans were acknowledged by this clinic and have already
left the scanner, so it needs no receipt. It is imported like an export (its
scans are usually in the store already) and reported as an archive.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from clinic.store import ClinicStore
from device.errors import StorageError, TamperError
from device.records.api import InvalidRecordError
from device.records.archive import ReceiptError, write_receipt
from device.records.export import MAGIC, SUFFIX, OpenedExport, open_export
from device.records.store import validate_record

log = logging.getLogger(__name__)

# device.records.archive.archive_acknowledged names its files so.
ARCHIVE_PREFIX = "skinscan-archive-"


class ImportRefusedError(StorageError, ValueError):
    """An export cannot be imported: not an export, wrong key, altered or malformed.

    Nothing was imported. The message says why in plain words.
    """


@dataclass(frozen=True)
class ImportReport:
    """What an import did.

    Attributes:
        export_id: the export's id.
        device_id: the scanner that made it.
        parts: number of parts read.
        added: scan ids newly stored.
        already_present: scan ids that were stored before (skipped).
        has_receipt: a receipt for the scanner was kept (False when the file
            carries no receipt proof: an archive file, or an export made by a
            SkinScan older than receipts).
        is_archive: the file is an archive (``skinscan records archive``): no
            proof, and named ``skinscan-archive-*`` or holding only scans this
            clinic has written receipts for. Its scans have left the scanner.
    """

    export_id: str
    device_id: str
    parts: int
    added: tuple[str, ...]
    already_present: tuple[str, ...]
    has_receipt: bool = False
    is_archive: bool = False

    @property
    def receipt_name(self) -> str:
        """The file name the receipt is offered under."""
        return receipt_name(self.export_id)


def receipt_name(export_id: str) -> str:
    """``skinscan-receipt-<first 8 characters of the export id>.json``.

    The export id comes from the export, which anyone holding the clinic's
    public key can make, so only letters, digits and dashes reach the name.
    """
    return f"skinscan-receipt-{re.sub(r'[^A-Za-z0-9-]', '', export_id)[:8] or 'export'}.json"


def open_checked(path: str | Path, clinic_private_key: bytes) -> OpenedExport:
    """Open and validate an export (a ``.sealed`` file or a folder of parts).

    Raises:
        ImportRefusedError: it is not an export, was not sealed to this clinic's
            key, was altered, or holds a malformed record.
    """
    try:
        opened = open_export(path, clinic_private_key)
    except TamperError as exc:
        raise ImportRefusedError(
            f"refused: {exc}. It was sealed to another clinic's key or altered on the way; "
            "nothing was imported"
        ) from None
    except StorageError as exc:
        raise ImportRefusedError(f"refused: {exc}; nothing was imported") from None
    except (zipfile.BadZipFile, KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
        # Sealed to our key but not the format a scanner writes.
        raise ImportRefusedError(
            f"refused: the export's contents are malformed ({type(exc).__name__}); "
            "nothing was imported"
        ) from None
    for record in opened.records:
        try:
            validate_record(record)
        except InvalidRecordError as exc:
            raise ImportRefusedError(
                f"refused: scan {str(record.scan_id)[:8]} in the export is invalid ({exc}); "
                "nothing was imported"
            ) from None
    return opened


def import_export(
    store: ClinicStore,
    path: str | Path,
    clinic_private_key: bytes,
    *,
    imported_by: str,
    file_names: Sequence[str] | None = None,
) -> ImportReport:
    """Import an export (or an archive file) into ``store``; records already there are skipped.

    Args:
        store: the clinic store.
        path: a ``.sealed`` file or a folder holding the parts of one export.
        clinic_private_key: the clinic's 32-byte private key.
        imported_by: the account doing the import, for the import log.
        file_names: the parts' names as the user had them (default: read from ``path``);
            they tell an archive file (``skinscan-archive-*``) from an export.

    Raises:
        ImportRefusedError: the export was refused; nothing was imported.
        StorageError: saving failed (records saved so far stay; importing again resumes).
    """
    opened = open_checked(path, clinic_private_key)
    if file_names is None:
        file_names = [p.name for p in _part_paths(Path(path))]
    # Judged before the import: afterwards every scan would look receipted.
    is_archive = opened.receipt_proof is None and _looks_archived(store, opened, file_names)
    added: list[str] = []
    present: list[str] = []
    for record in opened.records:
        (added if store.add_scan(record) else present).append(record.scan_id)
    # Only after every record is stored: the receipt lets the scanner delete them. An
    # archive file's scans have left the scanner already: there is nothing to receipt.
    has_receipt = False if is_archive else _keep_receipt(store, opened)
    store.log_import(
        imported_by,
        opened.export_id,
        opened.device_id,
        len(added),
        len(present),
        "archive" if is_archive else "export",
    )
    log.info(
        "imported %s %s from %s: %d added, %d already present",
        "archive file" if is_archive else "export",
        opened.export_id,
        opened.device_id,
        len(added),
        len(present),
    )
    return ImportReport(
        opened.export_id,
        opened.device_id,
        opened.parts,
        tuple(added),
        tuple(present),
        has_receipt,
        is_archive,
    )


def _part_paths(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix == SUFFIX)
    return [path]


def _looks_archived(store: ClinicStore, opened: OpenedExport, file_names: Sequence[str]) -> bool:
    """Whether a file without a receipt proof is a ``records archive`` file.

    The scanner names its archive files ``skinscan-archive-*`` and archives only
    scans the clinic acknowledged, i.e. scans in a receipt the clinic wrote; a
    renamed archive file is still known by the second.
    """
    if file_names and all(Path(n).name.startswith(ARCHIVE_PREFIX) for n in file_names):
        return True
    ids = {r.scan_id for r in opened.records}
    return bool(ids) and ids <= store.receipted_scan_ids()


def _keep_receipt(store: ClinicStore, opened: OpenedExport) -> bool:
    """Write the export's receipt and keep it in the store; False when the export has no proof."""
    path = store.temp_path(".json")
    try:
        write_receipt(opened, path)
        store.save_receipt(opened.export_id, path.read_bytes())
    except ReceiptError as exc:
        log.info("no receipt for export %s: %s", opened.export_id, exc)
        return False
    finally:
        path.unlink(missing_ok=True)
    return True


def import_uploaded(
    store: ClinicStore,
    files: Sequence[tuple[str, bytes]],
    clinic_private_key: bytes,
    *,
    imported_by: str,
) -> ImportReport:
    """Import the parts of one export uploaded through the web page.

    Args:
        files: (file name, contents) of each uploaded part.

    Raises:
        ImportRefusedError: no file, a file that is not an export, or a refused export.
    """
    if not files:
        raise ImportRefusedError("no export file was given")
    folder = store.temp_path()
    folder.mkdir()
    # Our own names on disk (the uploaded name is never used as a path); messages
    # name the user's file instead, with its place in the upload as the detail.
    shown: dict[str, str] = {}
    try:
        for number, (name, data) in enumerate(files):
            label = _label(name, number, len(files))
            if not data.startswith(MAGIC):
                raise ImportRefusedError(
                    f"refused: {label} is not a SkinScan export "
                    f"(a {SUFFIX} file from 'skinscan records export'); nothing was imported"
                )
            part = folder / f"part-{number:03d}{SUFFIX}"
            part.write_bytes(data)
            shown[str(part)] = shown[part.name] = label
        try:
            return import_export(
                store,
                folder,
                clinic_private_key,
                imported_by=imported_by,
                file_names=[name for name, _ in files],
            )
        except ImportRefusedError as exc:
            raise ImportRefusedError(_rename(str(exc), shown)) from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _label(name: str, number: int, count: int) -> str:
    """How a message names an uploaded file: its name, and its place when there are several."""
    base = Path(name.replace("\\", "/")).name or "the file"
    return base if count == 1 else f"{base} (file {number + 1} of {count})"


def _rename(message: str, shown: dict[str, str]) -> str:
    """``message`` with the temporary part paths and names replaced by the user's file names."""
    for internal in sorted(shown, key=len, reverse=True):  # full paths before bare names
        message = message.replace(internal, shown[internal])
    return message
