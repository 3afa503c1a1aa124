"""What a result says, from one rule: the referral comparison and the figures shown with it.

The device screen, the history screen and the clinic page all show P(malignant)
beside the referral threshold and a risk tier. Rounded separately, the figures can
contradict the tier ("P(malignant) 10%", "refer at ≥ 10%" and a green Monitor for
P 0.095 against 0.097). Here the comparison the decision makes
(:func:`refers`, used by :func:`device.runtime.decision.decide`) and the text of
both figures come from one function, :func:`referral_figures`, which shows as many
decimals as it takes for the shown figures to compare as the exact ones do.

No numpy, no pygame: the renderer, the app and the clinic all import it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Decimals of a percentage tried in turn; beyond the last, rounding is directed.
_DECIMALS = (0, 1, 2)
# The threshold is never shown with fewer decimals than this: "9.7%", not "10%".
_MIN_THRESHOLD_DECIMALS = 1
CLOSEST_CLASS_CAPTION = "Closest class (uncertain)"


def refers(p_malignant: float, referral_threshold: float) -> bool:
    """The referral rule: P(malignant) at or above the bundle's referral threshold."""
    return float(p_malignant) >= float(referral_threshold)


@dataclass(frozen=True)
class ReferralFigures:
    """P(malignant) and the referral threshold as shown, and how they compare.

    Attributes:
        p_text: P(malignant) as a percentage, e.g. "9.5%".
        threshold_text: the referral threshold as a percentage, e.g. "9.7%".
        above: :func:`refers` on the exact values; the shown figures compare the same way.
    """

    p_text: str
    threshold_text: str
    above: bool

    @property
    def relation(self) -> str:
        """ "≥" when the lesion is at or above the referral line, else "<"."""
        return "≥" if self.above else "<"

    @property
    def comparison(self) -> str:
        """The comparison the code makes, in words, e.g. "below the referral line 9.7%"."""
        side = "at or above" if self.above else "below"
        return f"{side} the referral line {self.threshold_text}"

    @property
    def threshold_label(self) -> str:
        """The label of the threshold mark, e.g. "refer at ≥ 9.7%"."""
        return f"refer at ≥ {self.threshold_text}"


def _text(steps: int, decimals: int) -> tuple[float, str]:
    number = steps / 10**decimals
    return number, f"{number:.{decimals}f}%"


def _percent(value: float, decimals: int) -> tuple[float, str]:
    """``value`` (a probability in [0, 1]) as a rounded percentage: (number shown, text)."""
    steps = math.floor(value * 100 * 10**decimals + 0.5)
    return _text(min(max(steps, 0), 100 * 10**decimals), decimals)


def referral_figures(
    p_malignant: float, referral_threshold: float, min_decimals: int = 0
) -> ReferralFigures:
    """P(malignant) and the threshold as text that agrees with :func:`refers`.

    The threshold gets at least one decimal; P(malignant) the fewest decimals (0, 1,
    2) at which the shown P compares with the shown threshold as the exact values do
    (when P needs two, so does the threshold). Closer than that, both are shown with
    two decimals rounded away from each other, which keeps the order: P below the
    line is rounded down and the line up, P at or above it the other way round.

    Args:
        p_malignant: P(malignant) in [0, 1].
        referral_threshold: the bundle's referral threshold in [0, 1].
        min_decimals: fewest decimals of P (the clinic page shows at least one).
    """
    p = min(max(float(p_malignant), 0.0), 1.0)
    t = min(max(float(referral_threshold), 0.0), 1.0)
    above = refers(p_malignant, referral_threshold)
    for decimals in (d for d in _DECIMALS if d >= min_decimals):
        t_decimals = max(decimals, _MIN_THRESHOLD_DECIMALS)
        shown_p, p_text = _percent(p, decimals)
        shown_t, t_text = _percent(t, t_decimals)
        if (shown_p >= shown_t) == above:
            return ReferralFigures(p_text, t_text, above)
    last = _DECIMALS[-1]
    scale = 100 * 10**last
    if above:
        p_steps, t_steps = math.ceil(p * scale), math.floor(t * scale)
        p_steps = max(p_steps, t_steps)
    else:
        p_steps, t_steps = math.floor(p * scale), math.ceil(t * scale)
        p_steps = min(p_steps, t_steps - 1)
    return ReferralFigures(_text(p_steps, last)[1], _text(t_steps, last)[1], above)


def percent(value: float) -> str:
    """A class probability as a whole percentage, e.g. "88%"."""
    return _percent(min(max(float(value), 0.0), 1.0), 0)[1]


def closest_class_line(name: str) -> str:
    """What an Uncertain result says about its top class: a name, no confidence."""
    return f"closest class: {name}"
