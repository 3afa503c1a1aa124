"""``skinscan bench segmentation``: k-means lesion masks against HAM10000's expert masks.

Runs hair removal + segmentation exactly as preprocessing does, at the working
size, and scores each image's mask with Dice and IoU against
``masks/<image_id>_segmentation.png``.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from device.bench.stats import write_json
from device.errors import DatasetError
from device.imaging.hair import remove_hair
from device.imaging.io import read_image
from device.imaging.pipeline import PreprocessSpec, to_working_size
from device.imaging.segment import dice, iou, segment_lesion


def configure(parser: argparse.ArgumentParser) -> None:
    """Register the benchmark's arguments."""
    parser.add_argument("--data", required=True, help="HAM10000 folder with images/ and masks/")
    parser.add_argument("--limit", type=int, default=0, help="score only the first N images")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", metavar="OUT.json", help="also write the figures as JSON")


def score_image(paths: tuple[str, str]) -> tuple[float, float, bool]:
    """Dice, IoU and whether a lesion was found, for one image and its expert mask."""
    image_path, mask_path = paths
    spec = PreprocessSpec()
    work, _ = to_working_size(read_image(image_path), spec.work_long_side)
    if spec.hair_removal:
        work = remove_hair(work, spec.hair).image
    found = segment_lesion(work, spec.segment)
    truth = cv2.imread(mask_path, cv2.IMREAD_GRAYSCALE)
    if truth is None:
        raise DatasetError(f"{mask_path}: cannot read the mask")
    truth = cv2.resize(truth, (work.shape[1], work.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
    return dice(found.mask, truth), iou(found.mask, truth), found.found


def main(args: argparse.Namespace) -> int:
    """Score every image that has a mask; print and optionally write the summary."""
    data = Path(args.data)
    images = sorted((data / "images").glob("*.jpg"))
    if not images:
        raise DatasetError(f"{data / 'images'}: no .jpg images")
    pairs = [
        (str(p), str(data / "masks" / f"{p.stem}_segmentation.png"))
        for p in images
        if (data / "masks" / f"{p.stem}_segmentation.png").is_file()
    ]
    if args.limit:
        pairs = pairs[: args.limit]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        scores = np.array(list(pool.map(score_image, pairs, chunksize=64)), dtype=np.float64)
    dices, ious, found = scores[:, 0], scores[:, 1], scores[:, 2].astype(bool)
    summary = {
        "n_images": len(pairs),
        "mean_dice": float(dices.mean()),
        "median_dice": float(np.median(dices)),
        "mean_iou": float(ious.mean()),
        "fraction_dice_below_0.5": float((dices < 0.5).mean()),
        "fraction_no_lesion_found": float((~found).mean()),
    }
    for key, value in summary.items():
        print(f"{key:<28} {value:.4f}" if isinstance(value, float) else f"{key:<28} {value}")
    write_json(args.json, summary)
    return 0
