"""``skinscan ensemble``: average finished runs on one split into one convertible run."""

from __future__ import annotations

import argparse
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    """Register the ensemble arguments."""
    parser.add_argument(
        "members", nargs="+", metavar="RUN", help="finished runs on the same split (--split-seed)"
    )
    parser.add_argument("--out", required=True, help="run folder to create for the ensemble")


def main(args: argparse.Namespace) -> int:
    """Write the ensemble run folder and print its validation figures; returns an exit code."""
    from training.ensemble import ensemble_runs

    summary = ensemble_runs([Path(m) for m in args.members], Path(args.out))
    for name, score in summary.val_balanced_accuracy.items():
        print(f"val balanced accuracy {score:.4f}  {name}")
    print(
        f"temperature {summary.temperature:.3f}, referral threshold "
        f"{summary.referral_threshold:.3f}; report: {Path(summary.run_dir) / 'report.md'}"
    )
    return 0
