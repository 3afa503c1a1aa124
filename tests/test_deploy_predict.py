"""hardware/ci/predict.py: the aarch64-vs-x86 comparison judges int8 outputs in steps."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load():
    path = ROOT / "hardware" / "ci" / "predict.py"
    spec = importlib.util.spec_from_file_location("skinscan_ci_predict", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


predict = _load()
STEP = 0.25


def report(machine: str, logits: list[float], cam: list[float] | None = None, step=STEP) -> dict:
    import math

    exp = [math.exp(v) for v in logits]
    probs = [e / sum(exp) for e in exp]
    top = max(range(len(probs)), key=probs.__getitem__)
    return {
        "machine": machine,
        "runtime": "ai_edge_litert",
        "bundle_id": "t",
        "logit_step": step,
        "images": {
            "a.png": {
                "label": "abc"[top],
                "confidence": probs[top],
                "probabilities": probs,
                "logits": logits,
                "gradcam": cam or [0.0, 0.5, 1.0, 0.2],
            }
        },
    }


def compare(tmp_path, ref: dict, other: dict) -> int:
    (tmp_path / "ref.json").write_text(json.dumps(ref))
    (tmp_path / "other.json").write_text(json.dumps(other))
    return predict.compare(str(tmp_path / "ref.json"), str(tmp_path / "other.json"), 0.1, 8, 0.8)


def test_identical_runs_agree(tmp_path):
    assert (
        compare(tmp_path, report("x86_64", [2.0, 0.0, -1.0]), report("aarch64", [2.0, 0.0, -1.0]))
        == 0
    )


def test_one_coarse_quantization_step_is_within_tolerance(tmp_path):
    ref = report("x86_64", [1.0, 0.75, -3.0], step=0.3)
    other = report("aarch64", [1.3, 0.75, -3.0], step=0.3)
    dp = abs(
        ref["images"]["a.png"]["probabilities"][0] - other["images"]["a.png"]["probabilities"][0]
    )
    assert 0.05 < dp < 0.1
    assert compare(tmp_path, ref, other) == 0


def test_six_fine_steps_as_seen_on_efficientnet_lite0_are_within_tolerance(tmp_path):
    step = 0.0325
    ref = report("x86_64", [0.5, 0.3, -1.0], step=step)
    other = report("aarch64", [0.5 - 6 * step, 0.3, -1.0], step=step)
    assert compare(tmp_path, ref, other) == 0


def test_more_than_eight_steps_is_a_mismatch(tmp_path, capsys):
    assert (
        compare(tmp_path, report("x86_64", [2.0, 0.0, -1.0]), report("aarch64", [4.5, 0.0, -1.0]))
        == 1
    )
    assert "steps > 8" in capsys.readouterr().out


def test_a_large_probability_change_is_a_mismatch(tmp_path, capsys):
    ref = report("x86_64", [0.0, 0.0, -1.0], step=1.0)
    other = report("aarch64", [1.0, 0.0, -1.0], step=1.0)
    assert compare(tmp_path, ref, other) == 1
    assert "probabilities differ" in capsys.readouterr().out


def test_a_changed_label_is_a_mismatch_unless_the_reference_was_a_near_tie(tmp_path):
    clear = compare(
        tmp_path, report("x86_64", [3.0, 0.0, -1.0]), report("aarch64", [0.0, 3.0, -1.0])
    )
    assert clear == 1
    tie = compare(tmp_path, report("x86_64", [1.0, 0.9, -1.0]), report("aarch64", [0.9, 1.0, -1.0]))
    assert tie == 0


def test_a_different_grad_cam_is_a_mismatch(tmp_path):
    ref = report("x86_64", [2.0, 0.0, -1.0], cam=[0.0, 0.5, 1.0, 0.2])
    other = report("aarch64", [2.0, 0.0, -1.0], cam=[1.0, 0.5, 0.0, 0.8])
    assert compare(tmp_path, ref, other) == 1


@pytest.mark.parametrize(("delta", "expected"), [(0.01, 0), (1.5, 1)])
def test_without_a_known_step_probabilities_still_bound_the_difference(tmp_path, delta, expected):
    ref = report("x86_64", [2.0, 0.0, -1.0], step=None)
    other = report("aarch64", [2.0 + delta, 0.0, -1.0], step=None)
    assert compare(tmp_path, ref, other) == expected
