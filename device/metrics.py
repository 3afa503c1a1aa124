"""Classification metrics for SkinScan, in numpy only (they run on the device too).

Names and definitions follow DESIGN.md ("Metrics"); training, conversion and
``skinscan eval`` all import them from here so every report means the same thing.

Conventions:
    * ``y_true`` is a 1-D integer array of class indices in the order of
      :data:`device.labels.CLASS_CODES`.
    * ``probs`` is an ``(N, 7)`` array of class probabilities (rows sum to 1).
      Functions that only need the top-1 class also accept a 1-D array of
      predicted indices.
    * Malignant means mel, bcc or akiec (:data:`device.labels.MALIGNANT_CODES`);
      ``P(malignant)`` is the sum of their probabilities.
    * A figure that is undefined on the given data (for example the AUC when
      only one of malignant/benign is present) is ``nan``; :func:`json_safe`
      turns it into ``None`` for JSON.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from device.labels import CLASS_CODES, MALIGNANT_CODES

log = logging.getLogger(__name__)

N_CLASSES = len(CLASS_CODES)
MALIGNANT_INDICES: tuple[int, ...] = tuple(
    i for i, code in enumerate(CLASS_CODES) if code in MALIGNANT_CODES
)
MELANOMA_INDEX = CLASS_CODES.index("mel")
NEVUS_INDEX = CLASS_CODES.index("nv")
ECE_BINS = 15

# The headline figures that get a bootstrap interval in reports.
HEADLINE_METRICS: tuple[str, ...] = (
    "balanced_accuracy",
    "accuracy",
    "malignant_auc",
    "sensitivity",
    "specificity",
    "melanoma_sensitivity",
    "melanoma_nevus_auc",
    "ece",
)


def _labels(y_true: np.ndarray) -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"y_true must be 1-D, got shape {y.shape}")
    if y.size and (not np.issubdtype(y.dtype, np.integer)):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError("y_true must hold integer class indices")
        y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= N_CLASSES):
        raise ValueError(f"y_true holds indices outside 0..{N_CLASSES - 1}")
    return y.astype(np.int64, copy=False)


def _probs(probs: np.ndarray, n: int) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.shape != (n, N_CLASSES):
        raise ValueError(f"probs must have shape ({n}, {N_CLASSES}), got {p.shape}")
    return p


def _predictions(y_pred_or_probs: np.ndarray, n: int) -> np.ndarray:
    """Top-1 class indices from either predicted indices (1-D) or probabilities (2-D)."""
    a = np.asarray(y_pred_or_probs)
    if a.ndim == 2:
        return np.argmax(_probs(a, n), axis=1)
    pred = _labels(a)
    if pred.shape != (n,):
        raise ValueError(f"predictions must have shape ({n},), got {pred.shape}")
    return pred


def classes_present(y_true: np.ndarray) -> list[str]:
    """Return the class codes that occur in ``y_true``, in model output order."""
    y = _labels(y_true)
    counts = np.bincount(y, minlength=N_CLASSES)
    return [CLASS_CODES[i] for i in range(N_CLASSES) if counts[i] > 0]


def _confusion(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Confusion matrix ``C[true, pred]``."""
    return np.bincount(y * N_CLASSES + pred, minlength=N_CLASSES * N_CLASSES).reshape(
        N_CLASSES, N_CLASSES
    )


def confusion_matrix(y_true: np.ndarray, y_pred_or_probs: np.ndarray) -> np.ndarray:
    """Return the 7x7 confusion matrix, rows = truth, columns = prediction.

    Args:
        y_true: true class indices, shape (N,).
        y_pred_or_probs: predicted indices (N,) or probabilities (N, 7).

    Returns:
        Integer array of shape (7, 7).
    """
    y = _labels(y_true)
    return _confusion(y, _predictions(y_pred_or_probs, len(y)))


def per_class_recall(y_true: np.ndarray, y_pred_or_probs: np.ndarray) -> dict[str, float]:
    """Recall of each class present in ``y_true``.

    Args:
        y_true: true class indices, shape (N,).
        y_pred_or_probs: predicted indices (N,) or probabilities (N, 7).

    Returns:
        Class code -> recall, only for the classes present (recall is undefined
        for the others), in model output order.
    """
    y = _labels(y_true)
    cm = _confusion(y, _predictions(y_pred_or_probs, len(y)))
    support = cm.sum(axis=1)
    return {
        CLASS_CODES[i]: float(cm[i, i] / support[i]) for i in range(N_CLASSES) if support[i] > 0
    }


def per_class_precision(y_true: np.ndarray, y_pred_or_probs: np.ndarray) -> dict[str, float]:
    """Precision of each class that is present in ``y_true`` or predicted at least once.

    A class present in the truth but never predicted gets 0.0 (no correct
    positive predictions), the usual ``zero_division=0`` convention.

    Args:
        y_true: true class indices, shape (N,).
        y_pred_or_probs: predicted indices (N,) or probabilities (N, 7).

    Returns:
        Class code -> precision, in model output order.
    """
    y = _labels(y_true)
    cm = _confusion(y, _predictions(y_pred_or_probs, len(y)))
    predicted = cm.sum(axis=0)
    support = cm.sum(axis=1)
    out: dict[str, float] = {}
    for i in range(N_CLASSES):
        if predicted[i] > 0:
            out[CLASS_CODES[i]] = float(cm[i, i] / predicted[i])
        elif support[i] > 0:
            out[CLASS_CODES[i]] = 0.0
    return out


def balanced_accuracy(y_true: np.ndarray, y_pred_or_probs: np.ndarray) -> float:
    """Mean recall over the classes present in ``y_true`` (ISIC 2018 Task 3 metric).

    With all 7 HAM10000 classes present this is the mean recall over the 7
    classes; with a subset, macro recall is taken over the classes present.

    Args:
        y_true: true class indices, shape (N,).
        y_pred_or_probs: predicted indices (N,) or probabilities (N, 7).

    Returns:
        Balanced accuracy in [0, 1]; ``nan`` for empty input.
    """
    recalls = per_class_recall(y_true, y_pred_or_probs)
    if not recalls:
        return math.nan
    return float(np.mean(list(recalls.values())))


def accuracy(y_true: np.ndarray, y_pred_or_probs: np.ndarray) -> float:
    """Top-1 accuracy over images (misleading on HAM10000: always "nv" scores 0.67).

    Args:
        y_true: true class indices, shape (N,).
        y_pred_or_probs: predicted indices (N,) or probabilities (N, 7).

    Returns:
        Accuracy in [0, 1]; ``nan`` for empty input.
    """
    y = _labels(y_true)
    if y.size == 0:
        return math.nan
    return float(np.mean(_predictions(y_pred_or_probs, len(y)) == y))


def malignant_probability(probs: np.ndarray) -> np.ndarray:
    """Return ``P(mel) + P(bcc) + P(akiec)`` for each row of ``probs``.

    Args:
        probs: class probabilities, shape (N, 7) or (7,).

    Returns:
        Array of shape (N,) (or a 0-d array for a single row).
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.shape[-1] != N_CLASSES:
        raise ValueError(f"probs must have {N_CLASSES} columns, got shape {p.shape}")
    return p[..., list(MALIGNANT_INDICES)].sum(axis=-1)


def is_malignant(y_true: np.ndarray) -> np.ndarray:
    """Boolean array: True where the true class is mel, bcc or akiec."""
    y = _labels(y_true)
    return np.isin(y, MALIGNANT_INDICES)


def roc_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC from ranks (the Mann-Whitney U statistic); ties count one half.

    Args:
        positive: boolean truth, shape (N,).
        scores: higher means more likely positive, shape (N,).

    Returns:
        The area under the ROC curve, or ``nan`` when either class is absent.
    """
    pos = np.asarray(positive, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    if pos.shape != s.shape or pos.ndim != 1:
        raise ValueError(f"positive and scores must be 1-D of equal length: {pos.shape}, {s.shape}")
    n_pos = int(pos.sum())
    n_neg = pos.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    # Average 1-based ranks over runs of tied scores.
    boundaries = np.flatnonzero(np.diff(sorted_s)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [s.size]))
    run_ranks = (starts + ends + 1) / 2.0
    ranks = np.empty(s.size, dtype=np.float64)
    ranks[order] = np.repeat(run_ranks, ends - starts)
    u = ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def malignant_auc(y_true: np.ndarray, probs: np.ndarray) -> float:
    """ROC AUC of ``P(mel)+P(bcc)+P(akiec)`` against the malignant truth.

    Args:
        y_true: true class indices, shape (N,).
        probs: class probabilities, shape (N, 7).

    Returns:
        The AUC, or ``nan`` when only malignant or only benign images are present.
    """
    y = _labels(y_true)
    return roc_auc(is_malignant(y), malignant_probability(_probs(probs, len(y))))


def melanoma_nevus_auc(y_true: np.ndarray, probs: np.ndarray) -> float:
    """ROC AUC of ``P(mel)`` for melanoma against nevus, on mel and nv images only.

    This is the melanocytic question an outside clinic's set often asks; other
    classes are left out of both sides.

    Args:
        y_true: true class indices, shape (N,).
        probs: class probabilities, shape (N, 7).

    Returns:
        The AUC, or ``nan`` when melanoma or nevus is absent.
    """
    y = _labels(y_true)
    p = _probs(probs, len(y))
    keep = (y == MELANOMA_INDEX) | (y == NEVUS_INDEX)
    return roc_auc(y[keep] == MELANOMA_INDEX, p[keep, MELANOMA_INDEX])


def _referred(probs: np.ndarray, n: int, threshold: float) -> np.ndarray:
    return malignant_probability(_probs(probs, n)) >= threshold


def sensitivity(y_true: np.ndarray, probs: np.ndarray, threshold: float) -> float:
    """Fraction of malignant images referred, i.e. with ``P(malignant) >= threshold``.

    Args:
        y_true: true class indices, shape (N,).
        probs: class probabilities, shape (N, 7).
        threshold: the referral threshold on P(malignant).

    Returns:
        Sensitivity in [0, 1]; ``nan`` if no malignant image is present.
    """
    y = _labels(y_true)
    mal = is_malignant(y)
    if not mal.any():
        return math.nan
    return float(np.mean(_referred(probs, len(y), threshold)[mal]))


def specificity(y_true: np.ndarray, probs: np.ndarray, threshold: float) -> float:
    """Fraction of benign images not referred, i.e. with ``P(malignant) < threshold``.

    Args:
        y_true: true class indices, shape (N,).
        probs: class probabilities, shape (N, 7).
        threshold: the referral threshold on P(malignant).

    Returns:
        Specificity in [0, 1]; ``nan`` if no benign image is present.
    """
    y = _labels(y_true)
    benign = ~is_malignant(y)
    if not benign.any():
        return math.nan
    return float(np.mean(~_referred(probs, len(y), threshold)[benign]))


def melanoma_sensitivity(y_true: np.ndarray, probs: np.ndarray, threshold: float) -> float:
    """Recall of melanoma at the referral threshold: fraction of mel images referred.

    Args:
        y_true: true class indices, shape (N,).
        probs: class probabilities, shape (N, 7).
        threshold: the referral threshold on P(malignant).

    Returns:
        Melanoma sensitivity in [0, 1]; ``nan`` if no melanoma is present.
    """
    y = _labels(y_true)
    mel = y == MELANOMA_INDEX
    if not mel.any():
        return math.nan
    return float(np.mean(_referred(probs, len(y), threshold)[mel]))


def ece(y_true: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error of the top-1 confidence.

    Equal-width bins over (0, 1]; the bin gaps ``|accuracy - mean confidence|``
    are weighted by the fraction of images in each bin.

    Args:
        y_true: true class indices, shape (N,).
        probs: class probabilities, shape (N, 7).
        n_bins: number of confidence bins (15 by definition).

    Returns:
        ECE in [0, 1]; ``nan`` for empty input.
    """
    y = _labels(y_true)
    p = _probs(probs, len(y))
    if y.size == 0:
        return math.nan
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    # Bin k holds confidences in (k/n, (k+1)/n]; a confidence of exactly 0 goes in bin 0.
    # Weighted gap per bin: (n_b/N) * |acc_b - conf_b| = |sum(correct) - sum(conf)| / N.
    bins = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    conf_sum = np.bincount(bins, weights=conf, minlength=n_bins)
    acc_sum = np.bincount(bins, weights=correct, minlength=n_bins)
    return float(np.abs(acc_sum - conf_sum).sum() / y.size)


def bootstrap_ci(
    metric: Callable[[np.ndarray, np.ndarray], float],
    y_true: np.ndarray,
    probs: np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``metric(y_true, probs)``.

    Images are resampled with replacement; resamples on which the metric is
    undefined (``nan``) are dropped.

    Args:
        metric: a function ``(y_true, probs) -> float``; bind extra arguments
            such as the threshold with ``functools.partial`` or a lambda.
        y_true: true class indices, shape (N,).
        probs: class probabilities, shape (N, 7) (or anything ``metric`` accepts,
            indexed along its first axis).
        n_boot: number of bootstrap resamples.
        seed: seed of the resampling generator; the same seed gives the same interval.
        level: coverage of the interval, 0.95 for a 95% CI.

    Returns:
        ``(low, high)``; ``(nan, nan)`` if the metric is undefined on every resample.
    """
    y = _labels(y_true)
    p = np.asarray(probs)
    if len(p) != len(y):
        raise ValueError(f"y_true and probs differ in length: {len(y)} vs {len(p)}")
    if y.size == 0 or n_boot < 1:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    values = np.empty(n_boot, dtype=np.float64)
    for b in range(n_boot):
        idx = rng.integers(0, y.size, size=y.size)
        values[b] = metric(y[idx], p[idx])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return (math.nan, math.nan)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return (float(low), float(high))


def headline_metric_functions(
    referral_threshold: float,
) -> dict[str, Callable[[np.ndarray, np.ndarray], float]]:
    """Return the headline metrics as ``(y_true, probs) -> float`` callables, by name."""
    t = float(referral_threshold)
    return {
        "balanced_accuracy": balanced_accuracy,
        "accuracy": accuracy,
        "malignant_auc": malignant_auc,
        "sensitivity": lambda y, p: sensitivity(y, p, t),
        "specificity": lambda y, p: specificity(y, p, t),
        "melanoma_sensitivity": lambda y, p: melanoma_sensitivity(y, p, t),
        "melanoma_nevus_auc": melanoma_nevus_auc,
        "ece": ece,
    }


def evaluate(
    y_true: np.ndarray,
    probs: np.ndarray,
    referral_threshold: float,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Compute every DESIGN.md metric and its 95% bootstrap interval.

    Args:
        y_true: true class indices, shape (N,).
        probs: calibrated class probabilities, shape (N, 7).
        referral_threshold: threshold on P(malignant) for sensitivity/specificity.
        n_boot: bootstrap resamples for the intervals (0 skips them).
        seed: bootstrap seed.

    Returns:
        A dict with ``n_images``, ``classes_present``, the headline metrics,
        ``per_class_recall``, ``per_class_precision``, ``referral_threshold``
        and ``ci95`` (metric name -> ``[low, high]``). Undefined values are
        ``nan``; pass the result through :func:`json_safe` before writing JSON.
    """
    y = _labels(y_true)
    p = _probs(probs, len(y))
    fns = headline_metric_functions(referral_threshold)
    out: dict[str, Any] = {
        "n_images": int(y.size),
        "classes_present": classes_present(y),
        "referral_threshold": float(referral_threshold),
    }
    for name, fn in fns.items():
        out[name] = fn(y, p)
    out["per_class_recall"] = per_class_recall(y, p)
    out["per_class_precision"] = per_class_precision(y, p)
    out["ci95"] = {}
    if n_boot > 0:
        for name, fn in fns.items():
            out["ci95"][name] = list(bootstrap_ci(fn, y, p, n_boot=n_boot, seed=seed))
    return out


def json_safe(value: Any) -> Any:
    """Recursively replace non-finite floats by ``None`` and numpy scalars by Python ones."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    return value
