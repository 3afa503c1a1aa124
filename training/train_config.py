"""A training run's configuration (config.json), its citation, and atomic JSON writes."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device.errors import SkinScanError
from device.imaging.pipeline import PreprocessSpec
from training.augment import AugmentConfig

log = logging.getLogger(__name__)


HAM10000_CITATION = (
    "HAM10000: Tschandl, Rosendahl & Kittler, Scientific Data 5, 180161 (2018), CC BY-NC 4.0"
)
ISIC_ARCHIVE_CITATION = (
    "ISIC archive images: Codella et al. 2018 (arXiv:1710.05006) and Gutman et al. 2016 "
    "(arXiv:1605.01397), CC-0 / CC BY-NC 4.0 as listed by ISIC"
)


class RunExistsError(SkinScanError, FileExistsError):
    """The run folder already holds a run; resume it instead of overwriting it."""


@dataclass
class TrainConfig:
    """Every choice of a run; saved as config.json in the run folder.

    Attributes:
        data_dir: HAM10000 folder (metadata CSV + images/).
        run_dir: output folder.
        cache_dir: where preprocessed model inputs are cached, keyed by spec hash.
        seed: seed of the initialisation, shuffling and augmentation (and of the
            split, unless split_seed is set).
        split_seed: seed of the lesion-grouped split; None uses ``seed``. Members of
            an ensemble share a split and differ in ``seed``.
        backbone: name in training.backbones.BACKBONES.
        input_size: model input side (224 gives a 7x7 Grad-CAM grid).
        dropout: dropout before the logits.
        batch_size: images per step.
        head_epochs: phase 1, head only on the frozen backbone.
        head_lr: phase 1 learning rate.
        finetune_epochs: phase 2 (top blocks) maximum epochs; 0 skips it.
        finetune_lr: phase 2 peak learning rate (warm-up then cosine).
        warmup_epochs: linear warm-up length of phases 2 and 3.
        first_trainable_block: lowest backbone block trained in phase 2.
        deep_epochs: phase 3 (deeper blocks) maximum epochs; 0 skips it.
        deep_lr: phase 3 peak learning rate.
        deep_first_trainable_block: lowest backbone block trained in phase 3.
        head_lr_multiplier: in phases 2 and 3, the head's learning rate is this many
            times the backbone's (see training.optimizer).
        weight_decay: AdamW decoupled weight decay.
        label_smoothing: label smoothing of the cross-entropy.
        class_weighting: "inverse_frequency" (n / (7 n_c)) or "none".
        patience: early stopping patience on validation balanced accuracy.
        min_sensitivity: malignant sensitivity the referral threshold must keep on val.
        threshold_confidence: 0 keeps the point estimate on val at min_sensitivity; e.g.
            0.95 keeps the one-sided Clopper-Pearson lower bound there instead.
        uncertainty_threshold: top-1 calibrated confidence below which the device says
            "uncertain".
        limit_per_split: keep at most this many images per split (smoke tests).
        steps_per_epoch: cap on steps per epoch (smoke tests); 0 means a full epoch.
        workers: processes for preprocessing.
        preprocessing: the device preprocessing spec (dict form).
        augment: augmentation ranges (dict form).
        distributed: train with tf.distribute.MultiWorkerMirroredStrategy across the
            workers named by TF_CONFIG (training.distributed); ``batch_size`` is then per
            replica.
        lr_scaling: "linear" multiplies every learning rate by the number of replicas
            (the global batch grows with it); "none" keeps them.
        collective_timeout_s: a distributed run stops with an error when a collective
            op (gradient all-reduce) or a worker heartbeat waits longer than this.
        record_shards: folder where each worker of a distributed run writes the training
            rows it read, per epoch (checks and debugging); empty: not recorded.
        distribution: filled in by a distributed run: workers, replicas, global batch
            and learning-rate scale actually used.
        extra_data_dirs: further archive folders trained on with ``data_dir`` (for
            example the isic-archive folder); each is its own acquisition source.
        hold_out_source: an acquisition source left out of the whole run (train, val
            and test), for the leave-one-source-out benchmark; empty: none.
        source_power: with several sources, each image's loss weight is the class
            weight times ``(n / (S n_s)) ** source_power`` (training.sources); 0 keeps
            sources at their natural share.
        keep_split: an earlier run's split.csv whose assignment every image it names
            keeps (training.sources.extend_split); the other images are split afresh.
            Empty: a new split.
    """

    data_dir: str
    run_dir: str
    cache_dir: str = ""
    seed: int = 0
    split_seed: int | None = None
    backbone: str = "efficientnet_lite0"
    input_size: int = 224
    dropout: float = 0.3
    batch_size: int = 32
    head_epochs: int = 1
    head_lr: float = 2e-3
    finetune_epochs: int = 0
    finetune_lr: float = 4e-4
    warmup_epochs: float = 1.0
    first_trainable_block: str = "block11"
    deep_epochs: int = 16
    deep_lr: float = 2e-4
    deep_first_trainable_block: str = "block5"
    head_lr_multiplier: float = 10.0
    weight_decay: float = 1e-2
    label_smoothing: float = 0.1
    class_weighting: str = "inverse_frequency"
    patience: int = 5
    min_sensitivity: float = 0.90
    threshold_confidence: float = 0.95
    uncertainty_threshold: float = 0.5
    limit_per_split: int = 0
    steps_per_epoch: int = 0
    workers: int = 2
    preprocessing: dict[str, Any] = field(default_factory=lambda: PreprocessSpec().to_dict())
    augment: dict[str, Any] = field(default_factory=lambda: AugmentConfig().to_dict())
    distributed: bool = False
    lr_scaling: str = "linear"
    collective_timeout_s: float = 120.0
    record_shards: str = ""
    distribution: dict[str, Any] | None = None
    extra_data_dirs: list[str] = field(default_factory=list)
    hold_out_source: str = ""
    source_power: float = 0.0
    keep_split: str = ""


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _citation(layout: str, cfg: TrainConfig) -> str:
    """Who to cite for the data of a run (every archive it read)."""
    parts = []
    for name, folder in zip(layout.split("+"), [cfg.data_dir, *cfg.extra_data_dirs], strict=False):
        parts.append(archive_citation(name, Path(folder)))
    return "; ".join(parts)


def archive_citation(layout: str, folder: Path) -> str:
    """The citation of one archive: HAM10000's, the ISIC archive's, or its folder's name."""
    if layout == "ham10000":
        return HAM10000_CITATION
    if layout == "isic_onehot" or "isic" in folder.name.lower():
        return f"{ISIC_ARCHIVE_CITATION} (folder {folder.name})"
    return f"{layout} archive {folder.name} (cite its source)"
