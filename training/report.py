"""The evaluation report of a run: metrics with CIs, subgroups, and charts.

Reads the run folder (logits.npz, calibration.json, split.csv, state.json) and
writes ``metrics.json``, ``report.md`` and PNG charts. All figures are on the
project's lesion-grouped test split; the temperature and thresholds were fitted
on validation only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from device.labels import CLASS_CODES
from device.metrics import (
    balanced_accuracy,
    confusion_matrix,
    ece,
    evaluate,
    is_malignant,
    json_safe,
    malignant_auc,
    malignant_probability,
    sensitivity,
    specificity,
)
from training.calibration import softmax
from training.data import split_seed_of

CITATION = (
    "Trained and evaluated on HAM10000 (Tschandl, Rosendahl & Kittler, *Scientific Data* 5, "
    "180161, 2018; CC BY-NC 4.0)."
)
AGE_BANDS = (
    (0, 30, "<30"),
    (30, 45, "30-44"),
    (45, 60, "45-59"),
    (60, 75, "60-74"),
    (75, 200, "75+"),
)


def age_band(age: str) -> str:
    """The age band label of an age string from the metadata ('' or non-numeric: 'unknown')."""
    try:
        value = float(age)
    except ValueError:
        return "unknown"
    return next(label for low, high, label in AGE_BANDS if low <= value < high)


def subgroup_metrics(
    rows: list[dict[str, str]],
    labels: np.ndarray,
    probs: np.ndarray,
    threshold: float,
    skin_bands: list[str] | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Metrics per localization, sex and age band on the test split.

    Also per acquisition source when the rows have a ``dataset`` column, and per
    skin-tone band (training.skin_tone) when ``skin_bands`` gives one per row; then each
    source's entry also counts its images per skin-tone band (``skin_tone_counts``).
    """
    keys = {
        "localization": [r.get("localization") or "unknown" for r in rows],
        "sex": [r.get("sex") or "unknown" for r in rows],
        "age_band": [age_band(r.get("age", "")) for r in rows],
    }
    if any(r.get("dataset") for r in rows):
        keys["dataset"] = [r.get("dataset") or "unknown" for r in rows]
    if skin_bands is not None:
        keys["skin_tone"] = list(skin_bands)
    bands_arr = np.array(skin_bands) if skin_bands is not None else None
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name, values in keys.items():
        groups: dict[str, dict[str, Any]] = {}
        values_arr = np.array(values)
        for group in sorted(set(values)):
            mask = values_arr == group
            y, p = labels[mask], probs[mask]
            groups[group] = {
                "n": int(mask.sum()),
                "n_malignant": int(is_malignant(y).sum()),
                "balanced_accuracy": balanced_accuracy(y, p),
                "malignant_auc": malignant_auc(y, p),
                "sensitivity": sensitivity(y, p, threshold),
                "specificity": specificity(y, p, threshold),
            }
            if name == "dataset" and bands_arr is not None:
                bands = bands_arr[mask]
                groups[group]["skin_tone_counts"] = {
                    band: int(np.sum(bands == band)) for band in sorted(set(bands.tolist()))
                }
        out[name] = groups
    return out


def _plot_confusion(path: Path, labels: np.ndarray, probs: np.ndarray) -> None:
    import matplotlib.pyplot as plt

    matrix = confusion_matrix(labels, probs).astype(np.float64)
    normalised = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    image = ax.imshow(normalised, cmap="viridis", vmin=0, vmax=1)
    for i in range(len(CLASS_CODES)):
        for j in range(len(CLASS_CODES)):
            colour = "black" if normalised[i, j] > 0.6 else "white"
            ax.text(
                j,
                i,
                f"{normalised[i, j]:.2f}\n({int(matrix[i, j])})",
                ha="center",
                va="center",
                fontsize=7,
                color=colour,
            )
    ax.set_xticks(range(len(CLASS_CODES)), CLASS_CODES)
    ax.set_yticks(range(len(CLASS_CODES)), CLASS_CODES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix, test split (row-normalised recall)")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _roc_points(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-scores, kind="stable")
    positive = positive[order]
    tpr = np.concatenate([[0], np.cumsum(positive) / max(1, positive.sum())])
    fpr = np.concatenate([[0], np.cumsum(~positive) / max(1, (~positive).sum())])
    return fpr, tpr


def _plot_roc(path: Path, labels: np.ndarray, probs: np.ndarray, threshold: float) -> None:
    import matplotlib.pyplot as plt

    positive = is_malignant(labels)
    scores = malignant_probability(probs)
    fpr, tpr = _roc_points(positive, scores)
    sens = sensitivity(labels, probs, threshold)
    spec = specificity(labels, probs, threshold)
    fig, ax = plt.subplots(figsize=(5.2, 5))
    ax.plot(fpr, tpr, lw=2, label=f"AUC {malignant_auc(labels, probs):.3f}")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.scatter(
        [1 - spec],
        [sens],
        c="crimson",
        zorder=3,
        label=f"referral threshold {threshold:.2f}\nsens {sens:.2f}, spec {spec:.2f}",
    )
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title("Malignant vs benign ROC, test split")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _reliability_bins(labels: np.ndarray, probs: np.ndarray, bins: int = 10):
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(conf, edges) - 1, 0, bins - 1)
    centres, accs, counts = [], [], []
    for b in range(bins):
        mask = idx == b
        if mask.any():
            centres.append(conf[mask].mean())
            accs.append(correct[mask].mean())
            counts.append(mask.sum())
    return np.array(centres), np.array(accs), np.array(counts)


def _plot_reliability(path: Path, labels, raw_probs, calibrated_probs, temperature) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 5))
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="perfect calibration")
    for probs, name, marker in (
        (raw_probs, "T = 1", "o"),
        (calibrated_probs, f"T = {temperature:.2f}", "s"),
    ):
        centres, accs, _ = _reliability_bins(labels, probs)
        ax.plot(centres, accs, marker=marker, label=f"{name}: ECE {ece(labels, probs):.3f}")
    ax.set_xlabel("top-1 confidence")
    ax.set_ylabel("top-1 accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title("Reliability, test split")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_training(path: Path, history: list[dict[str, Any]]) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    steps = np.arange(1, len(history) + 1)
    fig, ax1 = plt.subplots(figsize=(6.4, 4))
    ax1.plot(steps, [h["loss"] for h in history], c="tab:blue", marker="o", label="train loss")
    ax1.set_xlabel("epoch (all phases)")
    ax1.set_ylabel("train loss (weighted, smoothed CE)", color="tab:blue")
    ax2 = ax1.twinx()
    ax2.plot(
        steps,
        [h["val_balanced_accuracy"] for h in history],
        c="tab:orange",
        marker="s",
        label="val balanced accuracy",
    )
    ax2.set_ylabel("val balanced accuracy", color="tab:orange")
    # One label per phase, centred over its epochs just above the plot, so short
    # phases (a one-epoch head phase) cannot collide with their neighbours.
    phases = [h["phase"] for h in history]
    starts = [i for i in range(len(phases)) if i == 0 or phases[i] != phases[i - 1]]
    for start, end in zip(starts, [*starts[1:], len(phases)], strict=True):
        if start:
            ax1.axvline(start + 0.5, c="grey", ls=":", lw=1)
        ax1.text(
            (start + 1 + end) / 2,
            1.01,
            phases[start],
            transform=ax1.get_xaxis_transform(),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    best = int(np.argmax([h["val_balanced_accuracy"] for h in history]))
    ax2.scatter(
        [best + 1],
        [history[best]["val_balanced_accuracy"]],
        s=160,
        facecolors="none",
        edgecolors="tab:red",
        zorder=3,
    )
    ax1.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax1.set_title(
        f"Training curves: best val balanced accuracy "
        f"{history[best]['val_balanced_accuracy']:.3f}, epoch {best + 1} (circled)",
        pad=16,
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _fmt(metrics: dict[str, Any], name: str) -> str:
    value = metrics.get(name)
    low, high = metrics.get("ci95", {}).get(name, (None, None))
    if value is None:
        return "n/a"
    if low is None:
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def write_report(run_dir: Path, n_boot: int = 1000) -> dict[str, Any]:
    """Compute the run's test metrics, subgroups and charts; write metrics.json and report.md."""
    import matplotlib

    matplotlib.use("Agg")
    run_dir = Path(run_dir)
    logits = np.load(run_dir / "logits.npz")
    calibration = json.loads((run_dir / "calibration.json").read_text())
    state = json.loads((run_dir / "state.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    temperature = calibration["temperature"]
    threshold = calibration["referral_threshold"]
    test_labels = logits["test_labels"]
    raw = softmax(logits["test_logits"])
    calibrated = softmax(logits["test_logits"], temperature)
    test = json_safe(evaluate(test_labels, calibrated, threshold, n_boot=n_boot))
    val = json_safe(
        evaluate(
            logits["val_labels"], softmax(logits["val_logits"], temperature), threshold, n_boot=0
        )
    )
    skipped = _skipped(run_dir)
    split_rows = _read_split(run_dir)
    rows = [r for r in split_rows if r["split"] == "test" and r["image_id"] not in skipped]
    _check_alignment(rows, test_labels)
    subgroups = json_safe(subgroup_metrics(rows, test_labels, calibrated, threshold))
    layout = _layout(run_dir)
    metrics = {
        "split": f"test (lesion-grouped, seed {split_seed_of(config)})",
        "model": "float Keras",
        "temperature": temperature,
        "referral_threshold": threshold,
        "ece_before_temperature": ece(test_labels, raw),
        "ece_after_temperature": ece(test_labels, calibrated),
        "test": test,
        "val": val,
        "subgroups": subgroups,
        "train_seconds": state.get("elapsed_s"),
        "best_epoch": state.get("best_epoch"),
        "data": {
            "images": {
                split: sum(r["split"] == split and r["image_id"] not in skipped for r in split_rows)
                for split in ("train", "val", "test")
            },
            "skipped": [{"image_id": k, "reason": v} for k, v in sorted(skipped.items())],
            **layout,
        },
        "citation": citation_of(layout),
    }
    (run_dir / "metrics.json").write_text(json.dumps(json_safe(metrics), indent=2))
    _plot_confusion(run_dir / "confusion_matrix.png", test_labels, calibrated)
    _plot_roc(run_dir / "roc_malignant.png", test_labels, calibrated, threshold)
    _plot_reliability(run_dir / "reliability.png", test_labels, raw, calibrated, temperature)
    has_history = bool(state.get("history"))
    if has_history:
        _plot_training(run_dir / "training_curves.png", state["history"])
    (run_dir / "report.md").write_text(_markdown(metrics, config, training_curves=has_history))
    return metrics


def _layout(run_dir: Path) -> dict[str, str]:
    """The data layout and what the split was grouped by (older runs: HAM10000, lesions)."""
    path = run_dir / "provenance.json"
    raw = json.loads(path.read_text()) if path.is_file() else {}
    return {
        "layout": raw.get("data_layout", "ham10000"),
        "split_grouping": raw.get("split_grouping", "lesion_id"),
        "dataset": raw.get("dataset", ""),
    }


def citation_of(layout: dict[str, str]) -> str:
    """The data citation of a run's report: HAM10000's, plus every other archive it read."""
    if layout["layout"] == "ham10000" or not layout.get("dataset"):
        return CITATION
    return f"Trained and evaluated on {layout['dataset']}."


def _skipped(run_dir: Path) -> dict[str, str]:
    """Image ids the run skipped (unreadable, missing, unknown dx) and why."""
    path = run_dir / "provenance.json"
    if not path.is_file():
        return {}
    return {s["image_id"]: s["reason"] for s in json.loads(path.read_text()).get("skipped", [])}


def _check_alignment(rows: list[dict[str, str]], labels: np.ndarray) -> None:
    """Subgroups pair split rows with logits by position: refuse to pair them wrongly."""
    expected = np.array([CLASS_CODES.index(r["dx"]) for r in rows], dtype=np.int64)
    if len(expected) != len(labels) or not np.array_equal(expected, labels):
        raise ValueError(
            f"split.csv test rows ({len(expected)}) do not line up with the saved test logits "
            f"({len(labels)}); rerun the training's final evaluation"
        )


def _read_split(run_dir: Path) -> list[dict[str, str]]:
    from training.data import read_split_csv

    return read_split_csv(run_dir / "split.csv")


def _markdown(metrics: dict[str, Any], config: dict[str, Any], training_curves: bool = True) -> str:
    test = metrics["test"]
    lines = [
        f"# Evaluation report: {Path(config['run_dir']).name}",
        "",
        metrics.get("citation", CITATION),
        "",
        f"Float Keras model on the {metrics['split']}: {test['n_images']} images. "
        "Temperature and referral threshold were fitted on the validation split only. "
        "95% bootstrap CIs (1,000 resamples) in brackets.",
        "",
        "| metric | value [95% CI] |",
        "| --- | --- |",
    ]
    for name in (
        "balanced_accuracy",
        "accuracy",
        "malignant_auc",
        "sensitivity",
        "specificity",
        "melanoma_sensitivity",
        "ece",
    ):
        lines.append(f"| `{name}` | {_fmt(test, name)} |")
    lines += [
        "",
        f"Referral threshold on P(malignant): {metrics['referral_threshold']:.3f} "
        f"(chosen for sensitivity >= {config['min_sensitivity']} on validation"
        + (
            f", at the one-sided {config['threshold_confidence']:.0%} Clopper-Pearson "
            "lower bound). "
            if config.get("threshold_confidence")
            else "). "
        )
        + f"Temperature {metrics['temperature']:.3f}: ECE {metrics['ece_before_temperature']:.3f} "
        f"before, {metrics['ece_after_temperature']:.3f} after.",
        "",
        "## Per class",
        "",
        "| class | recall | precision |",
        "| --- | --- | --- |",
    ]
    for code in CLASS_CODES:
        recall = test["per_class_recall"].get(code)
        precision = test["per_class_precision"].get(code)
        lines.append(
            f"| {code} | {recall if recall is None else f'{recall:.3f}'} | "
            f"{precision if precision is None else f'{precision:.3f}'} |"
        )
    lines += ["", *_data_and_recipe(metrics["data"], config)]
    lines += ["", "## Subgroups (test split)", ""]
    for name, groups in metrics["subgroups"].items():
        lines += [
            f"### {name}",
            "",
            "| group | n | malignant | balanced acc | malignant AUC | sens | spec |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for group, m in groups.items():
            cells = [m["balanced_accuracy"], m["malignant_auc"], m["sensitivity"], m["specificity"]]
            text = " | ".join("n/a" if v is None else f"{v:.2f}" for v in cells)
            lines.append(f"| {group} | {m['n']} | {m['n_malignant']} | {text} |")
        lines.append("")
    lines += [
        "## Charts",
        "",
        "![confusion](confusion_matrix.png) ![roc](roc_malignant.png)",
        "![reliability](reliability.png)"
        + (" ![training](training_curves.png)" if training_curves else ""),
        "",
        f"Training time: {(metrics['train_seconds'] or 0) / 60:.1f} min; best epoch "
        f"{metrics['best_epoch']}.",
    ]
    return "\n".join(lines) + "\n"


def _data_and_recipe(data: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """Report sections: what went in (and what was skipped), and how it was trained."""
    images = data["images"]
    skipped = data["skipped"]
    lines = [
        "## Data",
        "",
        f"Images used: train {images['train']}, val {images['val']}, test {images['test']}. "
        f"Skipped: {len(skipped)}.",
    ]
    shown = 20
    for item in skipped[:shown]:
        lines.append(f"- `{item['image_id']}`: {item['reason']}")
    if len(skipped) > shown:
        lines.append(f"- ... and {len(skipped) - shown} more (all in provenance.json)")
    grouping = data.get("split_grouping", "lesion_id")
    lines += ["", f"Data layout `{data.get('layout', 'ham10000')}`; split grouped by `{grouping}`."]
    # One entry per archive ("lesion_id; patient_id"): warn if any of them is image-level.
    if any(part.strip() not in ("lesion_id", "patient_id") for part in grouping.split(";")):
        from training.archives import IMAGE_LEVEL_WARNING

        lines += ["", f"**WARNING: {IMAGE_LEVEL_WARNING}.**"]
    spec = config.get("preprocessing", {})
    phases = [
        ("head only", config.get("head_epochs", 0), config.get("head_lr"), None),
        (
            f"from {config.get('first_trainable_block')}",
            config.get("finetune_epochs", 0),
            config.get("finetune_lr"),
            config.get("head_lr_multiplier", 1.0),
        ),
        (
            f"from {config.get('deep_first_trainable_block')}",
            config.get("deep_epochs", 0),
            config.get("deep_lr"),
            config.get("head_lr_multiplier", 1.0),
        ),
    ]
    lines += [
        "",
        "## Recipe",
        "",
        f"- Backbone {config.get('backbone')}, input {config.get('input_size')} px, "
        f"preprocessing spec version {spec.get('version')} "
        f"(hair removal {'on' if spec.get('hair_removal') else 'off'}, crop "
        f"{spec.get('crop')}), dropout {config.get('dropout')}, batch {config.get('batch_size')}.",
        f"- Loss: cross-entropy, class weighting `{config.get('class_weighting')}`, label "
        f"smoothing {config.get('label_smoothing')}; AdamW weight decay "
        f"{config.get('weight_decay')}; BatchNorm statistics frozen throughout.",
    ]
    distribution = config.get("distribution")
    if distribution:
        lines.append(
            f"- Distributed: {distribution['strategy']} over {distribution['workers']} workers, "
            f"{distribution['replicas']} replicas; global batch "
            f"{distribution['global_batch_size']}, learning rates x{distribution['lr_scale']:g} "
            f"({distribution['lr_scaling']} scaling; the peak rates below are before scaling)."
        )
    for name, epochs, lr, multiplier in phases:
        if epochs:
            head = "" if multiplier is None else f", head at {multiplier:g}x"
            lines.append(f"- Phase {name}: up to {epochs} epochs, peak lr {lr:g}{head}.")
    lines.append(
        f"- Early stopping on validation balanced accuracy, patience {config.get('patience')}; "
        f"augmentation {config.get('augment')}."
    )
    return lines
