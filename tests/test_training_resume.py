"""Resuming a run that was stopped between two phases (after one ended, before the next's
first epoch): the next phase needs a fresh optimiser, as an uninterrupted run has."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.tf


def test_resume_at_the_start_of_a_phase(synthetic_ham: Path, tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("tensorflow")
    import training.model as train_module
    from device.cli import main

    run = tmp_path / "run"
    args = [
        "train", "--data", str(synthetic_ham), "--run", str(run), "--cache", str(tmp_path / "c"),
        "--backbone", "tiny_cnn", "--steps-per-epoch", "1", "--head-epochs", "1",
        "--finetune-epochs", "1", "--first-trainable-block", "block1", "--deep-epochs", "0",
        "--threshold-confidence", "0",
    ]  # fmt: skip
    real = train_module.set_trainable
    calls = []

    def stop_at_the_second_phase(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the power went at the phase boundary
        return real(*a, **k)

    monkeypatch.setattr(train_module, "set_trainable", stop_at_the_second_phase)
    assert main(args) == 130
    state = (run / "state.json").read_text()
    assert '"phase": "finetune"' in state and '"epoch": 0' in state
    monkeypatch.setattr(train_module, "set_trainable", real)
    assert main(["train", "--resume", str(run)]) == 0
    assert (run / "model.keras").is_file() and (run / "report.md").is_file()
