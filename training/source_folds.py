"""``skinscan bench sources --full``: full leave-one-source-out folds through the device.

Each (candidate, fold) pair is a real training run without the held-out source,
converted to an int8 bundle by ``skinscan convert`` (its temperature and referral
threshold refitted on the training sources' own validation split, int8 outputs),
then measured by the device's own evaluation (:func:`device.evaluation.runner.
evaluate_folder`) on every image of the held-out source. Each step is skipped when
its output exists and a killed training run resumes from its checkpoint, so the
command can be run again after an interruption.

The recipe is a shorter one than the shipped model's, to fit two CPU cores: spec 3
preprocessing, one head epoch, then ``--finetune-epochs`` of the top blocks
(block11 up) at peak learning rate ``--finetune-lr``, with the candidate's data, source
weighting and augmentation. At the training default (4e-4) the top blocks diverged on
the training sources' validation whenever isic-archive was in the data (balanced
accuracy 0.48 after the head epoch, 0.20-0.35 after), so folds use 1e-4.

``--deep-epochs N`` trains each fold with the shipped model's own recipe instead (the v3
recipe: one head epoch, then N epochs from block5), so its held-out figures and its
pooled threshold describe what is shipped; about 35 minutes a fold on two cores.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from device import metrics
from device.errors import SkinScanError
from training.source_candidates import ACQUISITION_AUGMENT, FOLD_FIGURES, Candidate

log = logging.getLogger(__name__)


def run_full_folds(
    args: argparse.Namespace, folds: tuple[str, ...], candidates: list[Candidate]
) -> int:
    """Run every (candidate, fold) pair and write OUT/full-folds.json and .md."""
    from training.data import load_sources

    samples, _ = load_sources(args.data)
    out_path = args.out / "full-folds.json"
    report: dict[str, Any] = json.loads(out_path.read_text()) if out_path.is_file() else {}
    report.setdefault("protocol", "full folds: fine-tuned, int8, device pipeline")
    report.setdefault("folds", {})
    for fold in folds:
        for candidate in candidates:
            result = full_fold(args, samples, fold, candidate)
            report["folds"].setdefault(fold, {})[candidate.name] = result
            out_path.write_text(json.dumps(metrics.json_safe(report), indent=2) + "\n")
    report["pooled_threshold"] = pooled_thresholds(args.out, report, args.min_sensitivity)
    out_path.write_text(json.dumps(metrics.json_safe(report), indent=2) + "\n")
    table = markdown_full_folds(report)
    (args.out / "full-folds.md").write_text(table)
    print(table)
    return 0


def _predictions_path(out: Path, name: str) -> Path:
    return out / "predictions" / f"{name}.npz"


def pooled_thresholds(
    out: Path, report: dict[str, Any], min_sensitivity: float
) -> dict[str, dict[str, Any]]:
    """Per candidate: the threshold that refers ``min_sensitivity`` of the pooled melanomas.

    The held-out predictions of every fold of a candidate are pooled (each fold's own
    model, each on the source it never saw); the threshold is the highest one whose
    melanoma sensitivity on the pool meets the target, and each fold's sensitivity,
    specificity and melanoma sensitivity at it show how evenly it travels.
    """
    import numpy as np

    from training.calibration import melanoma_threshold

    names = sorted({name for runs in report["folds"].values() for name in runs})
    pooled: dict[str, dict[str, Any]] = {}
    for name in names:
        parts = {}
        for fold, runs in report["folds"].items():
            path = _predictions_path(out, f"{name}-{fold}")
            if name in runs and path.is_file():
                with np.load(path) as data:
                    parts[fold] = (data["labels"], data["probabilities"])
        if not parts:
            continue
        labels = np.concatenate([y for y, _ in parts.values()])
        probs = np.concatenate([p for _, p in parts.values()])
        try:
            threshold = melanoma_threshold(probs, labels, min_sensitivity)
        except ValueError:
            continue
        pooled[name] = {
            "folds": sorted(parts),
            "threshold": threshold,
            "per_fold": {
                fold: {
                    "sensitivity": metrics.sensitivity(y, p, threshold),
                    "specificity": metrics.specificity(y, p, threshold),
                    "melanoma_sensitivity": metrics.melanoma_sensitivity(y, p, threshold),
                }
                for fold, (y, p) in parts.items()
            },
        }
    return pooled


def _archive_dirs(data_dirs: list[Path], candidate: Candidate) -> list[Path]:
    """The archive folders a candidate trains on (HAM10000's first)."""
    from training.data import HAM10000_ARCHIVE, METADATA_FILE

    def archive(folder: Path) -> str:
        return HAM10000_ARCHIVE if (folder / METADATA_FILE).is_file() else folder.name

    chosen = [d for d in data_dirs if not candidate.archives or archive(d) in candidate.archives]
    if not chosen:
        raise SkinScanError(f"candidate {candidate.name}: none of the --data folders fits it")
    return sorted(chosen, key=lambda d: archive(d) != HAM10000_ARCHIVE)


def full_fold(
    args: argparse.Namespace, samples: list, fold: str, candidate: Candidate
) -> dict[str, Any]:
    """Train, convert and evaluate one candidate on one held-out source."""
    from device.evaluation.runner import evaluate_folder

    name = f"{candidate.name}-{fold}"
    run = args.out / "runs" / name
    bundle = args.out / "bundles" / name
    dirs = _archive_dirs(list(args.data), candidate)
    trained_sources = {s.source for s in samples if any(_same(s.path, d) for d in dirs)}
    _train(args, run, dirs, fold if fold in trained_sources else "", candidate)
    if not (bundle / "manifest.json").is_file():
        _convert(run, bundle)
    held_csv = _held_out_csv(args.out, samples, fold)
    folders = [Path(d) / "images" for d in args.data]
    report = evaluate_folder(
        held_csv,
        [f for f in folders if f.is_dir()],
        bundle,
        workers=args.workers,
        n_boot=args.n_boot,
        seed=args.seed,
        predictions=_predictions_path(args.out, name),
    )
    manifest = json.loads((bundle / "manifest.json").read_text())
    in_dist = manifest["metrics"].get("int8_test", {})
    return {
        "run": str(run),
        "bundle": str(bundle),
        "referral_threshold": report["referral_threshold"],
        "held_out_figures": {
            "n_images": report["n_images"],
            "classes_present": report["classes_present"],
            **{k: report.get(k) for k in (*FOLD_FIGURES, "ece")},
            "ci95": {k: report["ci95"].get(k) for k in FOLD_FIGURES},
        },
        "in_distribution_test_figures": {
            k: in_dist.get(k) for k in ("n_images", "balanced_accuracy", "malignant_auc", "ece")
        },
        "parity_failures": manifest["metrics"].get("parity", {}).get("failures", []),
    }


def _same(path: Path, folder: Path) -> bool:
    return Path(folder).resolve() in Path(path).resolve().parents


def _train(
    args: argparse.Namespace, run: Path, dirs: list[Path], hold_out: str, candidate: Candidate
) -> None:
    from training.train import TrainConfig, run_training

    if (run / "model.keras").is_file():
        return
    if (run / "state.json").is_file():
        saved = json.loads((run / "config.json").read_text())
        run_training(TrainConfig(**saved), resume=True)
        return
    cfg = fold_config(args, run, dirs, hold_out, candidate)
    log.info("full fold %s: training %s", run.name, json.dumps(asdict(cfg))[:300])
    run_training(cfg)


def fold_config(
    args: argparse.Namespace, run: Path, dirs: list[Path], hold_out: str, candidate: Candidate
) -> Any:
    """The TrainConfig of one fold: the short recipe, or with ``--deep-epochs`` the shipped one."""
    from device.imaging.pipeline import default_spec
    from training.augment import AugmentConfig
    from training.cli import recipe_overrides
    from training.train import TrainConfig

    base = recipe_overrides("v3")
    augment = AugmentConfig.from_dict(base["augment"]).to_dict()
    if candidate.augmented_views:
        augment = AugmentConfig.from_dict({**augment, **ACQUISITION_AUGMENT}).to_dict()
    return TrainConfig(
        data_dir=str(Path(dirs[0]).resolve()),
        extra_data_dirs=[str(Path(d).resolve()) for d in dirs[1:]],
        hold_out_source=hold_out,
        run_dir=str(run),
        cache_dir=str((args.cache or args.out / "cache") / "train"),
        seed=args.seed,
        backbone=args.backbone,
        source_power=candidate.source_power,
        preprocessing=default_spec(3).to_dict(),
        augment=augment,
        head_epochs=1,
        finetune_epochs=0 if args.deep_epochs else args.finetune_epochs,
        finetune_lr=args.finetune_lr,
        first_trainable_block=args.first_trainable_block,
        deep_epochs=args.deep_epochs,
        steps_per_epoch=args.steps_per_epoch,
        threshold_confidence=args.threshold_confidence,
        workers=args.workers,
    )


def _convert(run: Path, bundle: Path) -> None:
    """``skinscan convert`` in a child process (training never imports conversion).

    ``--force`` writes the bundle even when an int8 parity gate fails: a fold measures
    the int8 model as it is, and the failures are kept in the bundle's manifest
    (``metrics.parity``) and reported with the fold, not hidden.
    """
    argv = [sys.executable, "-m", "device.cli", "convert", str(run), "--out", str(bundle)]
    argv += ["--no-shift-threshold", "--overwrite", "--force"]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise SkinScanError(f"convert {run} failed:\n{done.stdout[-2000:]}\n{done.stderr[-1500:]}")


def _held_out_csv(out: Path, samples: list, fold: str) -> Path:
    """A CSV (image_id, dx, dataset) of every image of the held-out source."""
    path = out / f"held-out-{fold}.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_id", "dx", "dataset"])
        for sample in samples:
            if sample.source == fold:
                writer.writerow([sample.image_id, sample.dx, sample.source])
    return path


def markdown_full_folds(report: dict[str, Any]) -> str:
    """The full-fold report as one Markdown table."""
    from training.source_candidates import _cell

    lines = [
        "# Leave-one-source-out: full folds",
        "",
        "Fine-tuned, converted to int8, evaluated through the device pipeline on every image "
        "of the held-out source, at the threshold fitted on the training sources' validation. "
        "Data: HAM10000 (Tschandl et al. 2018, CC BY-NC 4.0) and ISIC archive images "
        "(Codella et al. 2018; Gutman et al. 2016).",
        "",
        "| fold | candidate | threshold | " + " | ".join(FOLD_FIGURES) + " | in-dist. BA |",
        "| --- | --- | ---: | " + " | ".join("---" for _ in FOLD_FIGURES) + " | ---: |",
    ]
    for fold, runs in report["folds"].items():
        for name, run in runs.items():
            held = run["held_out_figures"]
            cells = [_cell(held.get(k), held["ci95"].get(k)) for k in FOLD_FIGURES]
            guard = run["in_distribution_test_figures"].get("balanced_accuracy")
            lines.append(
                f"| {fold} | {name} | {run['referral_threshold']:.3f} | "
                + " | ".join(cells)
                + f" | {_cell(guard, None)} |"
            )
    pooled = report.get("pooled_threshold") or {}
    if pooled:
        lines += [
            "",
            "Threshold chosen on the pooled held-out predictions (melanoma sensitivity target),",
            "and what it gives on each held-out source:",
            "",
            "| candidate | pooled threshold | fold | sensitivity | specificity "
            "| melanoma sensitivity |",
            "| --- | ---: | --- | ---: | ---: | ---: |",
        ]
        for name, entry in pooled.items():
            for fold, f in entry["per_fold"].items():
                lines.append(
                    f"| {name} | {entry['threshold']:.3f} | {fold} | "
                    f"{_cell(f['sensitivity'], None)} | {_cell(f['specificity'], None)} | "
                    f"{_cell(f['melanoma_sensitivity'], None)} |"
                )
    return "\n".join(lines) + "\n"
