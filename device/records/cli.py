"""``skinscan records``: list, export, verify, repair and archive scan records; clinic keys.

On the device::

    skinscan records list [--since DATE] [--patient REF] [--body-site SITE]
    skinscan records export --to /media/usb [--since DATE] [--clinic-key clinic.pub]
    skinscan records verify                 # changes nothing; non-zero on any damage
    skinscan records repair                 # moves a damaged database aside, deletes nothing
    skinscan records assign SCAN --patient REF  # a patient for a scan saved without one
    skinscan records ack RECEIPT            # the clinic's receipt for an export
    skinscan records archive --to /media/usb  # frees space: acknowledged scans leave the device

At the clinic (desktop)::

    skinscan records keygen --out ~/clinic-keys
    skinscan records open EXPORT --clinic-key ~/clinic-keys/clinic.key [--out DIR] [--receipt F]

Heavy imports (cryptography, OpenCV, PyNaCl) happen inside :func:`main`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import datetime, timezone
from pathlib import Path

from device.errors import StorageError
from device.records.api import lesion_text

log = logging.getLogger(__name__)


def _date(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a date: {text!r} (use YYYY-MM-DD or an ISO-8601 time)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``records`` actions to ``parser``."""
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="data folder (default: $SKINSCAN_DATA_DIR, /var/lib/skinscan on a Pi, "
        "else ~/.local/share/skinscan)",
    )
    where.add_argument(
        "--config", type=Path, metavar="FILE", help="device config file naming records.data_dir"
    )
    actions = parser.add_subparsers(dest="records_action", metavar="ACTION")
    actions.required = True

    p = actions.add_parser(
        "list", parents=[where], help="list saved scans (no images; changes nothing)"
    )
    p.add_argument("--since", type=_date, metavar="DATE", help="only scans at or after DATE")
    p.add_argument("--patient", metavar="REF", help="only this patient reference")
    p.add_argument("--body-site", metavar="SITE", help="only this body site")

    p = actions.add_parser(
        "export",
        parents=[where],
        help="seal scans to the clinic's public key, e.g. onto USB (damaged scans are skipped)",
    )
    p.add_argument("--to", type=Path, required=True, metavar="DIR", help="destination folder")
    p.add_argument("--since", type=_date, metavar="DATE", help="only scans at or after DATE")
    _clinic_public_key(p)

    actions.add_parser(
        "verify",
        parents=[where],
        help="check the database and every record and file (changes nothing)",
    )
    actions.add_parser(
        "repair",
        parents=[where],
        help="move a damaged database aside to corrupt-<time>/ (nothing is deleted) and start "
        "a new one; also removes leftovers of saves cut short",
    )

    p = actions.add_parser(
        "assign",
        parents=[where],
        help="give a patient to a scan saved without one (saves a correction; the original "
        "stays as the audit trail)",
    )
    p.add_argument("scan", metavar="SCAN", help="the scan id, or its first 8 or more characters")
    p.add_argument("--patient", required=True, metavar="REF", help="the patient's card reference")

    p = actions.add_parser(
        "ack",
        parents=[where],
        help="record the clinic's receipt for an export (made by `records open --receipt`)",
    )
    p.add_argument("receipts", type=Path, nargs="+", metavar="RECEIPT", help="receipt file(s)")

    p = actions.add_parser(
        "archive",
        parents=[where],
        help="free space: move scans the clinic has acknowledged into a sealed archive file, "
        "check it, then remove them from the device",
    )
    p.add_argument("--to", type=Path, required=True, metavar="DIR", help="archive folder (USB)")
    _clinic_public_key(p)

    p = actions.add_parser("open", help="decrypt and list an export (clinic side)")
    p.add_argument("export", type=Path, metavar="EXPORT", help="a .sealed file or a folder")
    p.add_argument(
        "--clinic-key", type=Path, metavar="KEY", help="the clinic private key file (required)"
    )
    p.add_argument("--key", type=Path, dest="clinic_key", help=argparse.SUPPRESS)  # old name
    p.add_argument("--out", type=Path, metavar="DIR", help="also write records.json and PNGs here")
    p.add_argument(
        "--receipt",
        type=Path,
        metavar="FILE",
        help="write a receipt for the device (`records ack FILE` there), so that it may "
        "archive these scans",
    )

    p = actions.add_parser("keygen", help="create the clinic key pair (clinic side)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the keys")
    p.add_argument("--name", default="clinic", help="file name stem (default: clinic)")


def _clinic_public_key(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--clinic-key",
        type=Path,
        metavar="PUB",
        help="clinic public key file (default: $SKINSCAN_CLINIC_PUBLIC_KEY or DATA_DIR/clinic.pub;"
        " make one with `skinscan records keygen` at the clinic)",
    )


def _configured_dir(config_file: Path | None) -> str | None:
    """records.data_dir from the device config (the given file, else the system one)."""
    try:
        from device.config import load_config
    except ImportError:
        return None
    return load_config(config_file).records.data_dir or None


def _open_store(args: argparse.Namespace, *, read_only: bool = False, recover: bool = False):
    """Open the records of ``--data-dir``; only ``records repair`` passes ``recover=True``."""
    from device.records.paths import DB_NAME, resolve_data_dir
    from device.records.store import SqliteScanStore

    data_dir = args.data_dir or resolve_data_dir(_configured_dir(args.config))
    if not (data_dir / DB_NAME).exists():
        raise StorageError(f"no scan records in {data_dir} (set --data-dir or SKINSCAN_DATA_DIR)")
    store = SqliteScanStore(data_dir, read_only=read_only, recover=recover)
    for notice in store.notices:
        print(f"warning: {notice.message}", file=sys.stderr)
    return store


def _list(args: argparse.Namespace) -> int:
    with _open_store(args, read_only=True) as store:
        rows = store.summaries(since=args.since, patient_ref=args.patient, body_site=args.body_site)
        print(
            f"{'time (UTC)':<20} {'scan':<8} {'label':<6} {'tier':<9} {'P(mal)':>6}  site / notes"
        )
        damaged = 0
        for r in rows:
            notes = [lesion_text(r.body_site, r.body_side, r.lesion) or "-"]
            problems = store.damage_of(r.scan_id)
            if r.has_patient_ref and "record" not in problems:
                notes.append(f"patient {_patient_ref(store, r.scan_id)}")
            if r.corrects:
                notes.append(f"corrects {r.corrects[:8]}")
            notes.append(
                f"bundle {r.bundle_id}" + (f" ({r.bundle_label})" if r.bundle_label else "")
            )
            if problems:
                damaged += 1
                notes.append(
                    "DAMAGED " + "; ".join(_damage_note(p, m) for p, m in problems.items())
                )
            print(
                f"{r.created_at[:19]:<20} {r.scan_id[:8]:<8} {r.label:<6} {r.risk_tier:<9} "
                f"{r.p_malignant:>6.2f}  {', '.join(notes)}"
            )
        print(f"{len(rows)} record(s) in {store.data_dir}")
        if damaged:
            print(f"{damaged} damaged: run `skinscan records verify` for details")
    return 0


def _damage_note(part: str, problem: str) -> str:
    """One damaged part as `records list` names it: what it costs, and the problem."""
    cost = {
        "record": "the record itself (its fields or patient reference); it cannot be exported",
        "photo": "the photo; the scan cannot be exported",
        "heatmap": "the heatmap only; photo and result are exported without it",
    }.get(part, part)
    detail = problem.split(": ", 1)[-1]
    return f"{cost} ({detail})"


def _patient_ref(store, scan_id: str) -> str:
    """A record's patient reference, decrypted from its row alone (never a name)."""
    try:
        return store.patient_ref_of(scan_id) or "?"
    except (KeyError, StorageError) as exc:
        return f"reference unreadable ({exc})"


def _public_key(args: argparse.Namespace, data_dir: Path) -> tuple[Path, bytes]:
    from device.records.export import ExportKeyError, load_public_key
    from device.records.paths import resolve_clinic_public_key

    key_path = args.clinic_key or resolve_clinic_public_key(data_dir)
    try:
        return key_path, load_public_key(key_path)
    except ExportKeyError as exc:
        raise ExportKeyError(
            f"{exc}. Make the clinic's key pair at the clinic with `skinscan records keygen "
            f"--out DIR`, then copy clinic.pub to {data_dir}/clinic.pub or pass --clinic-key PUB"
        ) from None


def _export(args: argparse.Namespace) -> int:
    from device.records.archive import new_proof
    from device.records.export import export_records
    from device.records.queries import iter_exportable

    with _open_store(args) as store:
        key_path, public_key = _public_key(args, store.data_dir)
        proof, proof_sha = new_proof()
        skipped: dict[str, str] = {}
        salvaged: dict[str, str] = {}
        result = export_records(
            iter_exportable(store, args.since, skipped, salvaged),
            args.to,
            public_key,
            device_id=store.device_id,
            receipt_proof=proof,
        )
        if result.files:
            names = ", ".join(f.name for f in result.files)
            if not store.record_export(names, result.scan_ids, result.export_id, proof_sha):
                print("warning: the export could not be logged on the device", file=sys.stderr)
    for sid, problem in skipped.items():
        print(f"SKIPPED {sid}: {problem}", file=sys.stderr)
    for sid, problem in salvaged.items():
        print(f"DAMAGED {sid}: exported without its heatmap ({problem})", file=sys.stderr)
    for path in result.files:
        print(path)
    if result.files:
        print(f"exported {len(result.scan_ids)} record(s), sealed to {key_path}")
    else:
        print("nothing to export")
    if salvaged:
        print(
            f"{len(salvaged)} record(s) exported without their damaged heatmap (listed above); "
            "photo and result are intact, and the export names the damage"
        )
    if skipped:
        print(
            f"SKIPPED {len(skipped)} damaged record(s) (listed above); run `skinscan records "
            "verify` for details"
        )
        return 1
    return 0


def _verify(args: argparse.Namespace) -> int:
    from device.records.api import DamagedDatabaseError

    try:
        with _open_store(args, read_only=True) as store:
            report = store.verify()
    except DamagedDatabaseError as exc:
        print(f"database: DAMAGED: {exc.damage}")
        print(f"{exc.path} was not changed. Run `skinscan records repair` to move it aside.")
        print("checked 0 record(s): DATABASE DAMAGED")
        return 1
    if report.integrity != ["ok"]:
        for line in report.integrity:
            print(f"database: {line}")
    for scan_id, problem in report.problems:
        print(f"{scan_id}: {problem}")
    for name in report.unreferenced_files:
        print(f"unreferenced file: {name}")
    verdict = "ok" if report.ok else "PROBLEMS FOUND"
    print(f"checked {report.records} record(s): {verdict}")
    return 0 if report.ok else 1


def _repair(args: argparse.Namespace) -> int:
    with _open_store(args, recover=True) as store:
        moved, swept = store.moved_aside, store.swept
        count = len(store)
    if moved is not None:
        print(f"the damaged database was moved to {moved} (nothing was deleted)")
        print(f"a new, empty database was started in {store.data_dir}")
    else:
        print(f"the database is sound: {count} record(s); nothing was moved")
    if swept.temporary_files or swept.unreferenced_files:
        print(
            f"removed leftovers of saves cut short: {swept.temporary_files} temporary and "
            f"{swept.unreferenced_files} unreferenced file(s)"
        )
    return 0


def _assign(args: argparse.Namespace) -> int:
    from device.records.assign import assign_patient

    with _open_store(args) as store:
        prefix = args.scan.strip().lower()
        if len(prefix) < 8:
            raise StorageError("give at least the first 8 characters of the scan id")
        found = [s.scan_id for s in store.summaries() if s.scan_id.startswith(prefix)]
        if len(found) != 1:
            what = "no scan" if not found else f"{len(found)} scans"
            raise StorageError(f"{what} with an id starting {prefix!r}")
        correction = assign_patient(store, found[0], args.patient)
    print(
        f"scan {found[0][:8]} now belongs to patient {correction.patient_ref}: saved as "
        f"correction {correction.scan_id[:8]} (the original stays as the audit trail)"
    )
    return 0


def _ack(args: argparse.Namespace) -> int:
    from device.records.archive import acknowledge

    with _open_store(args) as store:
        for receipt in args.receipts:
            result = acknowledge(store, receipt)
            print(f"export {result.export_id}: the clinic has {result.acknowledged} scan(s)")
    return 0


def _archive(args: argparse.Namespace) -> int:
    from device.records.archive import archive_acknowledged

    with _open_store(args) as store:
        key_path, public_key = _public_key(args, store.data_dir)
        result = archive_acknowledged(store, args.to, public_key)
    for path in result.files:
        print(path)
    for sid, problem in result.damaged.items():
        print(f"kept (cannot be read) {sid}: {problem}")
    print(
        f"archived and removed {len(result.archived)} scan(s) acknowledged by the clinic "
        f"(sealed to {key_path}, each file read back and checked); kept "
        f"{result.unacknowledged} not yet acknowledged, {len(result.kept_for_corrections)} "
        f"that later scans correct, {len(result.damaged)} damaged"
    )
    return 1 if result.damaged else 0


def _open(args: argparse.Namespace) -> int:
    from device.records.export import load_private_key, open_export, save_opened

    if args.clinic_key is None:
        raise StorageError("records open needs --clinic-key KEY (the clinic private key file)")
    opened = open_export(args.export, load_private_key(args.clinic_key))
    print(
        f"export {opened.export_id} from device {opened.device_id}, made {opened.exported_at}, "
        f"{opened.parts} part(s)"
    )
    for r in opened.records:
        site = lesion_text(r.body_site, r.body_side, r.lesion) or "-"
        damage = "".join(f"  DAMAGED {part}: {why}" for part, why in r.damaged.items())
        print(
            f"{r.created_at[:19]:<20} {r.scan_id[:8]} {r.patient_ref or '-':<16} "
            f"{site:<14} {r.label:<6} {r.risk_tier:<9} P(mal)={r.p_malignant:.2f}{damage}"
        )
    print(f"{len(opened.records)} record(s)")
    if args.out:
        print(f"wrote {save_opened(opened, args.out)}")
    if args.receipt:
        from device.records.archive import write_receipt

        path = write_receipt(opened, args.receipt)
        print(
            f"receipt for the device: {path} (on the stick, the scanner's menu Free space "
            f"reads it; with a shell: `skinscan records ack {path.name}` there)"
        )
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from device.records.export import generate_clinic_keypair

    private_path, public_path = generate_clinic_keypair(args.out, args.name)
    print(f"private key (keep at the clinic, never on a device): {private_path}")
    print(f"public key (copy to each device as DATA_DIR/clinic.pub): {public_path}")
    return 0


def main(args: argparse.Namespace) -> int:
    """Run one ``records`` action and return the exit code."""
    handlers = {
        "list": _list,
        "export": _export,
        "verify": _verify,
        "repair": _repair,
        "assign": _assign,
        "ack": _ack,
        "archive": _archive,
        "open": _open,
        "keygen": _keygen,
    }
    return handlers[args.records_action](args)
