"""device.metrics: definitions from DESIGN.md, checked by hand and against scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest

from device import metrics
from device.labels import CLASS_CODES, class_index

MEL = class_index("mel")
NV = class_index("nv")
BCC = class_index("bcc")
DF = class_index("df")


def one_hot_probs(pred: list[int], confidence: float = 1.0) -> np.ndarray:
    """Probabilities with ``confidence`` on the predicted class, the rest spread evenly."""
    p = np.full((len(pred), 7), (1.0 - confidence) / 6.0)
    p[np.arange(len(pred)), pred] = confidence
    return p


def random_probs(rng: np.random.Generator, n: int) -> np.ndarray:
    logits = rng.normal(size=(n, 7)) * 2.0
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_always_nv_has_high_accuracy_but_low_balanced_accuracy() -> None:
    y = np.array([NV] * 67 + [MEL] * 11 + [BCC] * 22)
    pred = np.full(y.shape, NV)
    assert metrics.accuracy(y, pred) == pytest.approx(0.67)
    assert metrics.balanced_accuracy(y, pred) == pytest.approx(1 / 3)


def test_balanced_accuracy_is_mean_recall_over_classes_present() -> None:
    y = np.array([MEL, MEL, MEL, MEL, NV, NV])
    pred = np.array([MEL, MEL, NV, NV, NV, MEL])
    assert metrics.per_class_recall(y, pred) == {"mel": 0.5, "nv": 0.5}
    assert metrics.classes_present(y) == ["mel", "nv"]
    assert metrics.balanced_accuracy(y, pred) == pytest.approx(0.5)
    # Probabilities and predicted indices give the same answer.
    assert metrics.balanced_accuracy(y, one_hot_probs(pred.tolist(), 0.9)) == pytest.approx(0.5)


def test_precision_counts_never_predicted_present_class_as_zero() -> None:
    y = np.array([MEL, MEL, NV, DF])
    pred = np.array([MEL, NV, NV, NV])
    prec = metrics.per_class_precision(y, pred)
    assert prec["mel"] == 1.0
    assert prec["nv"] == pytest.approx(1 / 3)
    assert prec["df"] == 0.0
    assert "vasc" not in prec


def test_rank_auc_handles_ties_as_one_half() -> None:
    assert metrics.roc_auc(np.array([1, 0], bool), np.array([0.5, 0.5])) == 0.5
    assert metrics.roc_auc(np.array([1, 1, 0, 0], bool), np.array([0.9, 0.8, 0.1, 0.2])) == 1.0
    assert metrics.roc_auc(np.array([0, 0, 1, 1], bool), np.array([0.9, 0.8, 0.1, 0.2])) == 0.0
    assert math.isnan(metrics.roc_auc(np.array([1, 1], bool), np.array([0.1, 0.2])))


def test_malignant_auc_matches_sklearn_with_ties() -> None:
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    y = rng.integers(0, 7, size=500)
    p = np.round(random_probs(rng, 500), 2)  # rounding creates ties
    p /= p.sum(axis=1, keepdims=True)
    ours = metrics.malignant_auc(y, p)
    theirs = sk.roc_auc_score(metrics.is_malignant(y), metrics.malignant_probability(p))
    assert ours == pytest.approx(theirs, abs=1e-12)
    assert metrics.balanced_accuracy(y, p) == pytest.approx(
        sk.balanced_accuracy_score(y, p.argmax(axis=1))
    )


def test_sensitivity_specificity_and_melanoma_sensitivity_at_threshold() -> None:
    y = np.array([MEL, MEL, BCC, NV, NV, NV, DF, DF])
    p_mal = np.array([0.9, 0.2, 0.5, 0.49, 0.7, 0.1, 0.0, 0.3])
    p = np.zeros((8, 7))
    p[:, MEL] = p_mal
    p[:, NV] = 1.0 - p_mal
    # Referred: P(malignant) >= 0.5 -> rows 0, 2, 4.
    assert metrics.sensitivity(y, p, 0.5) == pytest.approx(2 / 3)
    assert metrics.specificity(y, p, 0.5) == pytest.approx(4 / 5)
    assert metrics.melanoma_sensitivity(y, p, 0.5) == pytest.approx(1 / 2)
    assert metrics.melanoma_sensitivity(y, p, 0.1) == 1.0
    assert math.isnan(metrics.melanoma_sensitivity(np.array([NV]), p[:1], 0.5))


def test_malignant_probability_sums_mel_bcc_akiec() -> None:
    p = np.zeros(7)
    for code, v in zip(CLASS_CODES, [0.1, 0.2, 0.05, 0.05, 0.3, 0.25, 0.05], strict=True):
        p[class_index(code)] = v
    assert metrics.malignant_probability(p) == pytest.approx(0.6)


def test_ece_is_zero_when_confidence_equals_accuracy_and_known_otherwise() -> None:
    # 10 images at confidence 0.8, 8 correct: perfectly calibrated.
    y = np.array([NV] * 10)
    pred = [NV] * 8 + [MEL] * 2
    assert metrics.ece(y, one_hot_probs(pred, 0.8)) == pytest.approx(0.0, abs=1e-12)
    # All correct at confidence 0.6: ECE is 0.4.
    assert metrics.ece(y, one_hot_probs([NV] * 10, 0.6)) == pytest.approx(0.4)
    # Two bins: 0.95 all correct (gap 0.05), 0.5 all wrong (gap 0.5); equal weights.
    p = np.vstack([one_hot_probs([NV] * 5, 0.95), one_hot_probs([MEL] * 5, 0.5)])
    assert metrics.ece(y, p) == pytest.approx((0.05 + 0.5) / 2)


def test_bootstrap_ci_is_seeded_and_brackets_the_estimate() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, size=300)
    p = random_probs(rng, 300)
    p[np.arange(300), y] += 0.25  # a fair, imperfect classifier
    p /= p.sum(axis=1, keepdims=True)
    point = metrics.balanced_accuracy(y, p)
    lo, hi = metrics.bootstrap_ci(metrics.balanced_accuracy, y, p, n_boot=300, seed=1)
    assert lo < point < hi
    assert 0.0 < hi - lo < 0.3
    assert (lo, hi) == metrics.bootstrap_ci(metrics.balanced_accuracy, y, p, n_boot=300, seed=1)
    assert (lo, hi) != metrics.bootstrap_ci(metrics.balanced_accuracy, y, p, n_boot=300, seed=2)


def test_evaluate_reports_every_headline_metric_with_ci_and_json_safe_nans() -> None:
    y = np.array([NV, NV, DF, DF, NV])  # benign only: AUC and sensitivity undefined
    p = one_hot_probs([NV, DF, DF, NV, NV], 0.7)
    out = metrics.evaluate(y, p, referral_threshold=0.5, n_boot=50)
    assert set(metrics.HEADLINE_METRICS) <= set(out)
    assert set(out["ci95"]) == set(metrics.HEADLINE_METRICS)
    assert out["classes_present"] == ["df", "nv"]
    assert math.isnan(out["malignant_auc"])
    safe = metrics.json_safe(out)
    assert safe["malignant_auc"] is None
    assert safe["ci95"]["sensitivity"] == [None, None]
    assert safe["specificity"] == 1.0


def test_inputs_are_validated() -> None:
    with pytest.raises(ValueError, match="shape"):
        metrics.malignant_auc(np.array([0, 1]), np.zeros((3, 7)))
    with pytest.raises(ValueError, match="outside"):
        metrics.accuracy(np.array([7]), np.array([0]))


def test_melanoma_nevus_auc_uses_only_mel_and_nv_images() -> None:
    mel, nv, bcc = (CLASS_CODES.index(c) for c in ("mel", "nv", "bcc"))
    y = np.array([mel, mel, nv, nv, bcc])
    probs = np.full((5, 7), 0.0)
    probs[:, CLASS_CODES.index("mel")] = [0.9, 0.2, 0.3, 0.1, 0.95]
    probs[:, CLASS_CODES.index("nv")] = 1.0 - probs[:, CLASS_CODES.index("mel")]
    # mel 0.9 beats both nevi, mel 0.2 beats one of them: 3 of 4 pairs; the bcc is ignored.
    assert metrics.melanoma_nevus_auc(y, probs) == pytest.approx(0.75)
    assert np.isnan(metrics.melanoma_nevus_auc(np.array([nv, bcc]), probs[:2]))
