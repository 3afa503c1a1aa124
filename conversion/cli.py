"""``skinscan convert RUN --out BUNDLE_DIR``: a training run -> the int8 model bundle.

Converts ``RUN/model.keras`` to a full-integer int8 classifier and a Grad-CAM
gradient submodel, checks int8/float and Grad-CAM parity on the validation
split, measures the int8 bundle on the test split, and writes model.tflite,
gradcam.tflite, MODEL_CARD.md and manifest.json into BUNDLE_DIR.

It must be run from the repository root when the run's ``cache_dir`` is relative.
Needs the desktop extras (TensorFlow).

After writing the bundle it lowers the referral threshold, if needed, so that
malignant sensitivity stays >= 0.85 under realistic colour and resolution shifts
on the validation split (:mod:`conversion.shift_threshold`; needs the run's
images, ``--no-shift-threshold`` skips it). The same step alone, on an existing
bundle::

    skinscan convert --shift-threshold BUNDLE --metadata RUN/split.csv --images DIR

A finished spec-3 bundle gets spec v6 (its frames' illuminant clamped into the
training images' range; :mod:`conversion.clamp_colour`) as a new bundle, with its
calibration, familiarity check and shift threshold refitted::

    skinscan convert --clamp-colour BUNDLE --out NEW --metadata RUN/split.csv --images DIR
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

from conversion.convert import DEFAULT_REPRESENTATIVE
from device.errors import SkinScanError

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``convert`` arguments."""
    parser.add_argument(
        "run", type=Path, nargs="?", help="training run folder (from skinscan train)"
    )
    parser.add_argument("--out", type=Path, help="bundle folder to write")
    parser.add_argument(
        "--no-shift-threshold",
        action="store_true",
        help="keep the in-distribution referral threshold (skip the shift step)",
    )
    parser.add_argument(
        "--shift-threshold",
        type=Path,
        metavar="BUNDLE",
        help="only refit BUNDLE's referral threshold under shift (needs --metadata, --images)",
    )
    parser.add_argument(
        "--fit-familiarity",
        type=Path,
        metavar="BUNDLE",
        help="only fit BUNDLE's familiarity check from images (needs --metadata, --images; "
        "for bundles converted before the check existed)",
    )
    parser.add_argument(
        "--clamp-colour",
        type=Path,
        metavar="BUNDLE",
        help="write a copy of spec-3 BUNDLE to --out with spec v6: the illuminant clamped "
        "into the training images' range (needs --metadata, --images; no TensorFlow)",
    )
    parser.add_argument(
        "--quantile",
        type=float,
        default=0.975,
        help="with --clamp-colour: share of training images inside the region (default 0.975)",
    )
    parser.add_argument("--metadata", type=Path, help="with --shift-threshold: the split.csv")
    parser.add_argument(
        "--images",
        type=Path,
        action="append",
        help="with --shift-threshold, --clamp-colour: the image folder (repeat it for a run "
        "trained on several archives)",
    )
    parser.add_argument(
        "--held-out-folds",
        type=Path,
        metavar="BENCH_DIR",
        help="a 'skinscan bench sources --full' folder: also cap the referral threshold so "
        "the recipe refers 90%% of the melanomas of its held-out sources (with --fold)",
    )
    parser.add_argument(
        "--fold",
        action="append",
        default=[],
        metavar="NAME",
        help="a fold of --held-out-folds trained with this bundle's recipe, e.g. "
        "all-rosendahl; repeat it for every held-out source",
    )
    parser.add_argument(
        "--fold-predictions",
        nargs=3,
        action="append",
        default=[],
        metavar=("NAME", "VAL_NPZ", "HELD_OUT_NPZ"),
        help="a fold given as 'skinscan eval --predictions' files of a bundle that never saw "
        "one source: on its own validation split, and on that source",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="worker processes for the shift step"
    )
    parser.add_argument(
        "--representative",
        type=int,
        default=DEFAULT_REPRESENTATIVE,
        metavar="N",
        help="training images used to calibrate int8 ranges (>= 300, all classes; "
        f"default {DEFAULT_REPRESENTATIVE})",
    )
    parser.add_argument(
        "--parity-limit",
        type=int,
        default=0,
        metavar="N",
        help="use at most N validation images for the parity checks (default: all)",
    )
    parser.add_argument(
        "--gradcam-images",
        type=int,
        default=200,
        metavar="N",
        help="validation images for the Grad-CAM correlation (default 200)",
    )
    parser.add_argument("--bundle-id", help="id shown on the device (default: run id + hash)")
    parser.add_argument("--seed", type=int, default=0, help="sampling and bootstrap seed")
    parser.add_argument(
        "--force",
        action="store_true",
        help="write the bundle even if a parity check fails (the failure is recorded)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing bundle in --out"
    )
    parser.add_argument(
        "--overwrite-shipped",
        action="store_true",
        help="allow writing into the shipped bundle folder device/models/default (refused "
        "otherwise: a release step, not an experiment)",
    )


def is_shipped_folder(path: Path) -> bool:
    """Whether ``path`` is (or lies inside) the shipped bundle folder of this or any checkout."""
    import device

    shipped = (Path(device.__file__).resolve().parent / "models" / "default").resolve()
    resolved = path.resolve()
    inside = resolved == shipped or shipped in resolved.parents
    named = any(
        p.parts[-3:] == ("device", "models", "default") for p in (resolved, *resolved.parents)
    )
    return inside or named


def refuse_shipped_targets(args: argparse.Namespace) -> None:
    """Refuse any option that would write into the shipped bundle, unless --overwrite-shipped."""
    if getattr(args, "overwrite_shipped", False):
        return
    for flag in ("out", "shift_threshold", "fit_familiarity"):
        path = getattr(args, flag, None)
        if path is not None and is_shipped_folder(Path(path)):
            option = "--" + flag.replace("_", "-")
            raise SkinScanError(
                f"{option} {path} is the shipped bundle folder (device/models/default), which "
                "the device runs; write to another folder (e.g. runs/NAME-bundle), or pass "
                "--overwrite-shipped to replace the shipped bundle on purpose"
            )


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise SkinScanError(f"{out} is not empty; pass --overwrite to replace the bundle")
        for child in out.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()


def main(args: argparse.Namespace) -> int:
    """Run the conversion; returns 0 on success, 1 when parity fails without --force."""
    refuse_shipped_targets(args)  # before any import or step: nothing is touched
    from conversion.convert import convert_run
    from conversion.manifest import write_bundle
    from device.runtime.analyzer import Analyzer

    if args.clamp_colour is not None:
        return _clamp_colour(args)
    if args.shift_threshold is not None or args.fit_familiarity is not None:
        if args.metadata is None or args.images is None:
            raise SkinScanError("--shift-threshold and --fit-familiarity need --metadata, --images")
        if args.fit_familiarity is not None:
            from conversion.refit_familiarity import refit_familiarity

            fitted = refit_familiarity(args.fit_familiarity, args.metadata, args.images)
            print(
                f"familiarity check fitted: threshold {fitted['threshold']:.3f}, fires on "
                f"{100 * fitted['validation_fire_rate']:.1f}% of validation and "
                f"{100 * fitted['test_fire_rate']:.1f}% of test images"
            )
        if args.shift_threshold is None:
            return 0
        return _shift_threshold(args.shift_threshold, args.metadata, args.images, args)
    if args.run is None or args.out is None:
        raise SkinScanError("give a run folder and --out (or --shift-threshold BUNDLE)")
    if not args.run.is_dir():
        raise SkinScanError(f"{args.run}: run folder not found")
    if args.out.exists() and any(args.out.iterdir()) and not args.overwrite:
        raise SkinScanError(f"{args.out} is not empty; pass --overwrite to replace the bundle")
    images = _run_images(args.run) if not args.no_shift_threshold else None
    _held_out_folds(args)  # refuse missing fold evidence before the long conversion
    result = convert_run(
        args.run,
        representative_size=args.representative,
        parity_limit=args.parity_limit,
        gradcam_images=args.gradcam_images,
        bundle_id=args.bundle_id,
        seed=args.seed,
    )
    summary = {
        "bundle_id": result.manifest.bundle_id,
        "model_tflite_mb": round(result.report["model_tflite_bytes"] / 1e6, 3),
        "val_parity": result.report["classifier_val"],
        "gradcam": result.report["gradcam"],
        "oracle_max_error": result.report["oracle_max_error"],
        "runtimes": result.report["runtimes"],
        "int8_test": {
            k: result.manifest.metrics["int8_test"].get(k)
            for k in ("balanced_accuracy", "malignant_auc", "sensitivity", "specificity")
        },
        "failures": result.failures,
    }
    print(json.dumps(summary, indent=2))
    if result.failures and not args.force:
        print("skinscan convert: parity checks failed; no bundle written (use --force):")
        for line in result.failures:
            print(f"  - {line}")
        return 1
    _prepare_out(args.out, args.overwrite)
    write_bundle(args.out, result.files, result.manifest)
    # The written bundle must load through the device's own strict loader.
    analyzer = Analyzer.from_path(args.out)
    print(
        f"wrote {args.out} (bundle {analyzer.bundle.bundle_id}, runtime {analyzer.bundle.runtime})"
    )
    if images is None:
        return 0
    return _shift_threshold(args.out, args.run / "split.csv", images, args)


def _run_images(run: Path) -> list[Path]:
    """The run's image folders (one per archive), needed by the shift step; checked first."""
    try:
        config = json.loads((run / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise SkinScanError(f"{run / 'config.json'}: cannot be read ({exc})") from exc
    folders = [Path(config.get("data_dir", "")), *map(Path, config.get("extra_data_dirs", []))]
    images = [folder / "images" for folder in folders]
    for folder in images:
        if not folder.is_dir():
            raise SkinScanError(
                f"{folder}: the run's images are needed for the shift threshold "
                "(or pass --no-shift-threshold)"
            )
    return images


def _clamp_colour(args: argparse.Namespace) -> int:
    from conversion.clamp_colour import clamp_bundle_colour

    if args.metadata is None or args.images is None or args.out is None:
        raise SkinScanError("--clamp-colour needs --out, --metadata and --images")
    record = clamp_bundle_colour(
        args.clamp_colour,
        args.out,
        args.metadata,
        args.images,
        quantile=args.quantile,
        bundle_id=args.bundle_id,
        workers=args.workers,
        seed=args.seed,
        shift_threshold=not args.no_shift_threshold,
        held_out_folds=_held_out_folds(args),
    )
    val = record["val"]
    print(
        f"wrote {args.out}: spec v6, region radius {record['radius']:.3f} (q = "
        f"{record['quantile']}); validation balanced accuracy {val['balanced_accuracy']:.3f}, "
        f"malignant AUC {val['malignant_auc']:.3f}, in-distribution threshold "
        f"{val['referral_threshold']:.4f}"
    )
    return 0


def _held_out_folds(args: argparse.Namespace) -> list | None:
    """The --held-out-folds/--fold evidence, checked before any long step; None without it."""
    if args.held_out_folds is None and not args.fold and not args.fold_predictions:
        return None
    from conversion.held_out_threshold import folds_from_bench

    return folds_from_bench(args.held_out_folds, args.fold, args.fold_predictions)


def _shift_threshold(
    bundle: Path, metadata: Path, images: Path | list[Path], args: argparse.Namespace
) -> int:
    from conversion.shift_threshold import apply_shift_threshold

    record = apply_shift_threshold(
        bundle,
        metadata,
        images,
        workers=args.workers,
        seed=args.seed,
        held_out_folds=_held_out_folds(args),
    )
    print(
        f"referral threshold: {record['in_distribution_threshold']:.4f} -> "
        f"{record['threshold']:.4f}, set by {record.get('set_by', 'shifts')} "
        f"(worst shift {record['worst_shift']}; {record['rule']})"
    )
    return 0
