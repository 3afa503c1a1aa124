"""The ``skinscan`` command: one entry point, lazily loaded subcommands.

Each subcommand lives in its own module that exposes ``configure(parser)`` and
``main(args) -> int``. Those modules keep heavy imports (TensorFlow, pygame,
LiteRT) inside ``main`` so that ``skinscan --help`` works in a venv without them.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from device import __version__
from device.errors import SkinScanError

# name -> (module, one-line help). Order is the order shown in --help.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": ("device.app.cli", "run the scanner (simulator on a non-Pi machine)"),
    "train": ("training.cli", "train a model on HAM10000 (desktop, needs TensorFlow)"),
    "ensemble": ("training.ensemble_cli", "average runs on one split into one model (desktop)"),
    "convert": ("conversion.cli", "convert a training run into an int8 model bundle"),
    "calibrate-quality": (
        "training.quality_calibration",
        "measure the quality gate's blur and colour limits on a dataset (desktop)",
    ),
    "eval": ("device.evaluation.cli", "evaluate a bundle on a labelled image folder"),
    "colour-probe": (
        "training.colour_probe",
        "how much the skin's colour cast alone tells the diagnosis, on a new archive (desktop)",
    ),
    "bench": ("device.bench.cli", "benchmarks: pipeline, segmentation, device"),
    "records": (
        "device.records.cli",
        "scan records: list, export, verify, repair, assign, ack, archive; clinic: open, keygen",
    ),
    "bundle": (
        "device.bundles.cli",
        "signed model bundles: keygen, sign, verify; on the scanner: install, rollback, status",
    ),
    "serve": ("clinic.cli", "the clinic web app: import exports, review, analyse"),
    "adapt": ("clinic.adaptation.cli", "fit a bundle's head to one site's confirmed cases"),
    "docs": (
        "conversion.docs_cli",
        "remake the docs' figure tables and screenshots from the shipped bundle; check them",
    ),
}

EPILOG = """\
folder options:
  --data DIR      a dataset of labelled images (train, calibrate-quality,
                  colour-probe, bench segmentation, bench sources):
                  HAM10000_metadata.csv + images/, or an archive's labels.csv
  --data-dir DIR  a SkinScan data folder: the device's saved scans (records),
                  the clinic's data (serve; --data is kept there as an old alias)

'skinscan COMMAND --help' shows each command's options."""

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="skinscan",
        description="SkinScan: offline skin-lesion screening. A screening aid, not a diagnosis.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"skinscan {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        sub_parser.set_defaults(_module=module_name)
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            # A missing optional part must not break the other subcommands.
            sub_parser.set_defaults(_unavailable=f"{name} is not available here: {exc}")
            continue
        module.configure(sub_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return a process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.command:
        parser.print_help()
        return 1
    if getattr(args, "_unavailable", None):
        print(f"skinscan: {args._unavailable}", file=sys.stderr)
        return 2
    module = importlib.import_module(args._module)
    try:
        return int(module.main(args) or 0)
    except SkinScanError as exc:
        if args.debug:
            raise
        print(f"skinscan {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"skinscan {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
