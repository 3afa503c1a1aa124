"""Cross-validated evidence and the refusal rules of skinscan adapt."""

from __future__ import annotations

import numpy as np
import pytest

from clinic.adaptation.evidence import (
    MIN_SENSITIVITY,
    cross_validate,
    fit_temperature,
    format_table,
    stratified_folds,
)
from clinic.adaptation.rules import (
    NoImprovementError,
    OneClassError,
    TooFewCasesError,
    check_cases,
    check_evidence,
)
from device import metrics
from device.labels import CLASS_CODES

MEL, NV, BKL, BCC = (CLASS_CODES.index(c) for c in ("mel", "nv", "bkl", "bcc"))
C, K = 16, 7


def site_cases(n_mel: int = 15, n_nv: int = 30, n_bkl: int = 10, seed: int = 0):
    """Melanomas differ from nevi along channel 0, which the base head ignores."""
    rng = np.random.default_rng(seed)
    y = np.array([MEL] * n_mel + [NV] * n_nv + [BKL] * n_bkl)
    x = rng.normal(1.0, 0.3, size=(len(y), C)).clip(0)
    x[y == MEL, 0] += 1.5
    x[y == BKL, 1] += 1.5
    w0 = rng.normal(0, 0.1, size=(C, K))
    w0[0, :] = 0.0
    b0 = np.zeros(K)
    return x.astype(np.float32), y, w0.astype(np.float32), b0.astype(np.float32)


def test_stratified_folds_spread_every_class() -> None:
    y = np.array([0] * 10 + [4] * 7 + [5] * 23)
    folds = stratified_folds(y, 5, np.random.default_rng(0))
    for cls in (0, 4, 5):
        counts = np.bincount(folds[y == cls], minlength=5)
        assert counts.max() - counts.min() <= 1
    sizes = np.bincount(folds, minlength=5)
    assert sizes.max() - sizes.min() <= 1


def test_adapted_beats_a_base_head_blind_to_the_site_signal() -> None:
    x, y, w0, b0 = site_cases()
    base_logits = x @ w0 + b0
    ev = cross_validate(
        x, y, base_logits, w0, b0, base_temperature=1.0, base_threshold=0.3, n_boot=100
    )
    assert ev.value("malignant_auc", "adapted") > ev.value("malignant_auc", "base") + 0.2
    assert ev.value("malignant_auc", "adapted") > 0.9
    assert np.isfinite(ev.value("melanoma_nevus_auc", "adapted"))
    # The threshold refers at least 90% of the malignant cases' out-of-fold scores.
    p_mal = metrics.malignant_probability(ev.adapted_probabilities)
    assert np.mean(p_mal[y == MEL] >= ev.threshold) >= MIN_SENSITIVITY
    assert ev.value("sensitivity", "adapted") >= MIN_SENSITIVITY
    low, high = ev.table["malignant_auc"]["adapted_ci95"]
    assert low <= ev.value("malignant_auc", "adapted") <= high
    assert len(ev.adapted_auc_per_repeat) == ev.repeats == 5
    assert "| malignant_auc |" in format_table(ev)


def test_cross_validation_is_reproducible_by_seed() -> None:
    x, y, w0, b0 = site_cases(seed=1)
    runs = [
        cross_validate(x, y, x @ w0, w0, b0, base_temperature=1.0, base_threshold=0.3, n_boot=0)
        for _ in range(2)
    ]
    np.testing.assert_array_equal(runs[0].adapted_logits, runs[1].adapted_logits)


def test_melanoma_nevus_auc_is_not_reported_without_nevi() -> None:
    x, y, w0, b0 = site_cases(n_nv=0, n_bkl=25)
    ev = cross_validate(x, y, x @ w0, w0, b0, base_temperature=1.0, base_threshold=0.3, n_boot=0)
    assert np.isnan(ev.value("melanoma_nevus_auc", "adapted"))
    assert "n/a" in format_table(ev)


def test_temperature_fit_undoes_a_scaling() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, size=(400, K))
    y = np.array([rng.choice(K, p=metrics_softmax(row)) for row in logits])
    assert fit_temperature(logits * 3.0, y) == pytest.approx(3.0, rel=0.25)


def metrics_softmax(row: np.ndarray) -> np.ndarray:
    e = np.exp(row - row.max())
    return e / e.sum()


def test_too_few_cases_are_refused() -> None:
    with pytest.raises(TooFewCasesError, match="30"):
        check_cases(np.array([MEL] * 12 + [NV] * 17))
    with pytest.raises(TooFewCasesError, match="9 malignant"):
        check_cases(np.array([MEL] * 9 + [NV] * 40))
    check_cases(np.array([MEL] * 10 + [NV] * 20))


def test_one_class_or_no_benign_is_refused() -> None:
    with pytest.raises(OneClassError, match="mel"):
        check_cases(np.array([MEL] * 40))
    with pytest.raises(OneClassError, match="benign"):
        check_cases(np.array([MEL] * 20 + [BCC] * 20))


def test_no_gain_is_refused_unless_forced() -> None:
    assert check_evidence(0.80, 0.85, force=False) is None
    assert check_evidence(0.80, 0.80, force=False) is None
    with pytest.raises(NoImprovementError, match=r"0\.750 adapted against 0\.800"):
        check_evidence(0.80, 0.75, force=False)
    note = check_evidence(0.80, 0.75, force=True)
    assert note is not None and "--force" in note
