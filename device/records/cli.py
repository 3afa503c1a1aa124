"""``skinscan records``: list, export, verify and open scan records; make clinic keys.

On the device::

    skinscan records list [--since DATE] [--patient REF] [--body-site SITE]
    skinscan records export --to /media/usb [--since DATE] [--clinic-key clinic.pub]
    skinscan records verify

At the clinic (desktop)::

    skinscan records keygen --out ~/clinic-keys
    skinscan records open EXPORT --key ~/clinic-keys/clinic.key [--out DIR]

Heavy imports (cryptography, OpenCV, PyNaCl) happen inside :func:`main`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import datetime, timezone
from pathlib import Path

from device.errors import StorageError

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
        help="data folder (default: $SKINSCAN_DATA_DIR, /var/lib/skinscan on a Pi, "
        "else ~/.local/share/skinscan)",
    )
    where.add_argument(
        "--config", type=Path, metavar="FILE", help="device config file naming records.data_dir"
    )
    actions = parser.add_subparsers(dest="records_action", metavar="ACTION")
    actions.required = True

    p = actions.add_parser("list", parents=[where], help="list saved scans (no images)")
    p.add_argument("--since", type=_date, help="only scans at or after DATE")
    p.add_argument("--patient", metavar="REF", help="only this patient reference")
    p.add_argument("--body-site", help="only this body site")

    p = actions.add_parser(
        "export", parents=[where], help="seal scans to the clinic's public key, e.g. onto USB"
    )
    p.add_argument("--to", type=Path, required=True, metavar="DIR", help="destination folder")
    p.add_argument("--since", type=_date, help="only scans at or after DATE")
    p.add_argument(
        "--clinic-key",
        type=Path,
        metavar="PUB",
        help="clinic public key file (default: $SKINSCAN_CLINIC_PUBLIC_KEY or DATA_DIR/clinic.pub)",
    )

    actions.add_parser(
        "verify", parents=[where], help="check the database and every record and file"
    )

    p = actions.add_parser("open", help="decrypt and list an export (clinic side)")
    p.add_argument("export", type=Path, metavar="EXPORT", help="a .sealed file or a folder")
    p.add_argument("--key", type=Path, required=True, help="the clinic private key file")
    p.add_argument("--out", type=Path, metavar="DIR", help="also write records.json and PNGs here")

    p = actions.add_parser("keygen", help="create the clinic key pair (clinic side)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the keys")
    p.add_argument("--name", default="clinic", help="file name stem (default: clinic)")


def _configured_dir(config_file: Path | None) -> str | None:
    """records.data_dir from the device config (the given file, else the system one)."""
    try:
        from device.config import load_config
    except ImportError:
        return None
    return load_config(config_file).records.data_dir or None


def _open_store(args: argparse.Namespace):  # -> SqliteScanStore
    from device.records.paths import DB_NAME, resolve_data_dir
    from device.records.store import SqliteScanStore

    data_dir = args.data_dir or resolve_data_dir(_configured_dir(args.config))
    if not (data_dir / DB_NAME).exists():
        raise StorageError(f"no scan records in {data_dir} (set --data-dir or SKINSCAN_DATA_DIR)")
    store = SqliteScanStore(data_dir)
    for notice in store.notices:
        print(f"warning: {notice.message}", file=sys.stderr)
    return store


def _list(args: argparse.Namespace) -> int:
    with _open_store(args) as store:
        rows = store.summaries(since=args.since, patient_ref=args.patient, body_site=args.body_site)
        print(
            f"{'time (UTC)':<20} {'scan':<8} {'label':<6} {'tier':<9} {'P(mal)':>6}  site / notes"
        )
        for r in rows:
            notes = [r.body_site or "-"]
            if r.has_patient_ref:
                notes.append(f"patient {_patient_ref(store, r.scan_id)}")
            if r.corrects:
                notes.append(f"corrects {r.corrects[:8]}")
            print(
                f"{r.created_at[:19]:<20} {r.scan_id[:8]:<8} {r.label:<6} {r.risk_tier:<9} "
                f"{r.p_malignant:>6.2f}  {', '.join(notes)}"
            )
        print(f"{len(rows)} record(s) in {store.data_dir}")
    return 0


def _patient_ref(store, scan_id: str) -> str:
    """A record's patient reference, decrypted (an opaque card reference, never a name)."""
    try:
        return store.get(scan_id).patient_ref or "?"
    except (KeyError, StorageError) as exc:
        return f"reference unreadable ({exc})"


def _export(args: argparse.Namespace) -> int:
    from device.records.export import export_records, load_public_key
    from device.records.paths import resolve_clinic_public_key
    from device.records.store import iter_records

    with _open_store(args) as store:
        key_path = args.clinic_key or resolve_clinic_public_key(store.data_dir)
        public_key = load_public_key(key_path)
        result = export_records(
            iter_records(store, since=args.since), args.to, public_key, device_id=store.device_id
        )
        if not result.files:
            print("nothing to export")
            return 0
        store.record_export(", ".join(f.name for f in result.files), result.scan_ids)
    for path in result.files:
        print(path)
    print(f"exported {len(result.scan_ids)} record(s), sealed to {key_path}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    with _open_store(args) as store:
        report = store.verify()
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


def _open(args: argparse.Namespace) -> int:
    from device.records.export import load_private_key, open_export, save_opened

    opened = open_export(args.export, load_private_key(args.key))
    print(
        f"export {opened.export_id} from device {opened.device_id}, made {opened.exported_at}, "
        f"{opened.parts} part(s)"
    )
    for r in opened.records:
        print(
            f"{r.created_at[:19]:<20} {r.scan_id[:8]} {r.patient_ref or '-':<16} "
            f"{r.body_site or '-':<14} {r.label:<6} {r.risk_tier:<9} P(mal)={r.p_malignant:.2f}"
        )
    print(f"{len(opened.records)} record(s)")
    if args.out:
        print(f"wrote {save_opened(opened, args.out)}")
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
        "open": _open,
        "keygen": _keygen,
    }
    return handlers[args.records_action](args)
