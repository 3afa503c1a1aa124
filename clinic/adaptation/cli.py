"""``skinscan adapt``: fit a bundle's head to one site's confirmed cases.

    skinscan adapt --bundle BASE --metadata CASES.csv --images DIR --out OUT [--site NAME]
    skinscan adapt --bundle BASE --data-dir CLINIC_DATA --site NAME --out OUT

Prints the cross-validation table (base against adapted) and the cases left out;
refuses, writing nothing, when the cases are too few, of one class, or do not show
the adapted head at least as good as the base (``--force`` overrides the last, on
the model card). Guide: docs/adaptation.md.
"""

from __future__ import annotations

import argparse
import importlib
import logging
from pathlib import Path

from clinic.adaptation.head_fit import DEFAULT_L2
from device.errors import DatasetError

log = logging.getLogger(__name__)

CONFIRMED_CASES_MODULE = "clinic.confirmed_cases"


def configure(parser: argparse.ArgumentParser) -> None:
    """Register the options."""
    parser.add_argument(
        "--bundle",
        type=Path,
        default=None,
        metavar="DIR",
        help="the base bundle (default: the shipped one)",
    )
    parser.add_argument(
        "--metadata",
        type=Path,
        metavar="CSV",
        help="cases as a CSV with image_id,dx (optional basis, date)",
    )
    parser.add_argument(
        "--images", type=Path, metavar="DIR", help="folder of <image_id>.jpg for --metadata"
    )
    parser.add_argument(
        "--data-dir", type=Path, metavar="DIR", help="the clinic's data folder (with --site)"
    )
    parser.add_argument(
        "--site",
        metavar="NAME",
        help="the site's name, shown on scanners as 'adapted for SITE'; with --data-dir, "
        "whose confirmed cases to use (default with --metadata: the CSV's folder name)",
    )
    parser.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="the new bundle's folder"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="write even if cross-validation shows no gain (said on the model card)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the cross-validation folds")
    parser.add_argument(
        "--l2", type=float, default=DEFAULT_L2, help="weight of the anchor to the base head"
    )
    parser.add_argument(
        "--workers", type=int, default=None, metavar="N", help="feature processes (default: CPUs)"
    )
    parser.add_argument(
        "--cache", type=Path, default=None, metavar="DIR", help="feature cache folder"
    )


def load_cases(args: argparse.Namespace) -> tuple[list, list[tuple[str, str]], str]:
    """(cases, rows skipped by the loader, site) from either source of cases.

    Raises:
        DatasetError: neither or both sources given, or a source is incomplete.
    """
    from_csv = args.metadata is not None or args.images is not None
    if from_csv == (args.data_dir is not None):
        raise DatasetError(
            "give the cases either as --metadata CSV --images DIR or as --data-dir DIR --site NAME"
        )
    if from_csv:
        if args.metadata is None or args.images is None:
            raise DatasetError("--metadata and --images go together")
        from clinic.adaptation.cases import load_csv_cases

        cases, skipped = load_csv_cases(args.metadata, args.images)
        site = args.site or args.metadata.resolve().parent.name
        return cases, skipped, site
    if not args.site:
        raise DatasetError("--data-dir needs --site NAME: whose confirmed cases to use")
    try:
        module = importlib.import_module(CONFIRMED_CASES_MODULE)
    except ImportError as exc:
        raise DatasetError(
            f"--data-dir: the clinic's confirmed cases cannot be read here ({exc})"
        ) from exc
    return list(module.load_site_cases(args.data_dir, args.site)), [], args.site


def main(args: argparse.Namespace) -> int:
    """Run ``skinscan adapt``."""
    from clinic.adaptation.adapt import adapt_bundle
    from clinic.adaptation.evidence import format_table
    from clinic.adaptation.writer import check_output_folder

    check_output_folder(args.out)
    cases, skipped, site = load_cases(args)
    print(f"adapt: {len(cases)} cases for site {site!r}")
    report = adapt_bundle(
        args.bundle,
        cases,
        args.out,
        site=site,
        force=args.force,
        seed=args.seed,
        l2=args.l2,
        workers=args.workers,
        cache_dir=args.cache,
        skipped=skipped,
    )
    ev = report.evidence
    print(
        f"\ncross-validation on {len(report.used)} cases, {len(report.excluded)} left out "
        f"({ev.repeats} repeats x {ev.folds} folds):\n"
    )
    print(format_table(ev))
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in report.seconds.items())
    print(
        f"\nwrote {report.manifest.bundle_id} to {report.out} "
        f"({report.manifest.adaptation_label}; threshold {ev.threshold:.4f}, "
        f"temperature {ev.temperature:.3f}; {timing})"
    )
    return 0
