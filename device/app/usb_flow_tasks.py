"""The menu's record work on a mounted USB stick: export, and free space with the
clinic's receipt. Each returns a :class:`UsbOutcome` for the screen; nothing here
raises for a problem the health worker can meet (a missing key, a full stick).

The export is the one ``skinscan records export`` writes
(:func:`device.records.export.export_records`, with a receipt proof logged on the
device); free space is ``records ack`` with every receipt for this scanner found on
the stick, then ``records archive`` onto the stick
(:mod:`device.records.archive`): nothing leaves the device that the clinic has not
acknowledged and that is not in an archive file read back and checked.
"""

from __future__ import annotations

import errno
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from device.app.menu_state import UsbOutcome
from device.errors import DiskFullError, StorageError, TamperError

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
RECEIPT_MAX_BYTES = 256 * 1024
WRITE_PROTECT_STEP = (
    "Check the stick's write-protect switch, or use another stick (FAT32 or exFAT, as "
    "sticks are sold)."
)
NEXT_AFTER_EXPORT = "Take the stick to the clinic; bring back its receipt to free space."
NO_KEY_STEP = (
    "Ask your supervisor to install the clinic's key on this scanner "
    "(setup.sh --clinic-key clinic.pub), then export again."
)


def _scans(count: int) -> str:
    return f"{count} scan" if count == 1 else f"{count} scans"


def clinic_key(store: Any) -> tuple[Path | None, bytes | None, str]:
    """The clinic's public key for sealing: (path, key, "") or (path, None, why not)."""
    from device.records.export import ExportKeyError, load_public_key
    from device.records.paths import resolve_clinic_public_key

    folder = getattr(store, "data_dir", None)
    if folder is None:
        return None, None, "this record store has no data folder for the clinic's key"
    path = resolve_clinic_public_key(folder)
    try:
        return path, load_public_key(path), ""
    except ExportKeyError as exc:
        return path, None, str(exc)


def write_problem(task: str, exc: Exception, stick: str) -> UsbOutcome:
    """The outcome for a stick that could not be written: full, read-only or failing."""
    cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
    code = getattr(cause, "errno", None)
    kept = "Nothing was lost: every scan is still on the scanner."
    if isinstance(exc, DiskFullError) or code in (errno.ENOSPC, errno.EDQUOT):
        return UsbOutcome(
            task, False, "The USB stick is full", (kept, str(exc)),
            next_step="Delete old files from the stick, or use a larger one, and try again.",
            stick=stick,
        )  # fmt: skip
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        return UsbOutcome(
            task, False, "The USB stick cannot be written", (kept, str(exc)),
            next_step=WRITE_PROTECT_STEP,
            stick=stick,
        )  # fmt: skip
    return UsbOutcome(
        task, False, "Writing to the USB stick failed", (kept, str(exc)),
        next_step="Try again, or use another stick. If it fails again, tell your supervisor.",
        stick=stick,
    )  # fmt: skip


def export_to(store: Any, folder: Path, progress: Progress, stick: str = "") -> UsbOutcome:
    """Seal every readable saved scan to the clinic's key, into ``folder``.

    A scan that cannot be read is left out (and said so); the others are exported.
    """
    from device.records.archive import new_proof
    from device.records.export import export_records
    from device.records.queries import iter_exportable

    task = "export"
    _path, key, why = clinic_key(store)
    if key is None:
        return UsbOutcome(
            task, False, "No clinic key on this scanner",
            ("Exports are sealed so that only the clinic can open them.", why),
            next_step=NO_KEY_STEP, stick=stick,
        )  # fmt: skip
    try:
        summaries = list(store.summaries())
    except StorageError as exc:
        return UsbOutcome(task, False, "Saved scans cannot be read", (str(exc),),
                          next_step="Tell your supervisor.", stick=stick)  # fmt: skip
    if not summaries:
        return UsbOutcome(task, True, "No saved scans to export",
                          ("The stick was not written to.",), stick=stick)  # fmt: skip
    total = len(summaries)
    skipped: dict[str, str] = {}
    salvaged: dict[str, str] = {}

    def readable() -> Iterator[Any]:
        # The records `records export` sends: a damaged heatmap costs only the heatmap.
        records = iter_exportable(store, None, skipped, salvaged)
        for number, record in enumerate(records, start=1):
            progress(f"Exporting scan {number} of {total}…", number - 1, total)
            yield record

    proof, proof_sha = new_proof()
    try:
        result = export_records(
            readable(), folder, key, device_id=store.device_id, receipt_proof=proof
        )
    except StorageError as exc:
        log.error("export to %s failed: %s", folder, exc)
        return write_problem(task, exc, stick)
    progress("Checking…", total, total)
    lines: list[str] = []
    if result.files:
        names = ", ".join(f.name for f in result.files)
        if not store.record_export(names, result.scan_ids, result.export_id, proof_sha):
            lines.append(
                "The export could not be logged on the scanner (its storage is full or "
                "read-only): the clinic can open it, but its receipt cannot free space."
            )
    if salvaged:
        lines.append(
            f"{_scans(len(salvaged))} went without their damaged heatmap (photo and result "
            "intact; tell your supervisor)."
        )
    if skipped:
        for scan_id, problem in skipped.items():
            log.error("export: skipped scan %s: %s", scan_id, problem)
        lines.append(
            f"{_scans(len(skipped))} could not be read and stayed on the scanner "
            "(tell your supervisor)."
        )
    exported = len(result.scan_ids)
    if not exported:
        return UsbOutcome(task, False, "No scan could be read", tuple(lines),
                          next_step="Tell your supervisor.", stick=stick)  # fmt: skip
    lines.insert(0, f"Sealed for the clinic on the stick {stick}." if stick else
                 "Sealed for the clinic on the stick.")  # fmt: skip
    return UsbOutcome(
        task, True, f"Exported {_scans(exported)}", tuple(lines),
        files=tuple(f.name for f in result.files), next_step=NEXT_AFTER_EXPORT, stick=stick,
    )  # fmt: skip


def find_receipts(folder: Path, device_id: str) -> list[Path]:
    """Receipt files for ``device_id`` on the stick (its top folder and one level down)."""
    from device.records.archive import RECEIPT_FORMAT

    found: list[Path] = []
    candidates = [*folder.glob("*.json"), *folder.glob("*/*.json")]
    for path in sorted(candidates):
        try:
            if path.name.startswith(".") or path.stat().st_size > RECEIPT_MAX_BYTES:
                continue
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("format") == RECEIPT_FORMAT:
            if data.get("device_id") == device_id:
                found.append(path)
            else:
                log.info("receipt %s is for device %s, not this one", path, data.get("device_id"))
    return found


def free_space_to(store: Any, folder: Path, progress: Progress, stick: str = "") -> UsbOutcome:
    """Record the clinic's receipts found on the stick, then archive the scans they
    acknowledge onto it (checked) and remove them from the scanner."""
    from device.records.archive import ReceiptError, acknowledge, archive_acknowledged
    from device.records.sqlite_store import SqliteScanStore

    task = "free-space"
    if not isinstance(store, SqliteScanStore):
        return UsbOutcome(task, False, "This scanner's records cannot be archived",
                          ("Free space needs the scanner's own record store (not a memory "
                           "store).",), stick=stick)  # fmt: skip
    _path, key, why = clinic_key(store)
    if key is None:
        return UsbOutcome(task, False, "No clinic key on this scanner",
                          ("The archive is sealed so that only the clinic can open it.", why),
                          next_step=NO_KEY_STEP, stick=stick)  # fmt: skip
    receipts = find_receipts(folder, store.device_id)
    lines: list[str] = []
    accepted = 0
    for number, receipt in enumerate(receipts, start=1):
        progress(f"Reading receipt {number} of {len(receipts)}…", number - 1, len(receipts))
        try:
            acknowledge(store, receipt)
            accepted += 1
        except TamperError as exc:
            lines.append(f"Receipt {receipt.name} refused: it does not match the export.")
            log.error("receipt %s refused: %s", receipt, exc)
        except ReceiptError as exc:
            lines.append(f"Receipt {receipt.name} not used: {exc}")
        except StorageError as exc:
            return UsbOutcome(task, False, "Receipts cannot be recorded", (str(exc),),
                              next_step="Tell your supervisor.", stick=stick)  # fmt: skip
    progress("Moving the scans the clinic has onto the stick…", 0, 0)
    try:
        result = archive_acknowledged(store, folder, key)
    except StorageError as exc:
        log.error("archive to %s failed: %s", folder, exc)
        outcome = write_problem(task, exc, stick)
        return UsbOutcome(task, False, outcome.title, (*lines, *outcome.lines),
                          next_step=outcome.next_step, stick=stick)  # fmt: skip
    moved = len(result.archived)
    if result.unacknowledged:
        lines.append(
            f"{_scans(result.unacknowledged)} the clinic has not confirmed yet stay on the scanner."
        )
    if result.damaged:
        lines.append(f"{_scans(len(result.damaged))} could not be read and stay on the scanner.")
    if not moved:
        if not receipts:
            return UsbOutcome(
                task, False, "No receipt from the clinic on this stick", tuple(lines),
                next_step="Export to a stick, take it to the clinic, and bring it back with "
                "the clinic's receipt file on it (skinscan-receipt-….json).",
                stick=stick,
            )  # fmt: skip
        return UsbOutcome(task, True, "No space to free yet", tuple(lines),
                          next_step="Export the newer scans and take them to the clinic.",
                          stick=stick)  # fmt: skip
    lines.insert(0, f"{_scans(moved)} the clinic confirmed were moved onto the stick, checked, "
                 "and removed from the scanner.")  # fmt: skip
    if accepted:
        receipts_word = "receipt" if accepted == 1 else "receipts"
        lines.append(f"{accepted} {receipts_word} from the clinic recorded.")
    return UsbOutcome(
        task, True, f"Freed the space of {_scans(moved)}", tuple(lines),
        files=tuple(f.name for f in result.files),
        next_step="Give the stick to the clinic to keep: its archive file is a sealed copy.",
        stick=stick,
    )  # fmt: skip
