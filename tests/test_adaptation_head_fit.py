"""The anchored, class-balanced head fit of skinscan adapt."""

from __future__ import annotations

import numpy as np
import pytest

from clinic.adaptation.head_fit import class_weights, fit_head

C, K = 32, 7


def separable(n_per_class: int, classes: tuple[int, ...], seed: int = 0):
    """Features whose class is a direction: class c adds a large bump on channel c."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.array(classes), n_per_class)
    x = rng.normal(0.5, 0.1, size=(len(y), C)).clip(0)
    x[np.arange(len(y)), y] += 3.0
    return x.astype(np.float32), y


def test_fit_recovers_a_separable_problem_the_base_head_gets_wrong() -> None:
    x, y = separable(20, (0, 2, 4, 5))
    rng = np.random.default_rng(1)
    w0 = rng.normal(0, 0.05, size=(C, K)).astype(np.float32)
    # The base head maps each class's channel to the wrong class.
    for c in range(K):
        w0[c, (c + 1) % K] = 3.0
    b0 = np.zeros(K, np.float32)
    assert np.mean((x @ w0 + b0).argmax(1) == y) < 0.1
    w, b = fit_head(x, y, w0, b0, l2=0.01)
    test_x, test_y = separable(10, (0, 2, 4, 5), seed=5)
    assert np.mean((test_x @ w + b).argmax(1) == test_y) == 1.0
    assert w.dtype == np.float32 and w.shape == (C, K) and b.shape == (K,)


def test_huge_penalty_keeps_the_base_head() -> None:
    x, y = separable(15, (1, 4))
    rng = np.random.default_rng(2)
    w0 = rng.normal(0, 0.3, size=(C, K)).astype(np.float32)
    b0 = rng.normal(0, 0.3, size=K).astype(np.float32)
    w, b = fit_head(x, y, w0, b0, l2=1e6)
    assert np.abs(w - w0).max() < 1e-4
    assert np.abs(b - b0).max() < 1e-4
    w_soft, _ = fit_head(x, y, w0, b0, l2=0.01)
    assert np.abs(w_soft - w0).max() > 0.05


def test_fit_is_deterministic() -> None:
    x, y = separable(10, (0, 3, 6))
    w0 = np.zeros((C, K), np.float32)
    b0 = np.zeros(K, np.float32)
    first = fit_head(x, y, w0, b0)
    second = fit_head(x, y, w0, b0)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


def test_absent_class_stays_near_its_base_column() -> None:
    x, y = separable(20, (4, 5))
    rng = np.random.default_rng(3)
    w0 = rng.normal(0, 0.2, size=(C, K)).astype(np.float32)
    b0 = np.zeros(K, np.float32)
    w, b = fit_head(x, y, w0, b0, l2=0.05)
    moved = np.linalg.norm(w - w0, axis=0)
    # The fitted classes move most; absent ones are held by the anchor and stay finite.
    assert moved[[4, 5]].min() > moved[[0, 1, 2, 3, 6]].max() * 0.5
    assert np.isfinite(w).all() and np.isfinite(b).all()
    assert np.abs(b).max() < 10


def test_class_weights_give_each_class_the_same_total() -> None:
    y = np.array([0] * 30 + [4] * 10 + [5] * 5)
    weights = class_weights(y, K)
    totals = [weights[y == c].sum() for c in (0, 4, 5)]
    np.testing.assert_allclose(totals, [15.0, 15.0, 15.0])
    np.testing.assert_array_equal(class_weights(y, K, balanced=False), np.ones(len(y)))


def test_bad_inputs_are_refused() -> None:
    x, y = separable(5, (0, 1))
    w0, b0 = np.zeros((C, K), np.float32), np.zeros(K, np.float32)
    with pytest.raises(ValueError, match="l2"):
        fit_head(x, y, w0, b0, l2=0.0)
    with pytest.raises(ValueError, match="labels"):
        fit_head(x, y + 10, w0, b0)
    with pytest.raises(ValueError, match="fit together"):
        fit_head(x[:, :5], y, w0, b0)
