"""What the health worker would have seen: Refer, Uncertain or Monitor, per true class group.

Balanced accuracy and AUC score the probabilities; the screen shows one of three tiers
(:func:`device.runtime.decision.decide`). A malignant lesion shown as "Uncertain — refer"
is still sent on, so the miss that matters in the field is a malignant lesion shown as
**Monitor**. This module counts the tiers with the device's own decision rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from device import metrics
from device.runtime.decision import decide
from device.runtime.manifest import Calibration, LabelSpec

TIERS = ("refer", "uncertain", "monitor")


def screen_outcomes(
    labels: np.ndarray,
    probabilities: np.ndarray,
    unfamiliar: np.ndarray,
    bundle_labels: Sequence[LabelSpec],
    calibration: Calibration,
    atypical: np.ndarray | None = None,
) -> dict[str, Any]:
    """Share of each tier among all, malignant, melanoma and benign images.

    Args:
        labels: true class indices (N,).
        probabilities: calibrated probabilities (N, K) in the bundle's label order.
        unfamiliar: whether the familiarity check fired, per image (N,).
        bundle_labels: the bundle's labels, for its decision rule.
        calibration: the bundle's thresholds.
        atypical: whether the frame was not typical enough for Monitor, per image (N,);
            None for none (runs saved before it was recorded).

    Returns:
        ``{"all" | "malignant" | "melanoma" | "benign": {"n", "refer", "uncertain",
        "monitor"}}`` with shares in [0, 1] (NaN where a group is empty), plus
        ``"malignant_shown_as_monitor"``: the count behind the silent misses.
    """
    if atypical is None or len(atypical) == 0:
        atypical = np.zeros(len(unfamiliar), bool)
    tiers = np.array(
        [
            decide(p, bundle_labels, calibration, unfamiliar=bool(u), atypical=bool(a)).risk_tier
            for p, u, a in zip(probabilities, unfamiliar, atypical, strict=True)
        ]
    )
    # The same groups as the sensitivity and specificity figures of device.metrics.
    malignant = metrics.is_malignant(labels)
    melanoma = np.asarray(labels) == metrics.MELANOMA_INDEX
    groups = {"all": np.ones(len(tiers), bool), "malignant": malignant, "melanoma": melanoma}
    groups["benign"] = ~malignant
    out: dict[str, Any] = {}
    for name, mask in groups.items():
        n = int(mask.sum())
        out[name] = {"n": n}
        for tier in TIERS:
            out[name][tier] = float(np.mean(tiers[mask] == tier)) if n else float("nan")
    out["malignant_shown_as_monitor"] = int(np.sum(malignant & (tiers == "monitor")))
    return out


def describe(outcomes: dict[str, Any]) -> str:
    """One line for the terminal: how the malignant lesions and the benign ones were shown."""
    mal, ben = outcomes["malignant"], outcomes["benign"]
    return (
        f"screen: malignant {mal['n']}: refer {mal['refer']:.1%}, uncertain "
        f"{mal['uncertain']:.1%}, monitor {mal['monitor']:.1%} "
        f"({outcomes['malignant_shown_as_monitor']} silent misses); benign {ben['n']}: refer "
        f"{ben['refer']:.1%}, uncertain {ben['uncertain']:.1%}, monitor {ben['monitor']:.1%}"
    )
