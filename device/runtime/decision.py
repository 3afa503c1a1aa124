"""From calibrated probabilities to what the health worker is told.

Risk tiers, checked in this order:
    * ``"refer"``: P(malignant) >= the bundle's referral threshold. Referral wins
      over uncertainty: a possibly malignant lesion is never just "uncertain".
    * ``"uncertain"``: the frame is unlike the training images (the bundle's
      familiarity check, :mod:`device.runtime.familiarity`: "Uncertain — refer"),
      or the top-1 calibrated confidence is below the bundle's uncertainty
      threshold, or the frame is not typical enough of the training images to
      reassure (``atypical``: "Uncertain — retake or refer").
    * ``"monitor"``: otherwise. A Monitor reassures, so it needs a frame well inside
      the training family: a familiarity score at most :data:`MONITOR_FAMILIARITY_SHARE`
      of the bundle's unfamiliar threshold. Photos of no lesion (skin, ink, plasters,
      drawn phantoms) score between the two and were shown as a confident Monitor
      (issue 28; the non-lesion set in docs/quality-gate.md).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from device.labels import HAM10000_CLASSES
from device.result_text import refers
from device.runtime.manifest import Calibration, LabelSpec

log = logging.getLogger(__name__)

RiskTier = Literal["refer", "uncertain", "monitor"]
# Calibrated on the non-lesion set's training portion and HAM10000 validation images
# (docs/quality-gate.md): the largest share at which no training non-lesion got Monitor.
MONITOR_FAMILIARITY_SHARE = 0.6
RISK_TIERS: tuple[str, ...] = ("refer", "uncertain", "monitor")
_NAMES = {d.code: d.name for d in HAM10000_CLASSES}


@dataclass(frozen=True)
class RankedClass:
    """One entry of the top-k list.

    Attributes:
        index: model output index.
        code: HAM10000 code, e.g. "mel".
        name: human name from :mod:`device.labels`, e.g. "Melanoma".
        probability: calibrated probability.
        malignant: whether the class counts as malignant.
    """

    index: int
    code: str
    name: str
    probability: float
    malignant: bool


@dataclass(frozen=True)
class Decision:
    """The result shown on screen.

    Attributes:
        label: code of the top-1 class.
        name: human name of the top-1 class.
        confidence: calibrated probability of the top-1 class.
        p_malignant: sum of the probabilities of the malignant classes.
        risk_tier: "refer", "uncertain" or "monitor".
        top3: the three most probable classes, most probable first.
        probabilities: class code -> calibrated probability, all classes.
        unfamiliar: the frame's features lie outside what the model was trained on.
        atypical: not typical enough for Monitor: the frame's familiarity score is above
            the Monitor limit, or its centre shows colours no lesion photo has much of
            (:func:`device.imaging.lesion_presence.colour_doubt`: faint ink, a plaster's pad).
    """

    label: str
    name: str
    confidence: float
    p_malignant: float
    risk_tier: RiskTier
    top3: tuple[RankedClass, ...]
    probabilities: dict[str, float]
    unfamiliar: bool = False
    atypical: bool = False

    @property
    def label_index(self) -> int:
        """Model output index of the top-1 class."""
        return self.top3[0].index


def decide(
    probabilities: np.ndarray,
    labels: Sequence[LabelSpec],
    calibration: Calibration,
    unfamiliar: bool = False,
    atypical: bool = False,
) -> Decision:
    """Turn calibrated probabilities into a label, a confidence and a risk tier.

    Args:
        probabilities: calibrated class probabilities, shape (K,), in label order.
        labels: the bundle's labels (code, name, malignant flag).
        calibration: the bundle's thresholds.
        unfamiliar: the familiarity check fired on this frame.
        atypical: the frame is not typical enough for Monitor (:func:`is_atypical`, or
            :func:`device.imaging.lesion_presence.colour_doubt`).

    Returns:
        The decision, with the top-3 classes named for a health worker.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.shape != (len(labels),):
        raise ValueError(f"probabilities must have shape ({len(labels)},), got {p.shape}")
    # Stable sort so ties resolve to the lower index, as argmax does.
    order = np.argsort(-p, kind="stable")
    ranked = tuple(
        RankedClass(
            index=int(i),
            code=labels[i].code,
            name=_NAMES.get(labels[i].code, labels[i].name),
            probability=float(p[i]),
            malignant=labels[i].malignant,
        )
        for i in order[:3]
    )
    p_malignant = float(sum(p[i] for i, label in enumerate(labels) if label.malignant))
    top = ranked[0]
    tier: RiskTier
    if refers(p_malignant, calibration.referral_threshold):
        tier = "refer"
    elif unfamiliar or atypical or top.probability < calibration.uncertainty_threshold:
        tier = "uncertain"
    else:
        tier = "monitor"
    return Decision(
        label=top.code,
        name=top.name,
        confidence=top.probability,
        p_malignant=p_malignant,
        risk_tier=tier,
        top3=ranked,
        probabilities={label.code: float(p[i]) for i, label in enumerate(labels)},
        unfamiliar=bool(unfamiliar),
        atypical=bool(atypical),
    )


def is_atypical(score: float, unfamiliar_threshold: float) -> bool:
    """Whether a familiarity score is too high for a Monitor (see the module doc)."""
    return float(score) > MONITOR_FAMILIARITY_SHARE * float(unfamiliar_threshold)
