"""The v3k study: the v3 model files under spec v6 (illuminant clamped), one radius at a time.

For each quantile q the shipped bundle is copied with its manifest's preprocessing
replaced by spec v6 (region fitted on the training split at q), then run through
the device pipeline on the validation split under the 16 benchmark conditions.
Per condition: balanced accuracy, malignant AUC, and sensitivity/specificity at
the variant's own in-distribution threshold (temperature and threshold refitted on
the unshifted validation outputs by the run's rule). Raw probabilities are saved,
so the summary can be redone without the pipeline.

    mkdir -p /tmp/v3 && git archive dde50ac device/models/default | tar -x -C /tmp/v3
    python -m training.experiments.colour_clamp_study --data "$HAM10000" \\
        --bundle /tmp/v3/device/models/default --split runs/split0/split.csv \\
        --out runs/v3k-study --quantiles 0.5 0.9 0.975 0.99

``runs/split0/split.csv`` is the seed-0 split (docs/evaluation.md writes it);
``$HAM10000`` is your HAM10000 folder. The decision rule it serves is
training/reports/ham10000-v3k/PREREGISTERED.md; its results are in that folder's README.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from conversion.clamp_colour import respecced_copy
from device import metrics
from device.evaluation.runner import read_labelled_csv, run_shifted
from device.evaluation.shifts import REALISTIC_THRESHOLD_SHIFTS, SHIFTS
from device.runtime.classifier import softmax
from training.calibration import pseudo_logits, refit_calibration
from training.colour_region import clamped_spec

log = logging.getLogger(__name__)


def summarise(runs: dict[str, dict[str, np.ndarray]], temperature: float) -> dict[str, Any]:
    """Figures per condition at the variant's own refitted calibration."""
    base = runs["none"]
    fitted, threshold = refit_calibration(base["probs"], base["labels"], temperature, 0.90, 0.95)
    rows = {}
    for name, run in runs.items():
        probs = softmax(pseudo_logits(run["probs"], temperature), fitted)
        labels = run["labels"]
        rows[name] = {
            "balanced_accuracy": metrics.balanced_accuracy(labels, probs),
            "malignant_auc": metrics.malignant_auc(labels, probs),
            "sensitivity": metrics.sensitivity(labels, probs, threshold),
            "specificity": metrics.specificity(labels, probs, threshold),
            "unfamiliar": float(np.mean(run["unfamiliar"])),
        }
    unshifted = rows["none"]
    shifted = {k: v for k, v in rows.items() if k != "none"}
    return {
        "temperature": fitted,
        "threshold": threshold,
        "rows": rows,
        "mean_balanced_accuracy": float(np.mean([r["balanced_accuracy"] for r in rows.values()])),
        "mean_malignant_auc": float(np.mean([r["malignant_auc"] for r in rows.values()])),
        "worst_realistic_sensitivity": min(
            rows[n]["sensitivity"] for n in REALISTIC_THRESHOLD_SHIFTS
        ),
        "worst_sensitivity": min(r["sensitivity"] for r in shifted.values()),
        "largest_auc_drop": max(
            unshifted["malignant_auc"] - r["malignant_auc"] for r in shifted.values()
        ),
    }


def main(argv: list[str] | None = None) -> None:
    """Run the study (see the module docstring)."""
    from device.imaging.io import read_image
    from device.imaging.pipeline import to_working_size
    from device.runtime.bundle import read_manifest

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="HAM10000 folder (images/)")
    parser.add_argument(
        "--images", action="append", type=Path, help="image folder (repeatable; instead of --data)"
    )
    parser.add_argument("--split", required=True, help="the run's split.csv")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--bundle", required=True, help="the spec-3 bundle (v3)")
    parser.add_argument("--quantiles", type=float, nargs="+", default=[0.5, 0.9, 0.975, 0.99])
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.images and not args.data:
        parser.error("give --data or --images")
    images = args.images or [Path(args.data) / "images"]
    source = Path(args.bundle)
    manifest = read_manifest(source)
    base_spec = dict(manifest.preprocessing)
    base_spec.pop("resize_rule", None)
    train = read_labelled_csv(args.split, images, "train")[0]
    val = read_labelled_csv(args.split, images, "val")[0]
    working = [to_working_size(read_image(i.path), base_spec["work_long_side"])[0] for i in train]
    summary: dict[str, Any] = {}
    for q in args.quantiles:
        spec = clamped_spec(base_spec, working, q)
        region = spec.colour.region
        assert region is not None
        bundle = out / f"bundle-q{q}"
        shutil.rmtree(bundle, ignore_errors=True)
        respecced_copy(source, bundle, preprocessing=spec.to_dict())
        log.info("q=%s radius %.3f: %d validation images x %d conditions", q, region.radius,
                 len(val), len(SHIFTS))  # fmt: skip
        runs = run_shifted(bundle, val, [s.name for s in SHIFTS], workers=args.workers)
        raw = {
            name: {"probs": r.probabilities, "labels": r.labels, "unfamiliar": r.unfamiliar}
            for name, r in runs.items()
        }
        np.savez_compressed(
            out / f"probs-q{q}.npz",
            **{f"{n}/{k}": v for n, d in raw.items() for k, v in d.items()},
        )
        temperature = manifest.calibration.temperature
        summary[str(q)] = {"radius": region.radius, **summarise(raw, temperature)}
        (out / "summary.json").write_text(json.dumps(metrics.json_safe(summary), indent=2))
        s = summary[str(q)]
        log.info(
            "q=%s: unshifted BA %.3f AUC %.3f; mean BA %.3f AUC %.3f; worst realistic sens %.3f",
            q, s["rows"]["none"]["balanced_accuracy"], s["rows"]["none"]["malignant_auc"],
            s["mean_balanced_accuracy"], s["mean_malignant_auc"], s["worst_realistic_sensitivity"],
        )  # fmt: skip


def inputs_figure(bundle_dir: Path, image_paths: list[str], out_png: Path) -> Path:
    """What the model sees: frame and model input under v3 and v6, unshifted and cast.

    One row per image; columns: the frame, then for each of none / 3000 K / 10000 K the
    v3 model input and the v6 (clamped) model input.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from device.evaluation.shifts import shift_by_name
    from device.imaging.io import read_image
    from device.imaging.pipeline import PreprocessSpec, default_spec, preprocess
    from device.runtime.bundle import read_manifest

    v6 = PreprocessSpec.from_dict(dict(read_manifest(bundle_dir).preprocessing))
    v3 = default_spec(3)
    names = ("none", "colour-3000K", "colour-10000K")
    fig, axes = plt.subplots(
        len(image_paths), 1 + 2 * len(names), figsize=(14, 2.1 * len(image_paths))
    )
    axes = np.atleast_2d(axes)
    for row, path in enumerate(image_paths):
        frame = read_image(path)
        axes[row, 0].imshow(frame)
        axes[row, 0].set_title("frame" if row == 0 else "", fontsize=9)
        for k, name in enumerate(names):
            shifted = shift_by_name(name).apply(frame)
            for j, (label, spec) in enumerate((("v3", v3), ("v6 clamped", v6))):
                ax = axes[row, 1 + 2 * k + j]
                ax.imshow(preprocess(shifted, spec).model_input)
                if row == 0:
                    ax.set_title(f"{name}\n{label}", fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(out_png, dpi=80)
    plt.close(fig)
    return out_png


if __name__ == "__main__":
    main()
