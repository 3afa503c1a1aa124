"""Evaluation report of a run (placeholder until the full report lands)."""

from __future__ import annotations

from pathlib import Path


def write_report(run_dir: Path) -> None:
    """Write the run's evaluation report."""
