"""``skinscan bench sources``: leave-one-source-out screening of training candidates.

For each fold, every image of one acquisition source is held out; a candidate is
trained on the other sources and measured on the held-out one. This is the
*screening* protocol of issue 21: cheap enough to rank many candidates on two CPU
cores, and honest about sources, because nothing in it has seen the held-out source:

- the backbone is EfficientNet-Lite0 with its **ImageNet** weights, frozen (the
  shipped model's fine-tuned backbone has seen every HAM10000 source, so its
  features would leak);
- each image goes through the device's own preprocessing (the cache of
  :func:`training.data.build_cache`), then the backbone, then global average
  pooling; features are cached per view;
- the head is a multinomial logistic regression on standardised features, trained
  with the candidate's sample weights on the training sources' train split;
- temperature and the referral threshold (malignant sensitivity >= ``--min-sensitivity``
  on validation, point estimate) are fitted on the training sources' *own*
  validation split, then carried to the held-out source unchanged, so the
  sensitivity there shows whether the threshold travels.

Per fold and candidate it reports, with 95% bootstrap intervals: balanced accuracy
over the classes present, malignant AUC, melanoma-vs-nevus AUC, sensitivity,
specificity and melanoma sensitivity at the transferred threshold, and the same
figures on the training sources' lesion-grouped test split (the in-distribution
guard). The full-fold protocol (fine-tuned, converted to int8, ``skinscan eval``
through the device pipeline) is ``skinscan train --data ... --hold-out-source S``
followed by ``skinscan convert`` and ``skinscan eval --by dataset``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from device import metrics
from device.errors import DatasetError, SkinScanError
from device.labels import CLASS_CODES
from training.source_candidates import (
    ACQUISITION_AUGMENT,
    CANDIDATES,
    DEFAULT_FOLDS,
    FOLD_FIGURES,
    Candidate,
    _cell,
)

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``bench sources`` arguments."""
    parser.add_argument(
        "--data",
        type=Path,
        action="append",
        required=True,
        help="an archive folder (repeat: your HAM10000 folder, the isic-archive folder, ...)",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for sources.json/.md")
    parser.add_argument(
        "--cache", type=Path, default=None, help="cache folder (default: OUT/cache)"
    )
    parser.add_argument(
        "--fold",
        action="append",
        default=None,
        help=f"a source to hold out (repeatable; default: {', '.join(DEFAULT_FOLDS)})",
    )
    parser.add_argument(
        "--candidate",
        action="append",
        default=None,
        choices=sorted(CANDIDATES),
        help="a candidate recipe (repeatable; default: all)",
    )
    parser.add_argument("--seed", type=int, default=0, help="split, augmentation and head seed")
    parser.add_argument(
        "--min-sensitivity",
        type=float,
        default=0.90,
        help="malignant sensitivity the threshold keeps on the training sources' validation",
    )
    parser.add_argument("--n-boot", type=int, default=500, help="bootstrap resamples")
    parser.add_argument("--workers", type=int, default=2, help="preprocessing processes")
    parser.add_argument(
        "--limit", type=int, default=0, help="at most this many images per source (smoke runs)"
    )
    parser.add_argument(
        "--backbone",
        default="efficientnet_lite0",
        help="frozen ImageNet backbone (training.backbones; tiny_cnn for tests)",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="full folds instead of screening: fine-tune, convert to int8 and evaluate the "
        "held-out source through the device pipeline (resumable; about 20 min a fold here)",
    )
    parser.add_argument(
        "--finetune-epochs",
        type=int,
        default=3,
        help="with --full: epochs of the top blocks after one head epoch",
    )
    parser.add_argument(
        "--finetune-lr",
        type=float,
        default=1e-4,
        help="with --full: peak learning rate of the top blocks (the head's is 10x)",
    )
    parser.add_argument(
        "--first-trainable-block",
        default="block11",
        help="with --full: lowest backbone block fine-tuned after the head epoch",
    )
    parser.add_argument(
        "--deep-epochs",
        type=int,
        default=0,
        help="with --full: train each fold with the shipped recipe instead (one head epoch, "
        "then this many epochs from block5 at the training default rate; no top-block phase)",
    )
    parser.add_argument(
        "--steps-per-epoch", type=int, default=0, help="with --full: cap (smoke runs only)"
    )
    parser.add_argument(
        "--threshold-confidence",
        type=float,
        default=0.95,
        help="with --full: the shipped threshold rule's confidence (0: point estimate, for "
        "runs with few malignant validation images)",
    )


def main(args: argparse.Namespace) -> int:
    """Run the screening benchmark and write OUT/sources.json and OUT/sources.md."""
    from training.sources import load_sources

    folds = tuple(args.fold or DEFAULT_FOLDS)
    candidates = [CANDIDATES[n] for n in (args.candidate or list(CANDIDATES))]
    if args.full:
        from training.source_folds import run_full_folds

        return run_full_folds(args, folds, candidates)
    cache = args.cache or args.out / "cache"
    args.out.mkdir(parents=True, exist_ok=True)
    samples, _ = load_sources(args.data)
    if args.limit:
        samples = _limit_per_source(samples, args.limit, args.seed)
    check_folds(samples, folds)
    report = screen(
        samples,
        folds,
        candidates,
        cache,
        seed=args.seed,
        min_sensitivity=args.min_sensitivity,
        n_boot=args.n_boot,
        workers=args.workers,
        backbone=args.backbone,
    )
    (args.out / "sources.json").write_text(json.dumps(metrics.json_safe(report), indent=2) + "\n")
    table = markdown_report(report)
    (args.out / "sources.md").write_text(table)
    print(table)
    print(f"wrote {args.out / 'sources.json'} and {args.out / 'sources.md'}")
    return 0


def _limit_per_source(samples: list, limit: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    by_source: dict[str, list] = {}
    for sample in samples:
        by_source.setdefault(sample.source, []).append(sample)
    kept = []
    for source in sorted(by_source):
        group = by_source[source]
        order = rng.permutation(len(group))[:limit]
        kept.extend(group[i] for i in sorted(order))
    return kept


def screen(
    samples: list,
    folds: tuple[str, ...],
    candidates: list[Candidate],
    cache: Path,
    *,
    seed: int = 0,
    min_sensitivity: float = 0.90,
    n_boot: int = 500,
    workers: int = 2,
    backbone: str = "efficientnet_lite0",
) -> dict[str, Any]:
    """Every candidate on every held-out fold; returns the JSON-ready report.

    Raises:
        DatasetError: a fold names a source no image comes from.
    """
    from device.imaging.pipeline import default_spec
    from training.data import build_cache
    from training.sources import held_out_fold, source_counts, source_split

    started = time.perf_counter()
    spec = default_spec(3)
    prepared = build_cache(samples, cache / "inputs", spec, workers=workers)
    failed = set(prepared.failed)
    samples = [s for s in samples if s.image_id not in failed]
    views = max((c.augmented_views for c in candidates), default=0)
    features = _features(samples, prepared, cache / "features", backbone, views, seed)
    report: dict[str, Any] = {
        "protocol": "screening: frozen pretrained backbone + logistic-regression head",
        "backbone": backbone,
        "preprocessing_spec": spec.version,
        "seed": seed,
        "min_sensitivity_on_validation": min_sensitivity,
        "sources": source_counts(samples),
        "n_unreadable": len(failed),
        "candidates": {c.name: c.description for c in candidates},
        "folds": {},
    }
    for fold in folds:
        train_side, held = held_out_fold(samples, fold)
        assignment = source_split(train_side, seed=seed)
        fold_report: dict[str, Any] = {"n_held_out": len(held), "held_out": source_counts(held)}
        for candidate in candidates:
            chosen = [
                s for s in train_side if not candidate.archives or s.archive in candidate.archives
            ]
            if not chosen:
                raise DatasetError(f"candidate {candidate.name}: no training image in fold {fold}")
            fold_report[candidate.name] = _run_fold(
                chosen, held, assignment, features, candidate, seed, min_sensitivity, n_boot
            )
            log.info(
                "fold %s, %s: held-out malignant AUC %.3f, melanoma sensitivity %.3f",
                fold,
                candidate.name,
                fold_report[candidate.name]["held_out_figures"]["malignant_auc"],
                fold_report[candidate.name]["held_out_figures"]["melanoma_sensitivity"],
            )
        report["folds"][fold] = fold_report
    report["summary"] = summarise(report, [c.name for c in candidates])
    report["seconds"] = time.perf_counter() - started
    return report


def _run_fold(
    train_side: list,
    held: list,
    assignment: dict[str, str],
    features: dict[str, np.ndarray],
    candidate: Candidate,
    seed: int,
    min_sensitivity: float,
    n_boot: int,
) -> dict[str, Any]:
    from training.calibration import fit_temperature, referral_threshold
    from training.sources import balanced_weights

    parts = {
        name: [s for s in train_side if assignment[s.image_id] == name]
        for name in ("train", "val", "test")
    }
    train = parts["train"]
    for name in ("train", "val"):
        if not any(metrics.is_malignant(np.array([s.label for s in parts[name]]))):
            raise DatasetError(
                f"candidate {candidate.name}: the {name} split of the training sources has no "
                "malignant image; too few images for this fold"
            )
    x_train = [features["view0"][_rows(features, train)]]
    y_train = [np.array([s.label for s in train])]
    w = balanced_weights(train, candidate.source_power)
    w_train = [w]
    for view in range(1, candidate.augmented_views + 1):
        x_train.append(features[f"view{view}"][_rows(features, train)])
        y_train.append(y_train[0])
        w_train.append(w)
    head = _fit_head(
        np.concatenate(x_train), np.concatenate(y_train), np.concatenate(w_train), seed
    )

    def logits_of(group: list) -> np.ndarray:
        return head.decision_function(features["view0"][_rows(features, group)])

    val_labels = np.array([s.label for s in parts["val"]])
    val_logits = logits_of(parts["val"])
    temperature = fit_temperature(val_logits, val_labels)
    from device.runtime.classifier import softmax

    threshold = referral_threshold(softmax(val_logits, temperature), val_labels, min_sensitivity)
    out: dict[str, Any] = {
        "n_train": len(train),
        "n_val": len(parts["val"]),
        "temperature": temperature,
        "referral_threshold": threshold,
    }
    for name, group in (("held_out", held), ("in_distribution_test", parts["test"])):
        labels = np.array([s.label for s in group], dtype=np.int64)
        if not group:
            out[f"{name}_figures"] = {"n_images": 0, "classes_present": [], "ci95": {}}
            out[f"{name}_figures"].update(dict.fromkeys((*FOLD_FIGURES, "ece"), float("nan")))
            continue
        probs = softmax(logits_of(group), temperature)
        figures = metrics.evaluate(labels, probs, threshold, n_boot=n_boot, seed=seed)
        out[f"{name}_figures"] = {
            "n_images": len(group),
            "classes_present": figures["classes_present"],
            **{k: figures[k] for k in (*FOLD_FIGURES, "ece")},
            "ci95": {k: figures["ci95"].get(k) for k in FOLD_FIGURES},
        }
    return out


def _rows(features: dict[str, np.ndarray], group: list) -> np.ndarray:
    index = features["index"]
    return np.array([index[s.image_id] for s in group], dtype=np.int64)


def _fit_head(x: np.ndarray, y: np.ndarray, w: np.ndarray, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    head = make_pipeline(
        StandardScaler(),
        LogisticRegression(C=0.05, max_iter=2000, random_state=seed),
    )
    head.fit(x, y, logisticregression__sample_weight=w)
    # Classes absent from training get no column; the device needs all seven.
    return _AllClasses(head, len(CLASS_CODES))


class _AllClasses:
    """A fitted sklearn classifier whose decision function has one column per device class."""

    def __init__(self, model, n_classes: int) -> None:
        self._model = model
        self._classes = np.asarray(model.classes_, dtype=np.int64)
        self._n = n_classes

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        raw = self._model.decision_function(x)
        out = np.full((len(x), self._n), -1e4, dtype=np.float64)
        out[:, self._classes] = raw
        return out


def _features(
    samples: list, prepared, folder: Path, backbone: str, views: int, seed: int
) -> dict[str, Any]:
    """Pooled backbone features of every sample: view0 as preprocessed, view1.. augmented."""
    ids = [s.image_id for s in samples]
    key = hashlib.sha256(("\n".join(ids) + backbone).encode()).hexdigest()[:12]
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"index": {image_id: i for i, image_id in enumerate(ids)}}
    rows = prepared.rows(ids)
    model = None
    for view in range(views + 1):
        path = folder / f"{backbone}-{key}-view{view}-seed{seed}.npy"
        if path.is_file():
            out[f"view{view}"] = np.load(path)
            continue
        if model is None:
            model = _pooled_backbone(backbone, prepared.images.shape[1])
        log.info("features of %d images, view %d (%s)", len(ids), view, backbone)
        rng = np.random.default_rng(seed * 1000 + view)
        feats = _extract(model, prepared.images, rows, view, rng)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, feats)
        tmp.replace(path)
        out[f"view{view}"] = feats
    return out


def _pooled_backbone(name: str, input_size: int):
    import keras

    from training.backbones import build_backbone

    backbone = build_backbone(name, input_size, weights=True)
    pooled = keras.layers.GlobalAveragePooling2D()(backbone.model.output)
    return keras.Model(backbone.model.input, pooled)


def _extract(model, images: np.ndarray, rows: np.ndarray, view: int, rng) -> np.ndarray:
    from training.augment import AugmentConfig, augment

    cfg = AugmentConfig.from_dict({**AugmentConfig().to_dict(), **ACQUISITION_AUGMENT})
    batch = 64
    chunks = []
    for start in range(0, len(rows), batch):
        block = np.asarray(images[rows[start : start + batch]])
        if view:
            block = np.stack([augment(image, rng, cfg) for image in block])
        chunks.append(np.asarray(model.predict_on_batch(block.astype(np.float32)), np.float32))
        if start // batch % 20 == 0:
            log.info("  %d / %d", start + len(block), len(rows))
    return np.concatenate(chunks)


def summarise(report: dict[str, Any], names: list[str]) -> dict[str, dict[str, float]]:
    """Per candidate: the objective of the pre-registered rule and the in-distribution guard.

    ``mean_held_out_malignant_auc`` and ``worst_held_out_melanoma_sensitivity`` (over the
    folds that hold melanomas) are the objective; ``mean_in_distribution_balanced_accuracy``
    is the guard.
    """
    summary: dict[str, dict[str, float]] = {}
    for name in names:
        folds = [f[name] for f in report["folds"].values() if name in f]
        held = [f["held_out_figures"] for f in folds]
        mel = [h["melanoma_sensitivity"] for h in held if np.isfinite(h["melanoma_sensitivity"])]
        summary[name] = {
            "mean_held_out_malignant_auc": float(np.nanmean([h["malignant_auc"] for h in held])),
            "worst_held_out_melanoma_sensitivity": float(min(mel)) if mel else float("nan"),
            "mean_held_out_specificity": float(np.nanmean([h["specificity"] for h in held])),
            "mean_in_distribution_balanced_accuracy": float(
                np.nanmean([f["in_distribution_test_figures"]["balanced_accuracy"] for f in folds])
            ),
        }
    return summary


def markdown_report(report: dict[str, Any]) -> str:
    """The report as Markdown: one table per fold and a summary table."""
    lines = [
        "# Leave-one-source-out screening",
        "",
        f"Protocol: {report['protocol']} ({report['backbone']}, preprocessing spec "
        f"{report['preprocessing_spec']}); threshold fitted for malignant sensitivity >= "
        f"{report['min_sensitivity_on_validation']} on the training sources' validation and "
        "carried to the held-out source. 95% bootstrap intervals in brackets.",
        "Data: HAM10000 (Tschandl et al. 2018, CC BY-NC 4.0) and ISIC archive images "
        "(Codella et al. 2018; Gutman et al. 2016).",
        "",
    ]
    for fold, fold_report in report["folds"].items():
        lines += [
            f"## Held out: {fold} ({fold_report['n_held_out']} images)",
            "",
            "| candidate | threshold | " + " | ".join(FOLD_FIGURES) + " | in-dist. BA |",
            "| --- | ---: | " + " | ".join("---" for _ in FOLD_FIGURES) + " | ---: |",
        ]
        for name, run in fold_report.items():
            if not isinstance(run, dict) or "held_out_figures" not in run:
                continue
            held = run["held_out_figures"]
            cells = [_cell(held.get(k), held["ci95"].get(k)) for k in FOLD_FIGURES]
            guard = run["in_distribution_test_figures"]["balanced_accuracy"]
            lines.append(
                f"| {name} | {run['referral_threshold']:.3f} | "
                + " | ".join(cells)
                + f" | {_cell(guard, None)} |"
            )
        lines.append("")
    lines += [
        "## Summary (the pre-registered objective and guard)",
        "",
        "| candidate | mean held-out malignant AUC | worst held-out melanoma sensitivity | "
        "mean held-out specificity | mean in-distribution BA |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, s in report["summary"].items():
        lines.append(
            f"| {name} | {_cell(s['mean_held_out_malignant_auc'], None)} | "
            f"{_cell(s['worst_held_out_melanoma_sensitivity'], None)} | "
            f"{_cell(s['mean_held_out_specificity'], None)} | "
            f"{_cell(s['mean_in_distribution_balanced_accuracy'], None)} |"
        )
    return "\n".join(lines) + "\n"


def check_folds(samples: list, folds: tuple[str, ...]) -> None:
    """Raise a clear error for a fold that names no source of the data."""
    known = {s.source for s in samples}
    unknown = [f for f in folds if f not in known]
    if unknown:
        raise SkinScanError(f"unknown source(s) {unknown}; the data has {sorted(known)}")
