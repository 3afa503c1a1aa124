"""``skinscan bench pipeline``: per-stage time of the image pipeline on one core.

Stages are timed on phantom frames at the camera preview size (640x480), at the
HAM10000 image size (600x450) and at the model input size (224x224),
single-threaded, as the device runs them, with the shipped bundle's spec. The
colour stage is timed on the working copy of a 3000 K cast, which the shipped spec
corrects (the estimate alone runs on every frame).
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

from device.bench.stats import summarise_ms, time_call, write_json
from device.evaluation.shifts import shift_by_name
from device.imaging.colour import normalise_colour
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


def shipped_spec() -> PreprocessSpec:
    """The preprocessing spec of the shipped bundle."""
    from device.runtime.bundle import DEFAULT_BUNDLE_DIR, read_manifest

    return PreprocessSpec.from_dict(dict(read_manifest(DEFAULT_BUNDLE_DIR).preprocessing))


def bench_size(
    shape: tuple[int, int], repeats: int, spec: PreprocessSpec | None = None
) -> dict[str, dict[str, float]]:
    """Time each stage of ``spec`` (default: the shipped one) on a phantom of ``shape``."""
    spec = spec or shipped_spec()
    frame = make_phantom(7, size=shape).image
    work, _ = to_working_size(frame, spec.work_long_side)
    warm, _ = to_working_size(shift_by_name("colour-3000K").apply(frame), spec.work_long_side)
    clean = remove_hair(work, spec.hair).image
    roi = square_roi(work.shape[:2], segment_lesion(clean, spec.segment).box, spec.crop)
    thresholds = QualityThresholds()
    return {
        "quality_gate": summarise_ms(time_call(lambda: assess_quality(frame, thresholds), repeats)),
        "to_working_size": summarise_ms(
            time_call(lambda: to_working_size(frame, spec.work_long_side), repeats)
        ),
        "colour": summarise_ms(time_call(lambda: normalise_colour(warm, spec.colour), repeats)),
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
    spec = shipped_spec()
    results = {name: bench_size(shape, args.repeats, spec) for name, shape in SIZES.items()}
    print(f"{'stage':<18}" + "".join(f"{name:>26}" for name in results))
    for stage in next(iter(results.values())):
        cells = "".join(
            f"{r[stage]['median']:>12.2f} / {r[stage]['p95']:>7.2f} ms" for r in results.values()
        )
        print(f"{stage:<18}{cells}")
    print(f"(median / p95, one thread; frames are phantoms; spec version {spec.version})")
    write_json(
        args.json,
        {
            "cv2_threads": 1,
            "numpy": np.__version__,
            "spec_version": spec.version,
            "stages": results,
        },
    )
    return 0
