"""The shift benchmark: a bundle's figures under each acquisition shift, beside unshifted.

``skinscan eval --shifts`` runs the device pipeline on a labelled folder once per
shift of :data:`device.evaluation.shifts.SHIFTS` and reports, per shift,
balanced accuracy, malignant AUC, sensitivity and specificity at the bundle's
referral threshold (95% bootstrap CIs), how often the familiarity check said
"Uncertain — refer", and the change from unshifted. It also states the
*shift-safe threshold*: the highest referral threshold that keeps malignant
sensitivity >= 0.85 under every realistic colour and resolution shift, and
which shift is the worst. That is only meaningful on the validation split;
``skinscan convert --apply-shift-threshold`` writes it into a bundle.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from device import metrics
from device.evaluation.runner import EvalRun, image_folders, read_labelled_csv, run_shifted
from device.evaluation.shifts import REALISTIC_THRESHOLD_SHIFTS, SHIFTS, UNSHIFTED, Shift

log = logging.getLogger(__name__)

MIN_SENSITIVITY_UNDER_SHIFT = 0.85
TABLE_METRICS = ("balanced_accuracy", "malignant_auc", "sensitivity", "specificity")


def highest_threshold_for_sensitivity(p_malignant: np.ndarray, minimum: float) -> float:
    """The highest threshold t with mean(p_malignant >= t) >= ``minimum`` (malignant cases)."""
    scores = np.sort(np.asarray(p_malignant, dtype=np.float64))[::-1]
    if len(scores) == 0:
        return math.nan
    needed = math.ceil(minimum * len(scores) - 1e-9)
    return float(scores[max(needed, 1) - 1])


def shift_safe_threshold(
    runs: dict[str, EvalRun],
    shifts: Sequence[Shift],
    current: float,
    minimum: float = MIN_SENSITIVITY_UNDER_SHIFT,
    realistic: Sequence[str] = REALISTIC_THRESHOLD_SHIFTS,
) -> dict[str, Any]:
    """The referral threshold that keeps sensitivity >= ``minimum`` under realistic shifts.

    Returns:
        ``threshold`` (min of ``current`` and every realistic shift's highest safe
        threshold), ``worst_shift``, per-shift safe thresholds, and the rule in words.
    """
    per_shift: dict[str, float] = {}
    for shift in shifts:
        if shift.name not in realistic or shift.name not in runs:
            continue
        run = runs[shift.name]
        malignant = metrics.is_malignant(run.labels)
        p = metrics.malignant_probability(run.probabilities)[malignant]
        per_shift[shift.name] = highest_threshold_for_sensitivity(p, minimum)
    if not per_shift:
        return {"threshold": current, "worst_shift": None, "per_shift": {}, "rule": "no shifts"}
    worst = min(per_shift, key=per_shift.get)
    return {
        "threshold": float(min(current, per_shift[worst])),
        "current_threshold": float(current),
        "worst_shift": worst,
        "per_shift": per_shift,
        "minimum_sensitivity": minimum,
        "shifts": list(per_shift),
        "rule": (
            f"highest threshold keeping malignant sensitivity >= {minimum} under each of "
            f"{', '.join(per_shift)}, and never above the bundle's own"
        ),
    }


def _figures(run: EvalRun, threshold: float, n_boot: int, seed: int) -> dict[str, Any]:
    figures = metrics.evaluate(run.labels, run.probabilities, threshold, n_boot=n_boot, seed=seed)
    return {
        "n_images": int(len(run.labels)),
        "n_skipped": len(run.skipped),
        **{name: figures[name] for name in metrics.HEADLINE_METRICS},
        "ci95": figures["ci95"],
        "unfamiliar_rate": float(np.mean(run.unfamiliar)) if len(run.unfamiliar) else 0.0,
    }


def evaluate_shifts(
    csv_path: str | Path,
    images_dir: str | Path | Sequence[str | Path],
    bundle_dir: str | Path | None = None,
    *,
    shifts: Sequence[Shift] = SHIFTS,
    split: str | None = None,
    workers: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    runtime: str | None = None,
) -> dict[str, Any]:
    """Run the shift benchmark; returns the JSON-ready report (see the module docstring)."""
    from device.runtime.bundle import DEFAULT_BUNDLE_DIR, load_bundle

    bundle_path = Path(bundle_dir) if bundle_dir is not None else DEFAULT_BUNDLE_DIR
    bundle = load_bundle(bundle_path, runtime=runtime)
    if UNSHIFTED not in shifts:
        shifts = (UNSHIFTED, *shifts)
    items, skipped_rows = read_labelled_csv(csv_path, images_dir, split)
    names = [s.name for s in shifts]
    runs = run_shifted(bundle_path, items, names, workers=workers, runtime=runtime, seed=seed)
    threshold = bundle.manifest.calibration.referral_threshold
    rows: dict[str, Any] = {}
    for shift in shifts:
        rows[shift.name] = {
            "family": shift.family,
            "description": shift.description,
            **_figures(runs[shift.name], threshold, n_boot, seed),
        }
    base = rows[UNSHIFTED.name]
    for row in rows.values():
        row["change"] = {name: row[name] - base[name] for name in TABLE_METRICS}
    report = {
        "bundle": {"bundle_id": bundle.bundle_id, "path": str(bundle_path)},
        "metadata": str(csv_path),
        "images": " ".join(str(p) for p in image_folders(images_dir)),
        "split": split,
        "referral_threshold": threshold,
        "n_boot": n_boot,
        "seed": seed,
        "n_skipped_rows": len(skipped_rows),
        "seconds_total": next(iter(runs.values())).seconds if runs else 0.0,
        "shifts": rows,
        "shift_safe_threshold": shift_safe_threshold(runs, shifts, threshold),
        "under_shift": {
            "worst_sensitivity": min(rows[n]["sensitivity"] for n in names),
            "worst_sensitivity_shift": min(names, key=lambda n: rows[n]["sensitivity"]),
            "largest_auc_drop": max(-rows[n]["change"]["malignant_auc"] for n in names),
            "mean_auc_drop": float(
                np.mean([-rows[n]["change"]["malignant_auc"] for n in names if n != "none"])
            ),
        },
    }
    return metrics.json_safe(report)


def _cell(row: dict[str, Any], name: str) -> str:
    value = row.get(name)
    ci = (row.get("ci95") or {}).get(name)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if ci and None not in ci:
        return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
    return f"{value:.3f}"


def markdown_table(report: dict[str, Any]) -> str:
    """The report as a Markdown table, one row per shift."""
    lines = [
        f"Shift benchmark of `{report['bundle']['bundle_id']}` on "
        f"{report.get('split') or 'all rows'} of `{Path(report['metadata']).name}` "
        f"(threshold {report['referral_threshold']:.3f}; 95% bootstrap CIs, "
        f"{report['n_boot']} resamples).",
        "",
        "| shift | balanced accuracy | malignant AUC | ΔAUC | sensitivity | specificity "
        "| unfamiliar |",
        "| --- | --- | --- | ---: | --- | --- | ---: |",
    ]
    for name, row in report["shifts"].items():
        lines.append(
            f"| {name}: {row['description']} | {_cell(row, 'balanced_accuracy')} | "
            f"{_cell(row, 'malignant_auc')} | {row['change']['malignant_auc']:+.3f} | "
            f"{_cell(row, 'sensitivity')} | {_cell(row, 'specificity')} | "
            f"{100 * row['unfamiliar_rate']:.1f}% |"
        )
    safe = report["shift_safe_threshold"]
    if safe.get("worst_shift"):
        lines += [
            "",
            f"Shift-safe threshold ({safe['rule']}): **{safe['threshold']:.3f}**; worst "
            f"shift {safe['worst_shift']} (its own safe threshold "
            f"{safe['per_shift'][safe['worst_shift']]:.3f}).",
        ]
    return "\n".join(lines) + "\n"


def save_chart(report: dict[str, Any], path: str | Path) -> Path | None:
    """Bar chart of malignant AUC and sensitivity per shift with CIs; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no chart")
        return None
    names = list(report["shifts"])
    rows = [report["shifts"][n] for n in names]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(11, 4.6), dpi=110)
    for offset, metric, colour in (
        (-0.2, "malignant_auc", "#3b6ea8"),
        (0.2, "sensitivity", "#d9822b"),
    ):
        values = np.array([r[metric] for r in rows])
        cis = np.array([r["ci95"].get(metric) or [v, v] for r, v in zip(rows, values, strict=True)])
        err = np.abs(np.stack([values - cis[:, 0], cis[:, 1] - values]))
        label = "malignant AUC" if metric == "malignant_auc" else "sensitivity at threshold"
        ax.bar(x + offset, values, 0.4, yerr=err, capsize=2, color=colour, label=label)
    ax.axhline(
        MIN_SENSITIVITY_UNDER_SHIFT, color="#b22222", lw=1, ls="--", label="sensitivity 0.85"
    )
    ax.set_xticks(x, names, rotation=40, ha="right", fontsize=8)
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("on the split, 95% CI")
    ax.set_title(
        f"{report['bundle']['bundle_id']} under acquisition shifts "
        f"({report.get('split') or 'all rows'}; HAM10000, Tschandl et al. 2018)",
        fontsize=10,
    )
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.32), ncol=3, fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
