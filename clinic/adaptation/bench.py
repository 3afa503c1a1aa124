"""``skinscan bench adapt``: site adaptation on simulated sites from held-out sources.

A *simulated site* is one acquisition source that the base bundle never saw in
training (the leave-one-source-out fold bundle of that source). For each source
and each number of confirmed cases k, ``--draws`` random draws of k cases from
the source are adapted exactly the way ``skinscan adapt`` adapts a clinic:

- the features come once per image through the device pipeline (quality gate,
  preprocessing, int8 trunk: :func:`clinic.adaptation.features.extract_features`);
- the referral threshold and temperature come from repeated stratified
  cross-validation on the k cases alone (:func:`clinic.adaptation.evidence.cross_validate`);
- the head is then fitted on all k cases (:func:`clinic.adaptation.head_fit.fit_head`);
- the adapted head is scored on the source's *other* images, beside the unadapted
  base on the same images.

A draw that ``skinscan adapt`` would refuse (too few cases or malignant cases, one
class, cross-validation not at least as good as the base) is still scored, so the
curve is complete, and counted in the ``refused`` column: on a scanner such a draw
would leave the base bundle in place.

Writes ``adapt.json``, ``adapt.md`` and ``adapt-auc.png`` (malignant AUC against k
per source) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clinic.adaptation.base_head import base_head
from clinic.adaptation.evidence import DEFAULT_REPEATS, cross_validate
from clinic.adaptation.features import extract_features
from clinic.adaptation.head_fit import DEFAULT_L2, fit_head
from clinic.adaptation.rules import AdaptationRefusedError, check_cases, check_evidence
from device import metrics
from device.errors import DatasetError
from device.evaluation.runner import Item, read_labelled_csv
from device.runtime.bundle import load_bundle
from device.runtime.classifier import softmax

log = logging.getLogger(__name__)

DEFAULT_K = (20, 50, 100, 200)
DEFAULT_DRAWS = 20
HAM_METADATA = "HAM10000_metadata.csv"
PLAIN_LABELS = "labels.csv"
FIGURES = (
    "malignant_auc",
    "melanoma_nevus_auc",
    "sensitivity",
    "specificity",
    "melanoma_sensitivity",
)
CITATION = (
    "Data: HAM10000 (Tschandl, Rosendahl & Kittler, Sci. Data 5, 180161, 2018; CC BY-NC 4.0) "
    "and ISIC archive images (Codella et al. 2018; Gutman et al. 2016)."
)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``bench adapt`` arguments."""
    parser.add_argument(
        "--data",
        type=Path,
        action="append",
        required=True,
        help="an archive folder: HAM10000 (HAM10000_metadata.csv, sources from its "
        "'dataset' column) or a plain archive (labels.csv; the folder name is the source)",
    )
    parser.add_argument(
        "--fold",
        action="append",
        required=True,
        metavar="SOURCE=BUNDLE",
        help="a held-out source and the bundle trained without it (repeatable)",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for adapt.json/.md/.png")
    parser.add_argument("--k", type=int, nargs="+", default=list(DEFAULT_K), help="case counts")
    parser.add_argument("--draws", type=int, default=DEFAULT_DRAWS, help="random draws per k")
    parser.add_argument(
        "--repeats",
        type=int,
        default=DEFAULT_REPEATS,
        help="cross-validation repeats per draw (as skinscan adapt)",
    )
    parser.add_argument("--l2", type=float, default=DEFAULT_L2, help="anchor weight of the fit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--cache", type=Path, default=None, help="feature cache (default OUT/cache)"
    )
    parser.add_argument("--workers", type=int, default=None, help="feature extraction processes")


@dataclass(frozen=True)
class Fold:
    """A simulated site: its source name and the base bundle that never saw it."""

    source: str
    bundle: Path


def parse_folds(values: list[str]) -> list[Fold]:
    """``SOURCE=BUNDLE`` strings -> folds; each bundle folder must exist."""
    folds = []
    for value in values:
        source, sep, bundle = value.partition("=")
        if not sep or not source or not bundle:
            raise DatasetError(f"--fold {value!r}: expected SOURCE=BUNDLE_FOLDER")
        if not Path(bundle).is_dir():
            raise DatasetError(
                f"--fold {value}: no bundle folder {bundle}. Rebuild the fold with "
                f"'skinscan train ... --hold-out-source {source}' and 'skinscan convert' "
                "(docs/source-holdout.md)"
            )
        folds.append(Fold(source, Path(bundle)))
    return folds


def source_items(data_dirs: list[Path]) -> dict[str, list[Item]]:
    """Every labelled image of every archive, grouped by acquisition source."""
    by_source: dict[str, list[Item]] = {}
    for folder in data_dirs:
        if (folder / HAM_METADATA).is_file():
            items, _ = read_labelled_csv(folder / HAM_METADATA, folder / "images", by="dataset")
        elif (folder / PLAIN_LABELS).is_file():
            items, _ = read_labelled_csv(folder / PLAIN_LABELS, folder / "images")
            items = [Item(i.image_id, i.label, i.path, folder.name) for i in items]
        else:
            raise DatasetError(f"{folder}: neither {HAM_METADATA} nor {PLAIN_LABELS} found")
        for item in items:
            by_source.setdefault(item.group, []).append(item)
    return by_source


def _figures(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    return {
        "malignant_auc": metrics.malignant_auc(y, p),
        "melanoma_nevus_auc": metrics.melanoma_nevus_auc(y, p),
        "sensitivity": metrics.sensitivity(y, p, threshold),
        "specificity": metrics.specificity(y, p, threshold),
        "melanoma_sensitivity": metrics.melanoma_sensitivity(y, p, threshold),
    }


def _refusal(y: np.ndarray, base_auc: float, adapted_auc: float) -> str:
    try:
        check_cases(y)
        check_evidence(base_auc, adapted_auc, force=False)
    except AdaptationRefusedError as exc:
        return type(exc).__name__
    return ""


def one_draw(
    x: np.ndarray,
    y: np.ndarray,
    base_logits: np.ndarray,
    head: Any,
    base_temperature: float,
    base_threshold: float,
    train: np.ndarray,
    test: np.ndarray,
    *,
    repeats: int,
    l2: float,
    seed: int,
) -> dict[str, Any]:
    """Adapt on ``train`` rows as ``skinscan adapt`` would; score on ``test`` rows."""
    y_tr = y[train]
    malignant = metrics.is_malignant(y_tr)
    row: dict[str, Any] = {"n_malignant": int(malignant.sum())}
    if malignant.sum() < 2 or (~malignant).sum() < 2:
        # Cross-validation needs two of each; adapt refuses such a set long before.
        row["refused"] = "TooFewCasesError"
        return row
    evidence = cross_validate(
        x[train],
        y_tr,
        base_logits[train],
        head.weights,
        head.bias,
        base_temperature=base_temperature,
        base_threshold=base_threshold,
        l2=l2,
        repeats=repeats,
        n_boot=0,
        seed=seed,
    )
    row["refused"] = _refusal(
        y_tr, evidence.value("malignant_auc", "base"), evidence.value("malignant_auc", "adapted")
    )
    w, b = fit_head(x[train], y_tr, head.weights, head.bias, l2=l2)
    p_adapted = softmax(x[test] @ w + b, evidence.temperature)
    p_base = softmax(base_logits[test], base_temperature)
    row["threshold"] = evidence.threshold
    row["adapted"] = _figures(y[test], p_adapted, evidence.threshold)
    row["base"] = _figures(y[test], p_base, base_threshold)
    return row


def _summary(rows: list[dict[str, Any]], which: str) -> dict[str, Any]:
    scored = [r[which] for r in rows if which in r]
    out: dict[str, Any] = {"draws_scored": len(scored)}
    for name in FIGURES:
        values = np.array([r[name] for r in scored], dtype=np.float64)
        values = values[np.isfinite(values)]
        out[name] = (
            {"mean": float(values.mean()), "min": float(values.min()), "max": float(values.max())}
            if values.size
            else None
        )
    return out


def bench_fold(
    fold: Fold,
    items: list[Item],
    args: argparse.Namespace,
    cache: Path,
) -> dict[str, Any]:
    """All draws of every k on one simulated site."""
    bundle = load_bundle(fold.bundle)
    head = base_head(bundle)
    calibration = bundle.manifest.calibration
    started = time.perf_counter()
    features = extract_features(
        bundle,
        [(item.image_id, Path(item.path)) for item in items],
        workers=args.workers,
        cache_dir=cache,
    )
    label_of = {item.image_id: item.label for item in items}
    x = features.features.astype(np.float64)
    y = np.array([label_of[i] for i in features.ids], dtype=np.int64)
    base_p = softmax(features.base_logits, calibration.temperature)
    result: dict[str, Any] = {
        "source": fold.source,
        "base_bundle": bundle.bundle_id,
        "images": len(features),
        "excluded": len(features.excluded),
        "feature_seconds": features.seconds,
        "base_all_images": _figures(y, base_p, calibration.referral_threshold),
        "base_threshold": calibration.referral_threshold,
        "by_k": {},
    }
    rng = np.random.default_rng(args.seed)
    for k in args.k:
        if k >= len(y):
            log.warning("%s: k = %d is not below the %d images; skipped", fold.source, k, len(y))
            continue
        rows = []
        for draw in range(args.draws):
            order = rng.permutation(len(y))
            rows.append(
                one_draw(
                    x,
                    y,
                    features.base_logits,
                    head,
                    calibration.temperature,
                    calibration.referral_threshold,
                    order[:k],
                    order[k:],
                    repeats=args.repeats,
                    l2=args.l2,
                    seed=args.seed + draw,
                )
            )
        refused = sum(1 for r in rows if r.get("refused"))
        result["by_k"][str(k)] = {
            "draws": len(rows),
            "refused_by_adapt": refused,
            "adapted": _summary(rows, "adapted"),
            "base_same_images": _summary(rows, "base"),
            "rows": rows,
        }
        adapted_auc = result["by_k"][str(k)]["adapted"]["malignant_auc"]
        log.info(
            "%s k=%d: adapted malignant AUC %s (%d of %d draws refused by adapt)",
            fold.source,
            k,
            f"{adapted_auc['mean']:.3f}" if adapted_auc else "n/a",
            refused,
            len(rows),
        )
    result["seconds"] = time.perf_counter() - started
    return result


def _cell(summary: dict[str, Any] | None) -> str:
    if not summary:
        return "n/a"
    return f"{summary['mean']:.3f} [{summary['min']:.3f}, {summary['max']:.3f}]"


def render_markdown(report: dict[str, Any]) -> str:
    """The report as a markdown table (mean [min, max] over draws)."""
    lines = [
        "# Site adaptation on held-out sources (`skinscan bench adapt`)",
        "",
        f"{report['draws']} random draws of k confirmed cases per source; adapted as "
        "`skinscan adapt` does (threshold from the cases' cross-validated predictions at "
        "malignant sensitivity >= 0.90), scored on the source's other images. Figures are "
        "mean [min, max] over draws. 'base' is the unadapted fold bundle on the same images. "
        "'refused' counts draws `skinscan adapt` would refuse (a scanner keeps the base).",
        "",
        CITATION,
        "",
        "| source (base) | k | refused | malignant AUC adapted | base | "
        "sensitivity | specificity | melanoma sensitivity | melanoma-vs-nevus AUC |",
        "| --- | ---: | ---: | --- | --- | --- | --- | --- | --- |",
    ]
    for fold in report["folds"]:
        for k, entry in fold["by_k"].items():
            a, b = entry["adapted"], entry["base_same_images"]
            lines.append(
                f"| {fold['source']} ({fold['base_bundle']}) | {k} | "
                f"{entry['refused_by_adapt']}/{entry['draws']} | {_cell(a['malignant_auc'])} | "
                f"{_cell(b['malignant_auc'])} | {_cell(a['sensitivity'])} | "
                f"{_cell(a['specificity'])} | {_cell(a['melanoma_sensitivity'])} | "
                f"{_cell(a['melanoma_nevus_auc'])} |"
            )
    lines += ["", "Unadapted base on every image of the source, at its own threshold:", ""]
    lines += ["| source | images | malignant AUC | sensitivity | specificity |"]
    lines += ["| --- | ---: | ---: | ---: | ---: |"]
    for fold in report["folds"]:
        f = fold["base_all_images"]
        lines.append(
            f"| {fold['source']} | {fold['images']} | {f['malignant_auc']:.3f} | "
            f"{f['sensitivity']:.3f} | {f['specificity']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    """Malignant AUC against k per source: adapted mean with its range, base as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for fold in report["folds"]:
        ks = [int(k) for k in fold["by_k"]]
        entries = [fold["by_k"][str(k)]["adapted"]["malignant_auc"] for k in ks]
        keep = [(k, e) for k, e in zip(ks, entries, strict=True) if e]
        if not keep:
            continue
        ks_kept = [k for k, _ in keep]
        mean = [e["mean"] for _, e in keep]
        line = ax.plot(ks_kept, mean, marker="o", label=f"{fold['source']} adapted")[0]
        ax.fill_between(
            ks_kept,
            [e["min"] for _, e in keep],
            [e["max"] for _, e in keep],
            color=line.get_color(),
            alpha=0.15,
        )
        base = fold["base_all_images"]["malignant_auc"]
        ax.axhline(base, color=line.get_color(), linestyle=":", label=f"{fold['source']} base")
    ax.axhline(0.85, color="grey", linestyle="--", linewidth=1, label="target 0.85 (k = 50)")
    ax.set_xscale("log")
    ax.set_xticks(sorted({int(k) for f in report["folds"] for k in f["by_k"]}))
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel("confirmed cases k (log scale)")
    ax.set_ylabel("malignant AUC on the source's other images")
    ax.set_title("Site adaptation on held-out sources (mean, range of draws)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def replot(out: Path) -> None:
    """Redraw ``adapt-auc.png`` and ``adapt.md`` from an existing ``adapt.json``."""
    report = json.loads((out / "adapt.json").read_text(encoding="utf-8"))
    (out / "adapt.md").write_text(render_markdown(report), encoding="utf-8")
    plot(report, out / "adapt-auc.png")


def main(args: argparse.Namespace) -> int:
    """Run every fold and write the report."""
    folds = parse_folds(args.fold)
    by_source = source_items(args.data)
    missing = [f.source for f in folds if f.source not in by_source]
    if missing:
        raise DatasetError(
            f"--fold: no images of source(s) {missing}; sources found: {sorted(by_source)}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.cache or args.out / "cache"
    report: dict[str, Any] = {
        "protocol": __doc__.strip().splitlines()[0],
        "k": list(args.k),
        "draws": args.draws,
        "repeats": args.repeats,
        "l2": args.l2,
        "seed": args.seed,
        "citation": CITATION,
        "folds": [bench_fold(fold, by_source[fold.source], args, cache) for fold in folds],
    }
    (args.out / "adapt.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    markdown = render_markdown(report)
    (args.out / "adapt.md").write_text(markdown, encoding="utf-8")
    try:
        plot(report, args.out / "adapt-auc.png")
    except ImportError as exc:  # matplotlib comes with the train extra, not the clinic's
        log.warning("no plot: %s (install skinscan[train] for adapt-auc.png)", exc)
    print(markdown)
    return 0
