"""End to end: `skinscan train` on a tiny dataset, killed mid-run, resumed to a full run folder."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import break_three_rows

pytestmark = pytest.mark.tf

RUN_FILES = {
    "config.json",
    "split.csv",
    "model.keras",
    "calibration.json",
    "metrics.json",
    "provenance.json",
    "report.md",
    "confusion_matrix.png",
    "roc_malignant.png",
    "reliability.png",
    "training_curves.png",
    "logits.npz",
}


def _train(args, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "device.cli", "train", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CI": "1"},
        **kwargs,
    )


def test_train_killed_then_resumed(synthetic_ham, tmp_path):
    pytest.importorskip("tensorflow")
    broken = break_three_rows(synthetic_ham)
    run = tmp_path / "run"
    args = [
        "--data",
        str(synthetic_ham),
        "--run",
        str(run),
        "--cache",
        str(tmp_path / "cache"),
        "--steps-per-epoch",
        "1",
        "--head-epochs",
        "1",
        "--finetune-epochs",
        "2",
        "--deep-epochs",
        "1",
        "--batch-size",
        "4",
        # A tiny validation split has too few malignant cases for the confidence bound.
        "--threshold-confidence",
        "0",
    ]
    first = _train(args)
    state = run / "state.json"
    deadline = time.time() + 480
    while not state.exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert state.exists(), first.communicate()[0][-3000:]
    first.send_signal(signal.SIGKILL)  # a power cut right after the first epoch
    first.wait()
    assert not (run / "model.keras").exists()

    again = subprocess.run(
        [sys.executable, "-m", "device.cli", "train", "--resume", str(run)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CI": "1"},
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert {p.name for p in run.iterdir()} >= RUN_FILES
    history = json.loads(state.read_text())["history"]
    assert [h["phase"] for h in history] == ["head", "finetune", "finetune", "deep"]
    calibration = json.loads((run / "calibration.json").read_text())
    assert calibration["temperature"] > 0 and 0 <= calibration["referral_threshold"] <= 1
    metrics = json.loads((run / "metrics.json").read_text())
    assert "ci95" in metrics["test"] and "localization" in metrics["subgroups"]
    assert {s["image_id"] for s in metrics["data"]["skipped"]} == set(broken.values())
    report = (run / "report.md").read_text()
    assert "Skipped: 3." in report
    assert all(f"`{image_id}`" in report for image_id in broken.values())


def test_refuses_to_overwrite_a_run(synthetic_ham, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "state.json").write_text("{}")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "device.cli",
            "train",
            "--data",
            str(synthetic_ham),
            "--run",
            str(run),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "--resume" in done.stderr
    assert "Traceback" not in done.stderr
    assert (run / "state.json").read_text() == "{}"
