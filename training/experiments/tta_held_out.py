"""Does test-time augmentation help on a clinic the model never saw?

Each fold bundle of ``skinscan bench sources --full`` (trained without one source) is run
through the device pipeline on every image of its held-out source; the preprocessed
224x224 model input is classified in the 8 orientations of the square (4 rotations x
mirror) and the int8 logits are averaged. Plain (view 0) against the 2-view (mirror) and
8-view means: malignant AUC, melanoma-vs-nevus AUC, with paired bootstrap CIs of the gain.

    python -m training.experiments.tta_held_out BENCH_DIR --fold all-rosendahl \\
        --images $HAM10000/images --images $ISIC/images --json out.json

BENCH_DIR is the ``--out`` folder of ``skinscan bench sources --full`` (its ``bundles/``
and ``held-out-<source>.csv``). Not product code; the answer is in docs/source-holdout.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from pathlib import Path

import numpy as np

from device import metrics
from device.labels import CLASS_CODES
from training.calibration import softmax

log = logging.getLogger(__name__)
VIEWS = {"plain": 1, "mirror": 2, "dihedral-8": 8}


def orientations(image: np.ndarray) -> list[np.ndarray]:
    """The 8 orientations of a square image: rotations by 0/90/180/270, then mirrored."""
    rotations = [np.rot90(image, k) for k in range(4)]
    mirrored = [np.ascontiguousarray(r[:, ::-1]) for r in rotations]
    # Order: identity, mirror, then the rest, so the first 1 and 2 views are the cheap sets.
    return [rotations[0], mirrored[0], rotations[1], mirrored[1], *rotations[2:], *mirrored[2:]]


def view_logits(bundle_dir: Path, paths: list[Path]) -> np.ndarray:
    """Int8 logits of every image in its 8 orientations, shape (n, 8, classes)."""
    from device.imaging.io import read_image
    from device.imaging.pipeline import preprocess
    from device.runtime.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    out = np.zeros((len(paths), 8, len(CLASS_CODES)), dtype=np.float32)
    for i, path in enumerate(paths):
        model_input = preprocess(read_image(path), bundle.preprocess).model_input
        for v, view in enumerate(orientations(model_input)):
            out[i, v] = bundle.classifier.classify(np.ascontiguousarray(view)).logits
        if i % 500 == 0:
            log.info("%s: %d / %d", bundle_dir.name, i, len(paths))
    return out


def _held_out_items(csv_path: Path, image_dirs: list[Path]) -> tuple[list[Path], np.ndarray]:
    from training.archives import find_image

    paths, labels = [], []
    with csv_path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            for folder in image_dirs:
                found = find_image(folder, row["image_id"])
                if found is not None:
                    paths.append(found)
                    labels.append(CLASS_CODES.index(row["dx"]))
                    break
    return paths, np.asarray(labels)


def _figures(labels: np.ndarray, logits: np.ndarray, temperature: float) -> dict[str, float]:
    probs = softmax(logits, temperature)
    return {
        "malignant_auc": metrics.malignant_auc(labels, probs),
        "melanoma_nevus_auc": metrics.melanoma_nevus_auc(labels, probs),
    }


def paired_gain(
    labels: np.ndarray, base: np.ndarray, other: np.ndarray, t: float, n_boot: int, seed: int = 0
) -> dict[str, list[float]]:
    """95% bootstrap CI of (other - base) for each figure, resampling images jointly."""
    rng = np.random.default_rng(seed)
    gains: dict[str, list[float]] = {"malignant_auc": [], "melanoma_nevus_auc": []}
    for _ in range(n_boot):
        idx = rng.integers(0, len(labels), len(labels))
        a, b = _figures(labels[idx], base[idx], t), _figures(labels[idx], other[idx], t)
        for key in gains:
            gains[key].append(b[key] - a[key])
    return {
        k: [float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))]
        for k, v in gains.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", type=Path)
    parser.add_argument("--fold", action="append", required=True, help="e.g. all-rosendahl")
    parser.add_argument("--images", action="append", type=Path, required=True)
    parser.add_argument("--n-boot", type=int, default=500)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from device.runtime.bundle import read_manifest

    report = {}
    for fold in args.fold:
        source = fold.split("-", 1)[1]
        bundle = args.bench / "bundles" / fold
        paths, labels = _held_out_items(args.bench / f"held-out-{source}.csv", args.images)
        cache = args.bench / "predictions" / f"{fold}-tta8.npz"
        if cache.is_file():
            logits = np.load(cache)["logits"]
        else:
            logits = view_logits(bundle, paths)
            np.savez_compressed(cache, logits=logits, labels=labels)
        t = read_manifest(bundle).calibration.temperature
        base = logits[:, 0]
        entry = {"images": len(labels)}
        for name, k in VIEWS.items():
            mean = logits[:, :k].mean(axis=1)
            entry[name] = _figures(labels, mean, t)
            if k > 1:
                entry[name]["gain_ci95"] = paired_gain(labels, base, mean, t, args.n_boot)
        report[fold] = entry
        print(fold, json.dumps(metrics.json_safe(entry)))
    if args.json:
        args.json.write_text(json.dumps(metrics.json_safe(report), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
