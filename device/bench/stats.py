"""Small helpers shared by the benchmarks: timing summaries and JSON output."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def summarise_ms(samples_s: list[float]) -> dict[str, float]:
    """Median and 95th percentile, in milliseconds, of durations given in seconds."""
    values = np.asarray(samples_s) * 1000.0
    return {"median": float(np.median(values)), "p95": float(np.percentile(values, 95))}


def time_call(fn: Callable[[], Any], repeats: int, warmup: int = 3) -> list[float]:
    """Durations in seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    durations = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        durations.append(time.perf_counter() - start)
    return durations


def write_json(path: str | Path | None, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON when a path is given, creating its folder."""
    if path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
