"""``skinscan train``: transfer learning on HAM10000 (desktop; needs the train extra)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    """Register the train arguments."""
    parser.add_argument(
        "--data",
        action="append",
        metavar="DIR",
        help="an archive folder: your HAM10000 folder (HAM10000_metadata.csv + images/); "
        "repeat it to add archives such as the isic-archive folder (each is its own source)",
    )
    parser.add_argument(
        "--hold-out-source",
        default="",
        metavar="SOURCE",
        help="leave every image of this acquisition source out of the run (e.g. rosendahl, "
        "isic-archive): the leave-one-source-out benchmark's full fold",
    )
    parser.add_argument(
        "--source-power",
        type=float,
        default=None,
        help="with several sources, weight each image by (n / (S n_source)) ** POWER on top "
        "of its class weight (0: sources at their natural share; 1: every source equal)",
    )
    parser.add_argument("--run", default="runs/ham10000", help="run folder to create")
    parser.add_argument("--resume", metavar="RUN", help="resume an interrupted run folder")
    parser.add_argument("--report-only", metavar="RUN", help="rewrite the report of a finished run")
    parser.add_argument("--cache", default="", help="preprocessed-image cache folder")
    parser.add_argument("--seed", type=int, default=0, help="initialisation and augmentation seed")
    parser.add_argument(
        "--split-seed", type=int, help="seed of the lesion-grouped split (default: --seed)"
    )
    parser.add_argument(
        "--keep-split",
        metavar="SPLIT_CSV",
        help="keep every image's split from an earlier run's split.csv (e.g. the shipped "
        "model's), so both are tested on the same images; images it does not name (a new "
        "archive) are split lesion-grouped among themselves",
    )
    parser.add_argument(
        "--backbone",
        type=_backbone_name,
        metavar="NAME",
        help="ImageNet backbone registered in training/backbones.py (default efficientnet_lite0)",
    )
    parser.add_argument(
        "--recipe",
        choices=("current", "v3"),
        default="current",
        help="current: preprocessing spec 6 (the colour region fitted on the training split) "
        "and acquisition augmentation; v3: the recipe of the shipped model's training (spec 3, "
        "v3 augmentation, 16 deep epochs; the shipped v6 run used --deep-epochs 14), which the "
        "shipped bundle then gets spec 6 from with 'skinscan convert --clamp-colour'",
    )
    parser.add_argument("--head-epochs", type=int, help="phase 1 epochs: the head only")
    parser.add_argument(
        "--finetune-epochs", type=int, help="phase 2 epochs: the head and the last blocks"
    )
    parser.add_argument(
        "--first-trainable-block", help="lowest backbone block trained in phase 2, e.g. block11"
    )
    parser.add_argument("--deep-epochs", type=int, help="phase 3 epochs (0 skips it)")
    parser.add_argument("--batch-size", type=int, help="images per training step")
    parser.add_argument(
        "--threshold-confidence",
        type=float,
        help="choose the referral threshold so the lower confidence bound of validation "
        "sensitivity (not its point estimate) reaches 0.90, e.g. 0.95",
    )
    parser.add_argument(
        "--no-hair-removal", action="store_true", help="ablation: preprocess without DullRazor"
    )
    parser.add_argument(
        "--crop-min-fraction",
        type=float,
        help="smallest ROI crop as a fraction of the short side (1.0: whole centred square)",
    )
    parser.add_argument("--limit-per-split", type=int, default=0, help="smoke tests: cap images")
    parser.add_argument("--steps-per-epoch", type=int, default=0, help="smoke tests: cap steps")
    parser.add_argument("--dropout", type=float, help="dropout before the logits (default 0.3)")
    parser.add_argument("--patience", type=int, help="early-stopping patience in epochs")
    parser.add_argument(
        "--no-augment",
        action="store_true",
        help="turn every random augmentation off (deterministic inputs)",
    )
    distributed = parser.add_argument_group("multi-worker training (TF_CONFIG names the cluster)")
    distributed.add_argument(
        "--distributed",
        action="store_true",
        help="train with tf.distribute.MultiWorkerMirroredStrategy; --batch-size is per replica",
    )
    distributed.add_argument(
        "--lr-scaling",
        choices=("linear", "none"),
        help="multiply learning rates by the number of replicas (linear, default) or not",
    )
    distributed.add_argument(
        "--collective-timeout",
        type=float,
        dest="collective_timeout_s",
        metavar="SECONDS",
        help="stop with an error when a worker is silent this long (default 120)",
    )
    distributed.add_argument(
        "--record-shards",
        metavar="DIR",
        help="each worker writes the image ids it trained on to DIR/worker-<rank>.jsonl",
    )


def _backbone_name(name: str) -> str:
    """A registered backbone name. The registry is imported only when the option is
    given, so building the parser (every ``skinscan`` start, the device's too) stays free."""
    from training.backbones import BACKBONES

    if name not in BACKBONES:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {name!r} (choose from {', '.join(sorted(BACKBONES))})"
        )
    return name


def main(args: argparse.Namespace) -> int:
    """Run or resume training; returns an exit code."""
    from device.errors import DatasetError
    from training.train import TrainConfig, run_training

    if args.report_only:
        from training.report import write_report

        write_report(Path(args.report_only))
        return 0
    if args.resume:
        saved = json.loads((Path(args.resume) / "config.json").read_text())
        run_training(TrainConfig(**saved), resume=True)
        return 0
    if not args.data:
        raise DatasetError("--data is required (the HAM10000 folder), or --resume RUN")
    # Check the data before anything creates the run folder, so a typo in --data
    # leaves nothing behind (and TensorFlow is not even imported).
    for folder in args.data:
        check_data(folder)
    if args.keep_split and not Path(args.keep_split).is_file():
        raise DatasetError(f"--keep-split {args.keep_split}: no such file (a run's split.csv)")
    cfg = TrainConfig(
        data_dir=str(Path(args.data[0]).resolve()),
        extra_data_dirs=[str(Path(d).resolve()) for d in args.data[1:]],
        hold_out_source=args.hold_out_source,
        run_dir=args.run,
        cache_dir=args.cache,
        seed=args.seed,
        split_seed=args.split_seed,
        keep_split=str(Path(args.keep_split).resolve()) if args.keep_split else "",
        limit_per_split=args.limit_per_split,
        steps_per_epoch=args.steps_per_epoch,
    )
    for name, value in recipe_overrides(args.recipe).items():
        setattr(cfg, name, value)
    tunables = (
        "backbone",
        "head_epochs",
        "finetune_epochs",
        "deep_epochs",
        "first_trainable_block",
        "batch_size",
        "threshold_confidence",
        "dropout",
        "patience",
        "lr_scaling",
        "collective_timeout_s",
        "record_shards",
        "source_power",
    )
    for name in tunables:
        value = getattr(args, name)
        if value is not None:
            setattr(cfg, name, value)
    cfg.preprocessing = _preprocessing(cfg.preprocessing, args)
    cfg.distributed = bool(args.distributed)
    if args.no_augment:
        cfg.augment = no_augmentation()
    run_training(cfg)
    return 0


def check_data(data_dir: str) -> None:
    """Refuse a dataset folder that has no usable image, before a run folder is made.

    Raises:
        DatasetError: the folder or its labels are missing, or no row has its image.
    """
    from device.errors import DatasetError
    from training.data import load_metadata

    folder = Path(data_dir)
    if not folder.is_dir():
        raise DatasetError(f"--data {data_dir}: no such folder (expected the HAM10000 folder)")
    samples, report = load_metadata(folder)
    if not samples:
        examples = "; ".join(f"{s['image_id']}: {s['reason']}" for s in report.skipped[:3])
        raise DatasetError(
            f"--data {data_dir}: no usable image ({len(report.skipped)} rows skipped"
            + (f", e.g. {examples})" if examples else ")")
        )


def recipe_overrides(recipe: str) -> dict:
    """TrainConfig fields that a named recipe sets (before the command line's own flags).

    "current" sets nothing: the TrainConfig defaults are the current recipe, preprocessing
    spec 6 (its colour region fitted on the run's training split and recorded in
    config.json) with the acquisition augmentation. "v3" is the recipe first used by run
    ``ham10000-v3`` and, with ``--deep-epochs 14``, by the shipped ``ham10000-isic-v6``:
    preprocessing spec 3, augmentation without the acquisition transforms (no channel
    gains, gamma, blur or JPEG; zoom 1-1.1), 16 deep epochs.
    """
    if recipe == "current":
        return {}
    if recipe != "v3":
        raise ValueError(f"unknown recipe {recipe!r}")
    from device.imaging.pipeline import default_spec
    from training.augment import AugmentConfig

    augment = AugmentConfig(
        zoom=(1.0, 1.1),
        channel_gain=0.0,
        gamma=(1.0, 1.0),
        blur_probability=0.0,
        jpeg_probability=0.0,
    )
    return {
        "preprocessing": default_spec(3).to_dict(),
        "augment": augment.to_dict(),
        "deep_epochs": 16,
    }


def no_augmentation() -> dict:
    """Augmentation ranges that leave every image as it is (deterministic runs, checks)."""
    from training.augment import AugmentConfig

    off = {
        "flip": False,
        "rotate": False,
        "crop_scale": (1.0, 1.0),
        "crop_ratio": (1.0, 1.0),
        "zoom": (1.0, 1.0),
        "brightness": 0.0,
        "contrast": 0.0,
        "hue": 0.0,
        "saturation": 0.0,
        "channel_gain": 0.0,
        "gamma": (1.0, 1.0),
        "blur_probability": 0.0,
        "jpeg_probability": 0.0,
    }
    base = AugmentConfig().to_dict()
    return AugmentConfig.from_dict(
        {**base, **{k: v for k, v in off.items() if k in base}}
    ).to_dict()


def _preprocessing(base: dict, args: argparse.Namespace) -> dict:
    """The run's preprocessing spec with the command line's ablations applied (validated)."""
    from device.imaging.pipeline import PreprocessSpec

    data = {**base, "crop": dict(base["crop"])}
    if args.no_hair_removal:
        data["hair_removal"] = False
    if args.crop_min_fraction is not None:
        data["crop"]["min_fraction"] = args.crop_min_fraction
    return PreprocessSpec.from_dict(data).to_dict()
