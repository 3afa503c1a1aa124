"""How much does the colour cast of the skin alone tell about the diagnosis?

A dermoscopy archive's white balance records which clinic, camera and LED ring took
each picture; when the clinics' case mixes differ, the cast predicts the diagnosis.
A model can learn that shortcut, earn in-distribution credit for it, and be misled by
it on another camera. This probe measures the shortcut: the Shades-of-Gray
chromaticity of the *skin* (pixels outside the lesion mask; the whole frame where no
mask exists), two degrees of freedom, feeds a class-balanced logistic regression
fitted on the training split and scored on validation.

    skinscan colour-probe --data "$HAM10000" --split RUN/split.csv [--json OUT.json]

Run it on a new archive before training on it: a high validation AUC says the archive's
light alone separates its diagnoses, and a model trained on it may learn the camera.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from device import metrics
from device.imaging.colour import ColourParams, chromaticity, illuminant_estimate
from device.imaging.io import read_image
from device.labels import CLASS_CODES
from training.data import read_split_csv

log = logging.getLogger(__name__)
MIN_SKIN_PIXELS = 256


def skin_chromaticity(image: np.ndarray, lesion_mask: np.ndarray | None) -> np.ndarray:
    """Log chromaticity (3 numbers, summing to about 0) of the skin's illuminant estimate."""
    params = ColourParams()
    pixels = image if lesion_mask is None else image[~lesion_mask]
    if lesion_mask is not None:
        usable = (len(pixels) // 16) * 16
        pixels = image if usable < MIN_SKIN_PIXELS else pixels[:usable].reshape(16, -1, 3)
    return np.log(chromaticity(illuminant_estimate(pixels, params)))


def _mask(data_dir: Path, image_id: str, shape: tuple[int, int]) -> np.ndarray | None:
    path = data_dir / "masks" / f"{image_id}_segmentation.png"
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) if path.is_file() else None
    if mask is None or mask.shape != shape:
        return None
    return mask > 0


def probe(data_dir: str | Path, split_csv: str | Path) -> dict[str, Any]:
    """Fit on the split's training rows, score on its validation rows; JSON-ready figures."""
    from sklearn.linear_model import LogisticRegression

    data = Path(data_dir)
    features: dict[str, list[np.ndarray]] = {"train": [], "val": []}
    labels: dict[str, list[int]] = {"train": [], "val": []}
    with_mask = 0
    for row in read_split_csv(Path(split_csv)):
        if row["split"] not in features:
            continue
        image = read_image(data / "images" / f"{row['image_id']}.jpg")
        mask = _mask(data, row["image_id"], image.shape[:2])
        with_mask += mask is not None
        features[row["split"]].append(skin_chromaticity(image, mask))
        labels[row["split"]].append(CLASS_CODES.index(row["dx"]))
    x_train, x_val = np.array(features["train"]), np.array(features["val"])
    y_train, y_val = np.array(labels["train"]), np.array(labels["val"])
    classifier = LogisticRegression(max_iter=2000, class_weight="balanced")
    probs = classifier.fit(x_train, y_train).predict_proba(x_val)
    full = np.zeros((len(y_val), len(CLASS_CODES)))
    full[:, classifier.classes_] = probs
    return {
        "n_train": int(len(y_train)),
        "n_val": int(len(y_val)),
        "share_with_mask": with_mask / max(1, len(y_train) + len(y_val)),
        "val_balanced_accuracy": metrics.balanced_accuracy(y_val, full),
        "val_malignant_auc": metrics.malignant_auc(y_val, full),
        "chance_balanced_accuracy": 1.0 / len(np.unique(y_val)),
    }


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``skinscan colour-probe``."""
    parser.add_argument("--data", required=True, help="archive folder (images/, optional masks/)")
    parser.add_argument("--split", required=True, help="a run's split.csv (train and val rows)")
    parser.add_argument("--json", help="where to write the figures")


def main(args: argparse.Namespace) -> int:
    """Print (and optionally write) the probe's validation figures."""
    result = probe(args.data, args.split)
    text = json.dumps(metrics.json_safe(result), indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0
