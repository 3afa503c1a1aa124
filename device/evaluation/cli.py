"""``skinscan eval``: measure a bundle on a labelled image folder, as the device runs it.

::

    skinscan eval [--bundle DIR] --metadata CSV --images DIR --json OUT.json

The CSV needs ``image_id`` and ``dx`` (HAM10000 codes); each image is
``DIR/<image_id>.jpg`` at any size. Unreadable images and rows with an unknown
``dx`` are counted and listed in the JSON, not fatal. With only some classes in
the CSV, macro recall is over the classes present (``classes_present``).

OUT.json holds ``n_images``, ``n_skipped``, ``skipped``, ``classes_present``,
``balanced_accuracy``, ``accuracy``, ``per_class_recall``, ``malignant_auc``,
``sensitivity``, ``specificity``, ``melanoma_sensitivity``, ``ece``,
``seconds_per_image`` and ``ci95`` (name -> [low, high], 95% bootstrap).
No TensorFlow is needed.

``--split test`` with a training run's ``split.csv`` evaluates its test split.

``--by COLUMN`` (for example ``--by dataset`` for HAM10000's acquisition sources, or
``--by localization``) adds ``by`` to the JSON: every metric, with its 95% interval,
for each value of that CSV column, and prints the same as a Markdown table.

``--shifts`` runs the shift benchmark instead (:mod:`device.evaluation.shift_report`):
every image under each controlled acquisition shift, written as OUT.json, OUT.md
(a Markdown table) and OUT.png (one chart). ``--shift NAME`` (repeatable) keeps
some shifts only.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from device.errors import SkinScanError

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``eval`` arguments."""
    parser.add_argument(
        "--bundle", type=Path, default=None, help="model bundle folder (default: the shipped one)"
    )
    parser.add_argument(
        "--metadata", type=Path, required=True, help="CSV with image_id and dx columns"
    )
    parser.add_argument(
        "--images",
        type=Path,
        action="append",
        required=True,
        help="folder with <image_id>.jpg files (repeat for a run trained on several archives)",
    )
    parser.add_argument("--json", type=Path, required=True, help="where to write the report")
    parser.add_argument(
        "--predictions",
        type=Path,
        default=None,
        metavar="NPZ",
        help="also save each image's id, label and probabilities (.npz), e.g. for "
        "'skinscan convert --fold-predictions'",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: usable CPUs)"
    )
    parser.add_argument(
        "--n-boot", type=int, default=1000, help="bootstrap resamples for the 95%% CIs"
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument(
        "--split",
        default=None,
        help="only rows whose 'split' column has this value, e.g. test with a run's split.csv",
    )
    parser.add_argument(
        "--by",
        default=None,
        metavar="COLUMN",
        help="also report every metric per value of this CSV column, e.g. dataset",
    )
    parser.add_argument(
        "--skip-unknown",
        action="store_true",
        help="evaluate without the rows whose dx is not a HAM10000 code (listed, with a "
        "warning); without it such rows are an error",
    )
    parser.add_argument(
        "--shifts",
        action="store_true",
        help="shift benchmark: re-run under controlled acquisition shifts (JSON, .md, .png)",
    )
    parser.add_argument(
        "--shift",
        action="append",
        default=None,
        metavar="NAME",
        help="with --shifts: only this shift (repeatable; default: all)",
    )
    parser.add_argument(
        "--runtime",
        choices=("ai_edge_litert", "tflite_runtime", "tensorflow"),
        default=None,
        help="force a TFLite runtime (default: the first installed, LiteRT preferred)",
    )


def _fmt(report: dict, name: str) -> str:
    value = report.get(name)
    ci = (report.get("ci95") or {}).get(name)
    if value is None:
        return f"{name} n/a"
    if ci and None not in ci:
        return f"{name} {value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
    return f"{name} {value:.3f}"


def main(args: argparse.Namespace) -> int:
    """Evaluate and write the JSON report; returns 1 if no image could be evaluated."""
    from device.evaluation.runner import evaluate_folder

    if args.workers is not None and args.workers < 1:
        raise SkinScanError("--workers must be at least 1")
    if args.n_boot < 0:
        raise SkinScanError("--n-boot must be 0 or more")
    if args.shift and not args.shifts:
        raise SkinScanError("--shift needs --shifts")
    if args.by and args.shifts:
        raise SkinScanError("--by cannot be combined with --shifts")
    if args.predictions and args.shifts:
        raise SkinScanError("--predictions cannot be combined with --shifts")
    if args.shifts:
        return _main_shifts(args)
    report = evaluate_folder(
        args.metadata,
        args.images,
        args.bundle,
        workers=args.workers,
        n_boot=args.n_boot,
        seed=args.seed,
        runtime=args.runtime,
        split=args.split,
        by=args.by,
        skip_unknown=args.skip_unknown,
        predictions=args.predictions,
    )
    try:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    except OSError as exc:
        raise SkinScanError(f"{args.json}: cannot write the report ({exc})") from exc
    print(
        f"evaluated {report['n_images']} images ({report['n_skipped']} skipped) with bundle "
        f"{report['bundle']['bundle_id']} in {report['seconds_total']:.1f} s "
        f"({1000 * report['seconds_per_image']:.1f} ms/image, {report['workers']} workers)"
    )
    for name in ("balanced_accuracy", "malignant_auc", "sensitivity", "specificity"):
        print("  " + _fmt(report, name))
    print(f"  classes present: {', '.join(report['classes_present']) or 'none'}")
    if report.get("screen"):
        from device.evaluation.screen_outcomes import describe

        print("  " + describe(report["screen"]))
    if "by" in report:
        from device.evaluation.groups import markdown_table

        print(markdown_table(report["by"]["column"], report["by"]["groups"]))
    print(f"wrote {args.json}")
    _warn_unknown(report["skipped"])
    if report["n_images"] == 0:
        print("skinscan eval: no image could be evaluated (see 'skipped' in the report)")
        return 1
    return 0


def _warn_unknown(skipped: list[dict[str, str]]) -> None:
    from device.evaluation.runner import format_counts, unknown_labels

    unknown = unknown_labels(skipped)
    if unknown:
        print(
            f"skinscan eval: WARNING: {sum(unknown.values())} rows NOT evaluated (--skip-unknown): "
            f"their dx is not a HAM10000 code: {format_counts(unknown)}",
            file=sys.stderr,
        )


def _main_shifts(args: argparse.Namespace) -> int:
    from device.evaluation.shift_report import evaluate_shifts, markdown_table, save_chart
    from device.evaluation.shifts import SHIFTS, shift_by_name

    try:
        shifts = tuple(shift_by_name(n) for n in args.shift) if args.shift else SHIFTS
    except KeyError as exc:
        raise SkinScanError(str(exc.args[0])) from exc
    report = evaluate_shifts(
        args.metadata,
        args.images,
        args.bundle,
        shifts=shifts,
        split=args.split,
        workers=args.workers,
        n_boot=args.n_boot,
        seed=args.seed,
        runtime=args.runtime,
    )
    table = markdown_table(report)
    try:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        args.json.with_suffix(".md").write_text(table)
        chart = save_chart(report, args.json.with_suffix(".png"))
    except OSError as exc:
        raise SkinScanError(f"{args.json}: cannot write the report ({exc})") from exc
    print(table)
    print(f"wrote {args.json}, {args.json.with_suffix('.md')}" + (f", {chart}" if chart else ""))
    return 0 if report["shifts"]["none"]["n_images"] else 1
