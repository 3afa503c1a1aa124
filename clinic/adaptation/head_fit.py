"""The adapted head: multinomial logistic regression anchored to the base head.

Minimises, over ``W`` (C, K) and ``b`` (K,),

    sum_i w_i * CE(softmax(x_i W + b), y_i) / sum_i w_i
        + l2 * (||W - W0||^2 + ||b - b0||^2)

where ``x_i`` are the pooled features as the model outputs them (no scaling) and
``w_i`` are class-balanced weights (each class present weighs the same in total).
The anchor keeps what the cases say nothing about at the base head: a class absent
from the cases is pushed down only as far as the penalty lets it. DESIGN.md ("Site
adaptation") found a penalty of 0.01-0.1 best on two outside clinics and 1.0 too
stiff. The bias is anchored too, so an absent class's bias cannot run off to minus
infinity. L-BFGS (scipy) from the base head: deterministic, well under a second for
500 cases.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_L2 = 0.05
MAX_ITERATIONS = 1000


def single_threaded_blas() -> Any:
    """A context in which BLAS uses one thread (threadpoolctl, when installed).

    The products here are small (n x 1280 by 1280 x 7): OpenBLAS's threads cost far more
    than they give, 30 times over on a busy 2-core machine (measured).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def class_weights(y: np.ndarray, n_classes: int, balanced: bool = True) -> np.ndarray:
    """Per-case weights: ``n / (classes present * n_class)`` if balanced, else ones."""
    y = np.asarray(y, dtype=np.int64)
    if not balanced:
        return np.ones(len(y), dtype=np.float64)
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = int(np.count_nonzero(counts))
    return len(y) / (present * counts[y])


def anchored_loss(
    params: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    w0: np.ndarray,
    b0: np.ndarray,
    l2: float,
) -> tuple[float, np.ndarray]:
    """The objective and its gradient for flattened ``params = [W.ravel(), b]``."""
    channels, n_classes = w0.shape
    w = params[: channels * n_classes].reshape(channels, n_classes)
    b = params[channels * n_classes :]
    z = x @ w + b
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    total = weights.sum()
    ce = log_norm - z[np.arange(len(y)), y]
    dw, db = w - w0, b - b0
    loss = float(weights @ ce / total + l2 * ((dw * dw).sum() + (db * db).sum()))
    g = np.exp(z - log_norm[:, None])
    g[np.arange(len(y)), y] -= 1.0
    g *= (weights / total)[:, None]
    grad_w = x.T @ g + 2.0 * l2 * dw
    grad_b = g.sum(axis=0) + 2.0 * l2 * db
    return loss, np.concatenate([grad_w.ravel(), grad_b])


def fit_head(
    features: np.ndarray,
    y: np.ndarray,
    w0: np.ndarray,
    b0: np.ndarray,
    *,
    l2: float = DEFAULT_L2,
    class_balanced: bool = True,
    max_iterations: int = MAX_ITERATIONS,
) -> tuple[np.ndarray, np.ndarray]:
    """Fit the head to the cases, anchored to the base head ``(w0, b0)``.

    Args:
        features: pooled features, (n, C).
        y: class indices in model order, (n,).
        w0: base head weights, (C, K).
        b0: base head bias, (K,).
        l2: weight of the squared distance to the base head (> 0).
        class_balanced: weigh each class present equally (else each case).
        max_iterations: L-BFGS iterations at most.

    Returns:
        ``(W, b)`` as float32, shapes (C, K) and (K,).

    Raises:
        ValueError: shapes disagree, a label is out of range, or ``l2`` is not positive.
    """
    from scipy.optimize import minimize

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    w0 = np.asarray(w0, dtype=np.float64)
    b0 = np.asarray(b0, dtype=np.float64)
    channels, n_classes = w0.shape
    if x.ndim != 2 or x.shape[1] != channels or len(y) != len(x) or b0.shape != (n_classes,):
        raise ValueError(
            f"fit_head: features {x.shape}, labels {y.shape}, W0 {w0.shape}, b0 {b0.shape} "
            "do not fit together"
        )
    if len(y) == 0 or y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"fit_head: labels must be in 0..{n_classes - 1} and not empty")
    if not l2 > 0:
        raise ValueError(f"fit_head: l2 must be > 0, got {l2}")
    weights = class_weights(y, n_classes, class_balanced)
    start = np.concatenate([w0.ravel(), b0])
    with single_threaded_blas():
        result = minimize(
            anchored_loss,
            start,
            args=(x, y, weights, w0, b0, float(l2)),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": int(max_iterations), "gtol": 1e-5, "ftol": 1e-9},
        )
    if not result.success:
        log.info("fit_head: L-BFGS stopped after %d iterations (%s)", result.nit, result.message)
    w = result.x[: channels * n_classes].reshape(channels, n_classes)
    b = result.x[channels * n_classes :]
    return w.astype(np.float32), b.astype(np.float32)
