"""``skinscan bench pipeline``: per-stage time of the image pipeline on one core.

Stages are timed on phantom frames at the camera preview size (640x480), at the
HAM10000 image size (600x450) and at the model input size (224x224),
single-threaded, as the device runs them.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

from device.bench.stats import summarise_ms, time_call, write_json
from device.imaging.hair import remove_hair
from device.imaging.pipeline import PreprocessSpec, preprocess, to_working_size
from device.imaging.quality import QualityThresholds, assess_quality
from device.imaging.roi import crop_and_resize, square_roi
from device.imaging.segment import segment_lesion
from device.phantoms import make_phantom

SIZES = {"preview_640x480": (480, 640), "ham_600x450": (450, 600), "model_224": (224, 224)}


def configure(parser: argparse.ArgumentParser) -> None:
    """Register the benchmark's arguments."""
    parser.add_argument("--repeats", type=int, default=200, help="timed calls per stage")
    parser.add_argument("--json", metavar="OUT.json", help="also write the figures as JSON")


def bench_size(shape: tuple[int, int], repeats: int) -> dict[str, dict[str, float]]:
    """Time each stage of the default (version 3) spec on a phantom of ``shape`` (height, width)."""
    spec = PreprocessSpec()
    frame = make_phantom(7, size=shape).image
    work, _ = to_working_size(frame, spec.work_long_side)
    clean = remove_hair(work, spec.hair).image
    roi = square_roi(work.shape[:2], segment_lesion(clean, spec.segment).box, spec.crop)
    thresholds = QualityThresholds()
    return {
        "quality_gate": summarise_ms(time_call(lambda: assess_quality(frame, thresholds), repeats)),
        "to_working_size": summarise_ms(
            time_call(lambda: to_working_size(frame, spec.work_long_side), repeats)
        ),
        "hair_removal": summarise_ms(time_call(lambda: remove_hair(work, spec.hair), repeats)),
        "segmentation": summarise_ms(
            time_call(lambda: segment_lesion(clean, spec.segment), repeats)
        ),
        "crop_resize": summarise_ms(
            time_call(lambda: crop_and_resize(work, roi, spec.input_size), repeats)
        ),
        "total_preprocess": summarise_ms(time_call(lambda: preprocess(frame, spec), repeats)),
    }


def main(args: argparse.Namespace) -> int:
    """Run the benchmark, print a table, optionally write JSON."""
    cv2.setNumThreads(1)
    results = {name: bench_size(shape, args.repeats) for name, shape in SIZES.items()}
    print(f"{'stage':<18}" + "".join(f"{name:>26}" for name in results))
    for stage in next(iter(results.values())):
        cells = "".join(
            f"{r[stage]['median']:>12.2f} / {r[stage]['p95']:>7.2f} ms" for r in results.values()
        )
        print(f"{stage:<18}{cells}")
    print("(median / p95, one thread; frames are phantoms)")
    write_json(args.json, {"cv2_threads": 1, "numpy": np.__version__, "stages": results})
    return 0
