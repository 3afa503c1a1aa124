"""The tier and the figures shown with it come from one rule and never contradict each other."""

from __future__ import annotations

import re

import numpy as np
import pytest

from device.result_text import closest_class_line, referral_figures, refers
from device.runtime.decision import decide
from device.runtime.manifest import Calibration, LabelSpec

LABELS = [
    LabelSpec(code="akiec", name="Actinic keratosis", malignant=True),
    LabelSpec(code="bcc", name="Basal cell carcinoma", malignant=True),
    LabelSpec(code="bkl", name="Benign keratosis", malignant=False),
    LabelSpec(code="df", name="Dermatofibroma", malignant=False),
    LabelSpec(code="mel", name="Melanoma", malignant=True),
    LabelSpec(code="nv", name="Melanocytic nevus (mole)", malignant=False),
    LabelSpec(code="vasc", name="Vascular lesion", malignant=False),
]
SHIPPED_THRESHOLD = 0.09715669520147026
PERCENT = re.compile(r"^(\d{1,3}(?:\.\d{1,2})?)%$")


def shown(text: str) -> float:
    match = PERCENT.match(text)
    assert match, f"not a percentage: {text!r}"
    return float(match.group(1))


def with_p_malignant(p_malignant: float) -> np.ndarray:
    """Probabilities whose malignant classes sum to ``p_malignant``, nevus on top."""
    probs = np.zeros(len(LABELS))
    probs[4] = p_malignant  # mel
    probs[5] = 1.0 - p_malignant  # nv
    return probs


def test_the_reported_case_no_longer_reads_ten_percent_against_ten_percent() -> None:
    figures = referral_figures(0.095, SHIPPED_THRESHOLD)
    assert (figures.p_text, figures.threshold_text, figures.above) == ("9.5%", "9.7%", False)
    assert figures.comparison == "below the referral line 9.7%"
    assert figures.threshold_label == "refer at ≥ 9.7%"
    assert referral_figures(0.5, SHIPPED_THRESHOLD).p_text == "50%"


@pytest.mark.parametrize("gap", [1e-2, 1e-3, 1e-4, 1e-5, 1e-7, 1e-9, 1e-12, 1e-15, 0.0])
@pytest.mark.parametrize("threshold", [SHIPPED_THRESHOLD, 0.097, 0.1, 0.3, 0.5, 0.00049])
def test_values_straddling_the_threshold_show_the_side_the_tier_is_on(
    threshold: float, gap: float
) -> None:
    for p in (threshold - gap, threshold + gap, np.nextafter(threshold, 0.0)):
        p = float(p)
        if not 0.0 <= p <= 1.0:
            continue
        figures = referral_figures(p, threshold)
        tier = decide(with_p_malignant(p), LABELS, Calibration(
            temperature=1.0, referral_threshold=threshold, uncertainty_threshold=0.5
        )).risk_tier  # fmt: skip
        assert figures.above == (tier == "refer") == (p >= threshold)
        assert (shown(figures.p_text) >= shown(figures.threshold_text)) == figures.above, (
            p, threshold, figures,
        )  # fmt: skip


def test_property_shown_figures_agree_with_the_decision_over_many_values() -> None:
    rng = np.random.default_rng(0)
    thresholds = np.concatenate([rng.uniform(0, 1, 300), [SHIPPED_THRESHOLD] * 100])
    disagreements = []
    for threshold in thresholds:
        offsets = rng.choice([-1, 1], 20) * 10.0 ** rng.uniform(-16, -0.5, 20)
        for p in np.clip(threshold + offsets, 0.0, 1.0):
            figures = referral_figures(float(p), float(threshold))
            above = bool(p >= threshold)
            value_p, value_t = shown(figures.p_text), shown(figures.threshold_text)
            if figures.above != above or (value_p >= value_t) != above:
                disagreements.append((p, threshold, figures))
            # Never further from the truth than the coarsest rounding used.
            assert abs(value_p - 100 * p) <= 0.5 + 1e-9
            assert abs(value_t - 100 * threshold) <= 0.05 + 1e-9
    assert not disagreements, disagreements[:5]


def test_refers_is_the_decision_rule_on_constructed_inputs() -> None:
    cal = Calibration(
        temperature=1.0, referral_threshold=SHIPPED_THRESHOLD, uncertainty_threshold=0.5
    )
    below = decide(with_p_malignant(0.095), LABELS, cal)
    at = decide(with_p_malignant(SHIPPED_THRESHOLD), LABELS, cal)
    unfamiliar = decide(with_p_malignant(0.02), LABELS, cal, unfamiliar=True)
    unfamiliar_above = decide(with_p_malignant(0.2), LABELS, cal, unfamiliar=True)
    assert below.risk_tier == "monitor" and not refers(below.p_malignant, SHIPPED_THRESHOLD)
    assert at.risk_tier == "refer" and refers(at.p_malignant, SHIPPED_THRESHOLD)
    assert unfamiliar.risk_tier == "uncertain"
    assert unfamiliar_above.risk_tier == "refer"
    low_confidence = np.array([0.05, 0.0, 0.3, 0.2, 0.04, 0.41, 0.0])
    assert decide(low_confidence, LABELS, cal).risk_tier == "uncertain"


def test_an_uncertain_class_line_carries_no_percentage() -> None:
    line = closest_class_line("Melanocytic nevus (mole)")
    assert "%" not in line and line.startswith("closest class")


@pytest.mark.parametrize("min_decimals", [0, 1, 2])
def test_the_clinic_precision_keeps_the_same_agreement(min_decimals: int) -> None:
    rng = np.random.default_rng(1)
    for threshold in rng.uniform(0.01, 0.9, 200):
        for p in threshold + rng.choice([-1, 1], 10) * 10.0 ** rng.uniform(-12, -1, 10):
            p = float(np.clip(p, 0.0, 1.0))
            figures = referral_figures(p, float(threshold), min_decimals=min_decimals)
            if min_decimals:
                assert "." in figures.p_text
            assert (shown(figures.p_text) >= shown(figures.threshold_text)) == (p >= threshold)
    assert referral_figures(0.123, 0.235, min_decimals=1).p_text == "12.3%"


def test_screen_outcomes_count_an_atypical_frame_as_uncertain_like_the_device() -> None:
    from device.evaluation.screen_outcomes import screen_outcomes

    cal = Calibration(temperature=1.0, referral_threshold=0.1, uncertainty_threshold=0.5)
    probs = np.stack([with_p_malignant(0.02)] * 2)
    labels = np.array([5, 5])  # two nevi, both confidently benign
    atypical = np.array([False, True])
    out = screen_outcomes(labels, probs, np.zeros(2, bool), LABELS, cal, atypical=atypical)
    assert out["all"]["monitor"] == 0.5 and out["all"]["uncertain"] == 0.5
    assert screen_outcomes(labels, probs, np.zeros(2, bool), LABELS, cal)["all"]["monitor"] == 1.0
