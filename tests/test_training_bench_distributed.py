"""``skinscan bench train``: images/s of the distributed training step with 1 and 2 workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from training.bench_distributed import parse_workers

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def test_building_the_cli_imports_neither_the_bench_nor_tensorflow():
    code = (
        "import sys; from device.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('tensorflow', 'keras', 'training.bench_distributed') "
        "if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_worker_counts_are_checked():
    assert parse_workers("1,2, 4") == [1, 2, 4]
    for bad in ("", "0,1", "two"):
        with pytest.raises(ValueError):
            parse_workers(bad)


def test_help_reaches_the_bench_module():
    done = subprocess.run(
        [sys.executable, "-m", "device.cli", "bench", "train", "--help"],
        capture_output=True, text=True, env=ENV, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0 and "--threads-per-worker" in done.stdout


@pytest.mark.tf
def test_one_and_two_workers_report_images_per_second(tmp_path):
    pytest.importorskip("tensorflow")
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "device.cli", "bench", "train", "--workers", "1,2",
         "--backbone", "tiny_cnn", "--batch-size", "2", "--steps", "2", "--warmup", "1",
         "--json", str(out)],
        capture_output=True, text=True, env=ENV, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads(out.read_text())["results"]
    assert [(r["workers"], r["replicas"], r["global_batch"]) for r in results] == [
        (1, 1, 2),
        (2, 2, 4),
    ]
    assert all(r["images_per_s"] > 0 and r["seconds"] > 0 for r in results)
    assert "images/s" in done.stdout
