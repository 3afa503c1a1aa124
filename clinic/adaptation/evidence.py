"""Cross-validated evidence: the base head against the adapted head on the cases.

Repeated stratified k-fold cross-validation (5 x 5 by default, fewer folds when a
class is small): in each fold the head is fitted on the other folds' cases and
scores the held-out ones, so every case gets an out-of-fold score from a head that
never saw it. Its logits are averaged over the repeats (an average of linear heads).
The base head's scores need no fitting: they are the bundle's own logits.

From these out-of-fold predictions come:

* the adapted softmax temperature (refitted by likelihood, since a class-balanced
  head is not calibrated like the base; the base's is kept when refitting is off);
* the referral threshold: the highest P(malignant) at which at least 90% of the
  malignant cases are referred (``highest_threshold_for_sensitivity`` of
  :mod:`device.evaluation.shift_report`);
* the table: malignant_auc, melanoma_nevus_auc (when mel and nv both occur),
  sensitivity and specificity (the base at its own threshold, the adapted head at the
  new one), each with a 95% bootstrap interval (:mod:`device.metrics`).

The threshold is chosen on the same predictions it is then measured on, so the
adapted sensitivity (>= 0.90 by construction) and specificity are optimistic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from clinic.adaptation.head_fit import DEFAULT_L2, fit_head, single_threaded_blas
from device import metrics
from device.evaluation.shift_report import highest_threshold_for_sensitivity
from device.runtime.classifier import softmax

log = logging.getLogger(__name__)

MIN_SENSITIVITY = 0.90
DEFAULT_FOLDS = 5
DEFAULT_REPEATS = 5
TEMPERATURE_BOUNDS = (0.05, 20.0)
TABLE_METRICS = ("malignant_auc", "melanoma_nevus_auc", "sensitivity", "specificity")


def stratified_folds(y: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Fold number (0..k-1) of each case: each class shuffled and dealt round the folds.

    The deal of each class starts where the previous class's ended, so folds stay
    about equal in size even when many classes are small.
    """
    y = np.asarray(y)
    folds = np.empty(len(y), dtype=np.int64)
    offset = 0
    for cls in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == cls))
        folds[members] = (offset + np.arange(len(members))) % k
        offset += len(members)
    return folds


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The softmax temperature that maximises the likelihood of ``y`` (bounded search)."""
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)

    def nll(log_t: float) -> float:
        p = softmax(z, float(np.exp(log_t)))
        return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None))))

    low, high = np.log(TEMPERATURE_BOUNDS[0]), np.log(TEMPERATURE_BOUNDS[1])
    result = minimize_scalar(nll, bounds=(low, high), method="bounded")
    return float(np.exp(result.x))


@dataclass(frozen=True)
class Evidence:
    """The cross-validation's outcome.

    Attributes:
        folds: folds per repeat; repeats: repeats.
        base_probabilities: the base bundle's probabilities per case (n, K).
        adapted_logits: out-of-fold adapted logits averaged over repeats (n, K).
        temperature: the adapted head's softmax temperature.
        threshold: the adapted referral threshold on P(malignant).
        base_threshold: the base bundle's referral threshold.
        table: metric -> {"base": value, "adapted": value, "base_ci95": [lo, hi],
            "adapted_ci95": [lo, hi]}; values nan when undefined.
        adapted_auc_per_repeat: malignant AUC of each repeat's out-of-fold scores.
    """

    folds: int
    repeats: int
    base_probabilities: np.ndarray
    adapted_logits: np.ndarray
    temperature: float
    threshold: float
    base_threshold: float
    table: dict[str, dict[str, Any]] = field(default_factory=dict)
    adapted_auc_per_repeat: list[float] = field(default_factory=list)

    @property
    def adapted_probabilities(self) -> np.ndarray:
        """Out-of-fold adapted probabilities at the adapted temperature (n, K)."""
        return softmax(self.adapted_logits, self.temperature)

    def value(self, metric: str, which: str) -> float:
        """``table[metric][which]`` ("base" or "adapted")."""
        return float(self.table[metric][which])


def _table(
    y: np.ndarray,
    base_p: np.ndarray,
    adapted_p: np.ndarray,
    base_threshold: float,
    threshold: float,
    n_boot: int,
    seed: int,
) -> dict[str, dict[str, Any]]:
    def fns(t: float) -> dict[str, Callable[[np.ndarray, np.ndarray], float]]:
        return {
            "malignant_auc": metrics.malignant_auc,
            "melanoma_nevus_auc": metrics.melanoma_nevus_auc,
            "sensitivity": lambda yy, pp: metrics.sensitivity(yy, pp, t),
            "specificity": lambda yy, pp: metrics.specificity(yy, pp, t),
        }

    base_fns, adapted_fns = fns(base_threshold), fns(threshold)
    table: dict[str, dict[str, Any]] = {}
    for name in TABLE_METRICS:
        row: dict[str, Any] = {}
        for which, fn, p in (
            ("base", base_fns[name], base_p),
            ("adapted", adapted_fns[name], adapted_p),
        ):
            row[which] = float(fn(y, p))
            ci = metrics.bootstrap_ci(fn, y, p, n_boot=n_boot, seed=seed) if n_boot else None
            row[f"{which}_ci95"] = list(ci) if ci is not None else [np.nan, np.nan]
        table[name] = row
    return table


def cross_validate(
    features: np.ndarray,
    y: np.ndarray,
    base_logits: np.ndarray,
    w0: np.ndarray,
    b0: np.ndarray,
    *,
    base_temperature: float,
    base_threshold: float,
    l2: float = DEFAULT_L2,
    folds: int = DEFAULT_FOLDS,
    repeats: int = DEFAULT_REPEATS,
    refit_temperature: bool = True,
    n_boot: int = 1000,
    seed: int = 0,
) -> Evidence:
    """Repeated stratified k-fold evidence, base head against adapted head.

    Args:
        features: pooled features of the cases, (n, C).
        y: their class indices, (n,).
        base_logits: the base bundle's logits for them, (n, K).
        w0, b0: the base head, the fit's anchor.
        base_temperature: the base bundle's softmax temperature.
        base_threshold: the base bundle's referral threshold.
        l2: the anchor's weight.
        folds: folds per repeat (at most; fewer when the rarest malignant-or-benign
            group has fewer cases).
        repeats: repetitions with different fold assignments.
        refit_temperature: fit the adapted temperature on the out-of-fold logits.
        n_boot: bootstrap resamples of the 95% intervals.
        seed: seed of the fold assignments and the bootstrap.

    Returns:
        The evidence (see :class:`Evidence`).
    """
    x = np.asarray(features, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    malignant = metrics.is_malignant(y)
    smallest_group = int(min(malignant.sum(), (~malignant).sum()))
    k = int(max(2, min(folds, smallest_group)))
    with single_threaded_blas():
        return _cross_validate(
            x,
            y,
            base_logits,
            w0,
            b0,
            k,
            base_temperature,
            base_threshold,
            l2,
            repeats,
            refit_temperature,
            n_boot,
            seed,
        )


def _cross_validate(
    x: np.ndarray,
    y: np.ndarray,
    base_logits: np.ndarray,
    w0: np.ndarray,
    b0: np.ndarray,
    k: int,
    base_temperature: float,
    base_threshold: float,
    l2: float,
    repeats: int,
    refit_temperature: bool,
    n_boot: int,
    seed: int,
) -> Evidence:
    malignant = metrics.is_malignant(y)
    rng = np.random.default_rng(seed)
    summed = np.zeros((len(y), w0.shape[1]), dtype=np.float64)
    per_repeat: list[np.ndarray] = []
    for _ in range(repeats):
        assignment = stratified_folds(y, k, rng)
        logits = np.zeros_like(summed)
        for fold in range(k):
            held = assignment == fold
            w, b = fit_head(x[~held], y[~held], w0, b0, l2=l2)
            logits[held] = x[held] @ w + b
        summed += logits
        per_repeat.append(logits)
    adapted_logits = summed / repeats
    temperature = fit_temperature(adapted_logits, y) if refit_temperature else base_temperature
    adapted_p = softmax(adapted_logits, temperature)
    base_p = softmax(base_logits, base_temperature)
    threshold = highest_threshold_for_sensitivity(
        metrics.malignant_probability(adapted_p)[malignant], MIN_SENSITIVITY
    )
    table = _table(y, base_p, adapted_p, base_threshold, threshold, n_boot, seed)
    aucs = [metrics.malignant_auc(y, softmax(z, temperature)) for z in per_repeat]
    log.info(
        "cross-validation %dx%d: malignant AUC base %.3f, adapted %.3f",
        repeats,
        k,
        table["malignant_auc"]["base"],
        table["malignant_auc"]["adapted"],
    )
    return Evidence(
        folds=k,
        repeats=repeats,
        base_probabilities=base_p,
        adapted_logits=adapted_logits.astype(np.float32),
        temperature=temperature,
        threshold=float(threshold),
        base_threshold=float(base_threshold),
        table=table,
        adapted_auc_per_repeat=[float(a) for a in aucs],
    )


def format_table(evidence: Evidence) -> str:
    """The evidence as a Markdown table (also printed by ``skinscan adapt``)."""

    def cell(row: dict[str, Any], which: str) -> str:
        value = row[which]
        if not np.isfinite(value):
            return "n/a"
        low, high = row[f"{which}_ci95"]
        if np.isfinite(low) and np.isfinite(high):
            return f"{value:.3f} ({low:.3f}-{high:.3f})"
        return f"{value:.3f}"

    lines = [
        "| metric | base | adapted |",
        "| --- | --- | --- |",
    ]
    for name in TABLE_METRICS:
        row = evidence.table[name]
        label = name
        if name in ("sensitivity", "specificity"):
            label = (
                f"{name} (base at {evidence.base_threshold:.3f}, "
                f"adapted at {evidence.threshold:.3f})"
            )
        lines.append(f"| {label} | {cell(row, 'base')} | {cell(row, 'adapted')} |")
    return "\n".join(lines)
