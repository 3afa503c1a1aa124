"""The bundle's temperature and referral threshold are refitted on the int8 model's outputs."""

import json

import numpy as np
import pytest

from conversion.convert import ConversionError, convert_run, refit_for_int8, threshold_rule
from device import metrics
from device.labels import CLASS_CODES
from device.runtime.classifier import softmax

FLOAT_FITTED = {"temperature": 1.0, "referral_threshold": 0.5, "uncertainty_threshold": 0.4}


def noisy_logits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASS_CODES), n)
    logits = rng.normal(0, 1.5, (n, len(CLASS_CODES)))
    logits[np.arange(n), labels] += 2.0
    return logits, labels


@pytest.mark.parametrize("confidence", [0.0, 0.95])
def test_refit_meets_the_rule_on_the_int8_outputs(confidence: float) -> None:
    logits, labels = noisy_logits(1400, 0)
    rule = {"min_sensitivity_target": 0.9, "threshold_confidence": confidence}
    fitted = refit_for_int8(logits, labels, FLOAT_FITTED, threshold_rule(rule))
    probs = softmax(logits, fitted["temperature"])
    achieved = metrics.sensitivity(labels, probs, fitted["referral_threshold"])
    assert achieved >= 0.9
    assert fitted["uncertainty_threshold"] == FLOAT_FITTED["uncertainty_threshold"]
    assert fitted["referral_threshold"] != FLOAT_FITTED["referral_threshold"]
    # The fitted temperature lowers the NLL against the float model's temperature.
    nll = [
        -np.log(softmax(logits, t)[np.arange(len(labels)), labels]).mean()
        for t in (fitted["temperature"], FLOAT_FITTED["temperature"])
    ]
    assert nll[0] <= nll[1]


def test_confidence_rule_is_stricter_than_the_point_estimate() -> None:
    logits, labels = noisy_logits(1400, 1)
    point = refit_for_int8(
        logits, labels, FLOAT_FITTED, threshold_rule({"threshold_confidence": 0.0})
    )
    bound = refit_for_int8(
        logits, labels, FLOAT_FITTED, threshold_rule({"threshold_confidence": 0.95})
    )
    assert bound["referral_threshold"] < point["referral_threshold"]


def test_too_few_malignant_cases_is_a_conversion_error() -> None:
    logits, labels = noisy_logits(12, 2)
    with pytest.raises(ConversionError, match="int8"):
        refit_for_int8(logits, labels, FLOAT_FITTED, threshold_rule({"threshold_confidence": 0.95}))


def test_an_invalid_preprocessing_spec_is_refused_before_converting(tmp_path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"preprocessing": {"version": 99}}))
    with pytest.raises(ConversionError, match="version"):
        convert_run(tmp_path)
