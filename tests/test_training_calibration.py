"""Temperature scaling and the referral threshold, fitted on validation data."""

import numpy as np
import pytest

from device.labels import CLASS_CODES
from device.metrics import malignant_probability
from training.calibration import fit_temperature, nll, referral_threshold, softmax


def _sampled(true_temperature: float, n: int = 4000, seed: int = 0):
    """Labels drawn from softmax(logits / T): T is then the NLL-optimal temperature."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (n, len(CLASS_CODES)))
    probs = softmax(logits, true_temperature)
    labels = np.array([rng.choice(len(CLASS_CODES), p=p) for p in probs])
    return logits, labels


@pytest.mark.parametrize("true_temperature", [0.7, 1.0, 2.5])
def test_fit_temperature_recovers_the_generating_temperature(true_temperature):
    logits, labels = _sampled(true_temperature)
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.1)
    assert nll(logits, labels, fitted) <= nll(logits, labels, 1.0) + 1e-9


def test_referral_threshold_keeps_the_sensitivity_target():
    logits, labels = _sampled(1.0, seed=1)
    probs = softmax(logits)
    threshold = referral_threshold(probs, labels, 0.9)
    malignant = np.isin(labels, [CLASS_CODES.index(c) for c in ("akiec", "bcc", "mel")])
    referred = malignant_probability(probs) >= threshold
    assert referred[malignant].mean() >= 0.9
    # the highest such threshold: a hair higher loses the target
    assert (malignant_probability(probs) >= threshold + 1e-9)[malignant].mean() < 0.9


def test_referral_threshold_needs_malignant_cases():
    probs = np.full((3, len(CLASS_CODES)), 1 / len(CLASS_CODES))
    with pytest.raises(ValueError, match="no malignant"):
        referral_threshold(probs, np.array([5, 5, 2]), 0.9)


def test_confident_threshold_is_lower_and_its_bound_meets_the_target():
    from training.calibration import sensitivity_lower_bound

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 7, 3000)
    probs = rng.dirichlet(np.ones(7), 3000)
    point = referral_threshold(probs, labels, 0.9)
    confident = referral_threshold(probs, labels, 0.9, confidence=0.95)
    assert confident < point
    p_mal = probs[:, [0, 1, 4]].sum(1)
    malignant = np.isin(labels, [0, 1, 4])
    detected = int((p_mal[malignant] >= confident).sum())
    assert sensitivity_lower_bound(detected, int(malignant.sum()), 0.95) >= 0.9
    # one fewer detection would no longer show it
    assert sensitivity_lower_bound(detected - 1, int(malignant.sum()), 0.95) < 0.9


def test_clopper_pearson_matches_known_values():
    from training.calibration import sensitivity_lower_bound

    # 95% one-sided lower bounds: 0.05 ** (1/n) when every case is detected.
    assert sensitivity_lower_bound([20], 20, 0.95)[0] == pytest.approx(0.05 ** (1 / 20))
    assert sensitivity_lower_bound([0], 20, 0.95)[0] == 0.0


def test_too_few_cases_for_the_confidence_is_an_error():
    probs = np.full((10, 7), 1 / 7)
    with pytest.raises(ValueError, match="too few"):
        referral_threshold(probs, np.array([4] * 10), 0.95, confidence=0.95)


def test_melanoma_threshold_refers_the_target_share_of_melanomas() -> None:
    from device.metrics import melanoma_sensitivity
    from training.calibration import melanoma_threshold

    rng = np.random.default_rng(3)
    labels = rng.integers(0, len(CLASS_CODES), 400)
    probs = rng.dirichlet(np.ones(len(CLASS_CODES)), 400)
    threshold = melanoma_threshold(probs, labels, 0.9)
    assert melanoma_sensitivity(labels, probs, threshold) >= 0.9
    # The highest such threshold: a hair above it misses the target.
    assert melanoma_sensitivity(labels, probs, threshold + 1e-9) < 0.9
    with pytest.raises(ValueError, match="no melanoma"):
        melanoma_threshold(
            probs[labels != CLASS_CODES.index("mel")],
            labels[labels != CLASS_CODES.index("mel")],
            0.9,
        )
