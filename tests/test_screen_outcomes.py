"""What the screen would have shown: tier shares by the device's own decision rule."""

from __future__ import annotations

import math

import numpy as np
from bundle_factory import make_bundle

from device.evaluation.screen_outcomes import describe, screen_outcomes
from device.labels import CLASS_CODES
from device.runtime.bundle import load_bundle
from device.runtime.manifest import Calibration

MEL, NV, BCC = (CLASS_CODES.index(c) for c in ("mel", "nv", "bcc"))


def _probs(top: int, p_top: float, second: int) -> np.ndarray:
    p = np.zeros(len(CLASS_CODES))
    p[top], p[second] = p_top, 1.0 - p_top
    return p


def _split_three() -> np.ndarray:
    p = np.zeros(len(CLASS_CODES))
    p[NV], p[CLASS_CODES.index("bkl")], p[CLASS_CODES.index("df")] = 0.4, 0.35, 0.25
    return p


def test_tiers_follow_the_decision_rule_and_count_silent_misses(tmp_path) -> None:
    labels = load_bundle(make_bundle(tmp_path / "b")).manifest.labels
    calibration = Calibration(temperature=1.0, referral_threshold=0.3, uncertainty_threshold=0.5)
    truth = np.array([MEL, MEL, MEL, BCC, NV, NV])
    probs = np.stack(
        [
            _probs(MEL, 0.9, NV),  # melanoma referred
            _probs(NV, 0.8, MEL),  # melanoma, P(malignant) 0.2: monitor, a silent miss
            _probs(NV, 0.8, MEL),  # the same, but unfamiliar: uncertain
            _probs(NV, 0.45, BCC),  # bcc, P(malignant) 0.55: refer
            _probs(NV, 0.9, MEL),  # nevus, monitor
            _split_three(),  # nevus, top-1 0.4 (below 0.5): uncertain
        ]
    )
    unfamiliar = np.array([False, False, True, False, False, False])
    out = screen_outcomes(truth, probs, unfamiliar, labels, calibration)
    assert out["malignant"] == {"n": 4, "refer": 0.5, "uncertain": 0.25, "monitor": 0.25}
    assert out["melanoma"]["n"] == 3 and math.isclose(out["melanoma"]["monitor"], 1 / 3)
    assert out["benign"] == {"n": 2, "refer": 0.0, "uncertain": 0.5, "monitor": 0.5}
    assert out["malignant_shown_as_monitor"] == 1
    assert "1 silent misses" in describe(out)


def test_an_empty_group_gives_nan_not_an_error(tmp_path) -> None:
    labels = load_bundle(make_bundle(tmp_path / "b")).manifest.labels
    calibration = Calibration(temperature=1.0, referral_threshold=0.3, uncertainty_threshold=0.5)
    out = screen_outcomes(
        np.array([NV]), _probs(NV, 0.9, MEL)[None], np.array([False]), labels, calibration
    )
    assert out["malignant"]["n"] == 0 and math.isnan(out["malignant"]["refer"])
    assert out["benign"]["monitor"] == 1.0
