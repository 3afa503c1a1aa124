"""What the leave-one-source-out benchmark compares: its folds' figures, the training
candidates, their acquisition augmentation, and how a figure is printed.

Shared by the screening protocol (:mod:`training.source_bench`) and the full folds
(:mod:`training.source_folds`), so neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_FOLDS = ("rosendahl", "vidir_modern", "isic-archive")
FOLD_FIGURES = (
    "balanced_accuracy",
    "malignant_auc",
    "melanoma_nevus_auc",
    "sensitivity",
    "specificity",
    "melanoma_sensitivity",
)


@dataclass(frozen=True)
class Candidate:
    """One training recipe as the screening protocol can express it.

    Attributes:
        name: short name used in reports.
        archives: the archives it trains on (``("ham10000",)``: HAM10000 only); empty: all.
        source_power: source-balancing exponent of :func:`training.sources.balanced_weights`
            (0: sources count by size; 1: every source equally).
        augmented_views: extra randomly augmented copies of every training image
            (acquisition shifts and aspect distortion, :data:`ACQUISITION_AUGMENT`).
        description: one line for the report.
    """

    name: str
    archives: tuple[str, ...] = ()
    source_power: float = 0.0
    augmented_views: int = 0
    description: str = ""


CANDIDATES: dict[str, Candidate] = {
    c.name: c
    for c in (
        Candidate("ham", ("ham10000",), 0.0, 0, "HAM10000 only, class-balanced (the v3 data)"),
        Candidate("all", (), 0.0, 0, "every archive, class-balanced"),
        Candidate("all-srcbal", (), 0.5, 0, "every archive, class and source balanced (sqrt)"),
        Candidate(
            "all-srcbal-aug",
            (),
            0.5,
            1,
            "every archive, class and source balanced, plus one augmented view per image",
        ),
    )
}

# Acquisition augmentation for augmented views: another camera's colour, tone curve,
# blur and resolution, JPEG, and the aspect distortion that hides squashed archives.
ACQUISITION_AUGMENT: dict[str, Any] = {
    "crop_scale": (0.6, 1.0),
    "crop_ratio": (0.7, 1.43),
    "zoom": (0.85, 1.15),
    "channel_gain": 0.15,
    "gamma": (0.7, 1.4),
    "blur_probability": 0.4,
    "blur_sigma": 1.5,
    "jpeg_probability": 0.3,
    "hue": 6.0,
    "saturation": 0.25,
}


def _cell(value: Any, ci: Any) -> str:
    if value is None or not np.isfinite(value):
        return "—"
    if ci and None not in ci and all(np.isfinite(c) for c in ci):
        return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
    return f"{value:.3f}"
