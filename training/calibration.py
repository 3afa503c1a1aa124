"""Post-hoc calibration on the validation split: softmax temperature and decision thresholds."""

from __future__ import annotations

import numpy as np

from device.metrics import is_malignant, malignant_probability
from device.runtime.classifier import softmax


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of ``labels`` under temperature-scaled logits."""
    probs = softmax(logits, temperature)
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1)).mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature in [0.05, 20] minimising validation NLL (golden-section on log T)."""
    lo, hi = np.log(0.05), np.log(20.0)
    ratio = (np.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(logits, labels, np.exp(a)), nll(logits, labels, np.exp(b))
    for _ in range(80):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(logits, labels, np.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(logits, labels, np.exp(b))
    return float(np.exp((lo + hi) / 2))


def referral_threshold(
    probs: np.ndarray, labels: np.ndarray, min_sensitivity: float, confidence: float = 0.0
) -> float:
    """The highest threshold on P(malignant) whose malignant sensitivity meets the target.

    Referring when ``P(malignant) >= threshold`` then meets the target on the data given.

    Args:
        probs: calibrated probabilities (N, K).
        labels: class indices (N,).
        min_sensitivity: the sensitivity the threshold must keep.
        confidence: 0 asks for the point estimate to reach ``min_sensitivity``. A value
            such as 0.95 asks for the one-sided Clopper-Pearson lower bound at that
            confidence to reach it instead, so the target still holds, with that
            confidence, on new patients and not only on this sample.

    Raises:
        ValueError: no malignant cases, or a target no threshold can meet.
    """
    p_malignant = malignant_probability(probs)
    malignant = is_malignant(labels)
    scores = np.sort(p_malignant[malignant])[::-1]
    if scores.size == 0:
        raise ValueError("no malignant cases to choose a referral threshold from")
    if not confidence:
        needed = int(np.ceil(min_sensitivity * scores.size))
        return float(scores[needed - 1])
    detected = np.arange(1, scores.size + 1)
    lower = sensitivity_lower_bound(detected, scores.size, confidence)
    meets = np.flatnonzero(lower >= min_sensitivity)
    if meets.size == 0:
        raise ValueError(
            f"{scores.size} malignant cases are too few to show sensitivity >= "
            f"{min_sensitivity} with confidence {confidence} (a small run can use the point "
            "estimate: --threshold-confidence 0)"
        )
    return float(scores[meets[0]])


def sensitivity_lower_bound(detected, total: int, confidence: float) -> np.ndarray:
    """One-sided Clopper-Pearson lower confidence bound of a proportion ``detected / total``."""
    from scipy.stats import beta

    detected = np.asarray(detected, dtype=np.float64)
    bound = beta.ppf(1 - confidence, detected, total - detected + 1)
    return np.where(detected > 0, bound, 0.0)


def pseudo_logits(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Logits, up to a per-image constant, of probabilities computed at ``temperature``.

    No softmax and no temperature fit sees that constant, so these stand in for the
    logits the device runtime does not keep.
    """
    return temperature * np.log(np.clip(probs, 1e-12, 1.0))


def refit_calibration(
    probs: np.ndarray,
    labels: np.ndarray,
    temperature: float,
    min_sensitivity: float,
    confidence: float,
) -> tuple[float, float]:
    """(temperature, referral threshold) refitted from probabilities computed at ``temperature``."""
    logits = pseudo_logits(probs, temperature)
    fitted = fit_temperature(logits, labels)
    threshold = referral_threshold(softmax(logits, fitted), labels, min_sensitivity, confidence)
    return float(fitted), float(threshold)


def melanoma_threshold(probs: np.ndarray, labels: np.ndarray, min_sensitivity: float) -> float:
    """The highest threshold on P(malignant) that refers ``min_sensitivity`` of the melanomas.

    Used on pooled held-out-source predictions: the threshold a scanner needs so that,
    on clinics it was not trained on, at least that share of melanomas is referred
    (point estimate).

    Raises:
        ValueError: no melanoma in ``labels``.
    """
    from device.metrics import MELANOMA_INDEX

    scores = np.sort(malignant_probability(probs)[np.asarray(labels) == MELANOMA_INDEX])[::-1]
    if scores.size == 0:
        raise ValueError("no melanoma to choose a threshold from")
    return float(scores[int(np.ceil(min_sensitivity * scores.size)) - 1])
