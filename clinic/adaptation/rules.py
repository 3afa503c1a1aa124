"""When ``skinscan adapt`` refuses: too few cases, one class, or no evidence of a gain.

Every refusal is an :class:`AdaptationRefusedError` (a :class:`SkinScanError`, so the
CLI prints one line and exits 2) raised before anything is written. ``--force``
overrides only the evidence rule, and the model card says so; the minimum numbers of
cases cannot be overridden, since below them cross-validation says too little.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from device import metrics
from device.errors import SkinScanError
from device.labels import CLASS_CODES

MIN_MALIGNANT = 10
MIN_CASES = 30


class AdaptationRefusedError(SkinScanError):
    """``skinscan adapt`` will not write a bundle; the message says why. Nothing was written."""


class TooFewCasesError(AdaptationRefusedError):
    """Fewer than 30 usable cases, or fewer than 10 malignant ones."""


class OneClassError(AdaptationRefusedError):
    """The cases hold one class only, or no benign or no malignant case."""


class NoImprovementError(AdaptationRefusedError):
    """Cross-validation does not show the adapted head at least as good as the base."""


class OutputExistsError(AdaptationRefusedError):
    """The output folder exists and is not empty."""


def describe_counts(y: np.ndarray) -> str:
    """``mel 12, nv 40`` in model order, classes present only."""
    counts = Counter(CLASS_CODES[int(i)] for i in y)
    return ", ".join(f"{code} {counts[code]}" for code in CLASS_CODES if counts[code])


def check_cases(y: np.ndarray, n_left_out: int = 0) -> None:
    """Refuse too few cases or a single class.

    Args:
        y: class indices of the usable cases (diagnosis known, image passed the gate).
        n_left_out: cases left out before (unreadable, failed the gate, other/unknown),
            named in the message.

    Raises:
        TooFewCasesError: fewer than :data:`MIN_CASES` cases or :data:`MIN_MALIGNANT`
            malignant cases.
        OneClassError: a single class, or only malignant or only benign cases.
    """
    y = np.asarray(y, dtype=np.int64)
    n_malignant = int(metrics.is_malignant(y).sum()) if len(y) else 0
    left = f" ({n_left_out} more were left out, listed above)" if n_left_out else ""
    if len(y) < MIN_CASES or n_malignant < MIN_MALIGNANT:
        raise TooFewCasesError(
            f"too few confirmed cases to adapt: {len(y)} usable, {n_malignant} malignant{left}; "
            f"adaptation needs at least {MIN_CASES} cases of which {MIN_MALIGNANT} malignant "
            f"(have: {describe_counts(y) or 'none'}). Nothing was written"
        )
    if len(np.unique(y)) < 2:
        raise OneClassError(
            f"all {len(y)} cases are {CLASS_CODES[int(y[0])]}: a head cannot be fitted to one "
            "class. Nothing was written"
        )
    if n_malignant == len(y):
        raise OneClassError(
            f"all {len(y)} cases are malignant ({describe_counts(y)}): benign cases are needed "
            "to place the referral threshold. Nothing was written"
        )


def check_evidence(base_auc: float, adapted_auc: float, force: bool) -> str | None:
    """Refuse an adapted head that cross-validation does not show at least as good as the base.

    Returns:
        None when the evidence holds; the override note for the model card when it
        does not and ``force`` is set.

    Raises:
        NoImprovementError: adapted malignant AUC below the base's, without ``force``.
    """
    if np.isfinite(adapted_auc) and np.isfinite(base_auc) and adapted_auc >= base_auc:
        return None
    message = (
        f"cross-validation does not show the adapted head at least as good as the base: "
        f"malignant AUC {adapted_auc:.3f} adapted against {base_auc:.3f} base"
    )
    if not force:
        raise NoImprovementError(
            f"{message}. Nothing was written (--force writes it anyway, and says so on its "
            "model card)"
        )
    return f"Written with --force although {message}."
