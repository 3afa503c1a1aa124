"""Every headline metric per group of a metadata column (``skinscan eval --by COLUMN``).

A group is the set of evaluated images whose CSV row has one value in the column,
for example each acquisition source of HAM10000's ``dataset`` column. Each group
gets the same figures and 95% bootstrap intervals as the whole set, so a model
that is good only on its own cameras shows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from device import metrics

MISSING_GROUP = "unknown"


def grouped_figures(
    labels: np.ndarray,
    probabilities: np.ndarray,
    groups: Sequence[str],
    threshold: float,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Metrics with CIs for each distinct value of ``groups``.

    Args:
        labels: true class indices, shape (N,).
        probabilities: calibrated probabilities, shape (N, 7).
        groups: the group of each image (an empty value counts as ``"unknown"``).
        threshold: the referral threshold for sensitivity and specificity.
        n_boot: bootstrap resamples per group (0 skips the intervals).
        seed: bootstrap seed.

    Returns:
        Group value -> ``n_images``, ``n_malignant``, ``classes_present``, every
        headline metric, ``per_class_recall`` and ``ci95``, in sorted group order.
    """
    names = np.array([g or MISSING_GROUP for g in groups], dtype=object)
    if len(names) != len(labels):
        raise ValueError(f"{len(names)} group values for {len(labels)} images")
    out: dict[str, dict[str, Any]] = {}
    for group in sorted(set(names.tolist())):
        mask = names == group
        y, p = labels[mask], probabilities[mask]
        figures = metrics.evaluate(y, p, threshold, n_boot=n_boot, seed=seed)
        out[group] = {
            "n_images": int(mask.sum()),
            "n_malignant": int(metrics.is_malignant(y).sum()),
            "classes_present": figures["classes_present"],
            **{name: figures[name] for name in metrics.HEADLINE_METRICS},
            "per_class_recall": figures["per_class_recall"],
            "ci95": figures["ci95"],
        }
    return out


def markdown_table(column: str, groups: dict[str, dict[str, Any]]) -> str:
    """A Markdown table of the per-group figures, each with its 95% interval."""
    shown = (
        "balanced_accuracy",
        "malignant_auc",
        "melanoma_nevus_auc",
        "sensitivity",
        "specificity",
        "melanoma_sensitivity",
    )
    lines = [
        f"| {column} | images | malignant | " + " | ".join(shown) + " |",
        "| --- | ---: | ---: | " + " | ".join("---" for _ in shown) + " |",
    ]
    for group, figures in groups.items():
        cells = [_cell(figures.get(name), (figures.get("ci95") or {}).get(name)) for name in shown]
        lines.append(
            f"| {group} | {figures['n_images']} | {figures['n_malignant']} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines) + "\n"


def _cell(value: float | None, ci: Sequence[float | None] | None) -> str:
    if value is None or not np.isfinite(value):
        return "—"
    if ci and None not in ci and all(np.isfinite(c) for c in ci):
        return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
    return f"{value:.3f}"
