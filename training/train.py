"""The training run: data -> cache -> two-phase transfer learning -> calibration -> report.

A run folder holds everything a later step needs (config, split, checkpoints, the
final model, calibration and metrics). Every file is written atomically, and
``state.json`` is written last after each epoch, so a run killed at any moment
resumes from its last finished epoch with ``skinscan train --resume RUN``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from device.errors import SkinScanError
from device.imaging.pipeline import PreprocessSpec
from device.labels import CLASS_CODES
from training.augment import AugmentConfig, augment

log = logging.getLogger(__name__)

HAM10000_CITATION = (
    "HAM10000: Tschandl, Rosendahl & Kittler, Scientific Data 5, 180161 (2018), CC BY-NC 4.0"
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
        parts.append(HAM10000_CITATION if name == "ham10000" else f"{name} archive {folder}")
    return "; ".join(parts)


def write_calibration(
    run_dir: Path,
    logits: dict[str, tuple[np.ndarray, np.ndarray]],
    min_sensitivity: float,
    threshold_confidence: float,
    uncertainty_threshold: float,
) -> dict[str, Any]:
    """Fit temperature and referral threshold on validation; write calibration.json and
    logits.npz.

    Args:
        run_dir: the run folder.
        logits: ``{"val": (logits, labels), "test": (logits, labels)}``.
        min_sensitivity, threshold_confidence: the referral-threshold rule.
        uncertainty_threshold: recorded for the device.

    Returns:
        The calibration written.
    """
    from training.calibration import fit_temperature, referral_threshold, softmax

    val_logits, val_labels = logits["val"]
    temperature = fit_temperature(val_logits, val_labels)
    threshold = referral_threshold(
        softmax(val_logits, temperature), val_labels, min_sensitivity, threshold_confidence
    )
    calibration = {
        "temperature": temperature,
        "referral_threshold": threshold,
        "uncertainty_threshold": uncertainty_threshold,
        "min_sensitivity_target": min_sensitivity,
        "threshold_confidence": threshold_confidence,
        "fitted_on": "val",
    }
    _write_json(run_dir / "calibration.json", calibration)
    test_logits, test_labels = logits["test"]
    np.savez(
        run_dir / "logits.npz",
        val_logits=val_logits,
        val_labels=val_labels,
        test_logits=test_logits,
        test_labels=test_labels,
    )
    return calibration


def _class_weights(labels: np.ndarray, mode: str) -> np.ndarray:
    counts = np.bincount(labels, minlength=len(CLASS_CODES)).astype(np.float64)
    if mode == "none":
        return np.ones(len(CLASS_CODES))
    if mode != "inverse_frequency":
        raise ValueError(f"class_weighting must be 'inverse_frequency' or 'none', got {mode!r}")
    return np.where(counts > 0, counts.sum() / (len(CLASS_CODES) * np.maximum(counts, 1)), 0.0)


def make_batches(
    cfg: TrainConfig,
    images: np.ndarray,
    labels: np.ndarray,
    steps: int,
    sample_weights: np.ndarray | None = None,
):
    """A Keras PyDataset of augmented, one-hot, weighted batches.

    Each image's loss weight is ``sample_weights`` when given (class and source
    balanced, :func:`training.sources.balanced_weights`), else its class weight.
    """
    import keras

    if sample_weights is None:
        sample_weights = _class_weights(labels, cfg.class_weighting)[labels]
    augment_cfg = AugmentConfig.from_dict(cfg.augment)

    class Batches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__(workers=1, use_multiprocessing=False)
            self.epoch = 0
            self._order = self._shuffle()

        def _shuffle(self) -> np.ndarray:
            return np.random.default_rng([cfg.seed, self.epoch]).permutation(len(labels))

        def __len__(self) -> int:
            return steps

        def __getitem__(self, index: int):
            rng = np.random.default_rng([cfg.seed, self.epoch, index])
            rows = np.take(
                self._order,
                np.arange(index * cfg.batch_size, (index + 1) * cfg.batch_size),
                mode="wrap",
            )
            x = np.stack([augment(images[r], rng, augment_cfg) for r in rows]).astype(np.float32)
            y = np.eye(len(CLASS_CODES), dtype=np.float32)[labels[rows]]
            return x, y, sample_weights[rows].astype(np.float32)

        def on_epoch_end(self) -> None:
            self.epoch += 1
            self._order = self._shuffle()

    return Batches()


def predict_logits(model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Logits of a model for uint8 images, in batches."""
    out = []
    for start in range(0, len(images), batch_size):
        batch = np.asarray(images[start : start + batch_size], dtype=np.float32)
        out.append(np.asarray(model(batch, training=False)))
    return np.concatenate(out) if out else np.zeros((0, len(CLASS_CODES)), np.float32)


def _lr_at(step: int, total_steps: int, warmup_steps: int, peak: float) -> float:
    if warmup_steps and step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _learning_rate_callback(state: dict[str, Any], total_steps: int, warmup: int, peak: float):
    """A callback that sets the learning rate before every step from the phase's step count."""
    import keras

    class LearningRate(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            step = int(self.model.optimizer.iterations.numpy()) - state.get("phase_step0", 0)
            self.model.optimizer.learning_rate.assign(_lr_at(step, total_steps, warmup, peak))

    return LearningRate()


def _compile(model, cfg: TrainConfig, lr: float, head_multiplier: float) -> None:
    import keras

    from training.optimizer import HeadBoostedAdamW

    model.compile(
        optimizer=HeadBoostedAdamW(
            head_multiplier=head_multiplier,
            head_layers=("logits",),
            learning_rate=lr,
            weight_decay=cfg.weight_decay,
        ),
        loss=keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=cfg.label_smoothing
        ),
    )


def _save_model(model, path: Path) -> None:
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    model.save(tmp)
    os.replace(tmp, path)


def _save_weights(model, path: Path) -> None:
    tmp = path.with_name(path.name.replace(".weights.h5", ".tmp.weights.h5"))
    model.save_weights(tmp)
    os.replace(tmp, path)


class _Data:
    """The run's split as arrays in memory."""

    def __init__(self, cfg: TrainConfig, run_dir: Path) -> None:
        from tqdm import tqdm

        from training.data import (
            build_cache,
            dataset_hash,
            read_split_csv,
            split_seed_of,
            with_colour_reference,
            write_split_csv,
        )
        from training.sources import source_counts

        samples, load_report, splitter = _load_samples(cfg)
        split_path = run_dir / "split.csv"
        if not split_path.is_file():
            write_split_csv(split_path, samples, splitter(samples, seed=split_seed_of(asdict(cfg))))
        assignment = {r["image_id"]: r["split"] for r in read_split_csv(split_path)}
        samples = [s for s in samples if s.image_id in assignment]
        if cfg.limit_per_split:
            samples = _stratified_subset(samples, assignment, cfg.limit_per_split)
        spec = PreprocessSpec.from_dict(cfg.preprocessing)
        train_samples = [s for s in samples if assignment[s.image_id] == "train"]
        fitted = with_colour_reference(spec, train_samples)
        if fitted != spec:
            # Recorded in config.json at once, so a resumed run and the conversion reuse it.
            spec = fitted
            cfg.preprocessing = spec.to_dict()
            _write_json(run_dir / "config.json", asdict(cfg))
        cache = build_cache(
            samples,
            Path(cfg.cache_dir),
            spec,
            workers=cfg.workers,
            progress=lambda it: tqdm(it, total=len(samples), desc="preprocess", unit="img"),
        )
        for image_id, reason in cache.failed.items():
            load_report.skip(image_id, reason)
        self.samples = [s for s in samples if s.image_id not in cache.failed]
        self.skipped = load_report.skipped
        self.layout, self.grouping = load_report.layout, load_report.grouping
        self.data_hash = dataset_hash(self.samples)
        self.sources = source_counts(self.samples)
        self.split_hash = _file_hash(split_path)
        self.by_split: dict[str, tuple[np.ndarray, np.ndarray, list]] = {}
        for split in ("train", "val", "test"):
            chosen = [s for s in self.samples if assignment[s.image_id] == split]
            rows = cache.rows(s.image_id for s in chosen)
            images = np.asarray(cache.images[np.sort(rows)])[np.argsort(np.argsort(rows))]
            labels = np.array([s.label for s in chosen], dtype=np.int64)
            self.by_split[split] = (images, labels, chosen)


def _load_samples(cfg: TrainConfig):
    """(samples, load report, split function) of a run: one archive, or several sources.

    One archive without a held-out source reads and splits exactly as before
    (lesion-grouped, stratified by diagnosis), so old runs and their split files stay
    valid. Several archives, or a held-out source, read every archive with its
    sources and split stratified by (source, diagnosis).
    """
    from training.data import LoadReport, grouped_split, load_metadata, load_sources
    from training.sources import held_out_fold, source_split

    if not cfg.extra_data_dirs and not cfg.hold_out_source:
        samples, report = load_metadata(cfg.data_dir)
        return samples, report, grouped_split
    samples, reports = load_sources([cfg.data_dir, *cfg.extra_data_dirs])
    merged = LoadReport(
        kept=len(samples),
        skipped=[entry for r in reports for entry in r.skipped],
        layout="+".join(r.layout for r in reports),
        grouping="; ".join(r.grouping for r in reports),
    )
    if cfg.hold_out_source:
        samples, held = held_out_fold(samples, cfg.hold_out_source)
        log.info("source %s held out: %d images never used", cfg.hold_out_source, len(held))
    return samples, merged, source_split


def _stratified_subset(samples: list, assignment: dict[str, str], limit: int) -> list:
    """At most ``limit`` images per split, dealt round-robin over the classes (smoke runs)."""
    kept: list = []
    for split in ("train", "val", "test"):
        per_class = {
            dx: [s for s in samples if s.dx == dx and assignment[s.image_id] == split]
            for dx in CLASS_CODES
        }
        chosen: list = []
        depth = 0
        while len(chosen) < limit and any(len(v) > depth for v in per_class.values()):
            chosen += [v[depth] for v in per_class.values() if len(v) > depth]
            depth += 1
        kept += chosen[:limit]
    return kept


def _file_hash(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def end_epoch(
    cfg: TrainConfig,
    state: dict[str, Any],
    record: dict[str, Any],
    model: Any,
    validation: tuple[np.ndarray, np.ndarray],
    paths: tuple[Path, Path, Path],
    epochs: int,
    clock: tuple[float, float],
) -> bool:
    """Close one epoch: validate, log, keep the best weights, checkpoint; True to stop early.

    Args:
        cfg: the run's config (patience).
        state: the run state, updated in place and written to ``paths[2]``.
        record: ``phase``, ``epoch`` (1-based), ``loss``, ``tick`` (epoch start time) and
            any extra fields for the history.
        model: the model being trained.
        validation: (images, labels) of the validation split.
        paths: (best weights, last checkpoint, state.json).
        epochs: the phase's epoch count (for the log line).
        clock: (training seconds before this invocation, ``time.time()`` when it started).
    """
    from device.metrics import balanced_accuracy
    from training.calibration import softmax

    best_path, checkpoint, state_path = paths
    x_val, y_val = validation
    phase, epoch = record["phase"], record["epoch"]
    score = balanced_accuracy(y_val, softmax(predict_logits(model, x_val)))
    tick = record.pop("tick")
    record.update(val_balanced_accuracy=score, seconds=round(time.time() - tick, 1))
    state["history"].append(record)
    log.info(
        "%s epoch %d/%d: loss %.4f, val balanced accuracy %.4f (%.0fs)",
        phase,
        epoch,
        epochs,
        record["loss"],
        score,
        record["seconds"],
    )
    if score > state["best"]:
        state["best"], state["best_epoch"], state["bad_epochs"] = score, f"{phase}-{epoch}", 0
        _save_weights(model, best_path)
    else:
        state["bad_epochs"] += 1
    state["epoch"] = epoch
    state["elapsed_s"] = clock[0] + time.time() - clock[1]
    _save_model(model, checkpoint)
    _write_json(state_path, state)
    if phase != "head" and state["bad_epochs"] >= cfg.patience:
        log.info("early stop: no val improvement for %d epochs", cfg.patience)
        return True
    return False


def end_phase(
    state: dict[str, Any],
    names: list[str],
    phase: str,
    model: Any,
    checkpoint: Path,
    state_path: Path,
) -> None:
    """Move the run state to the next phase (or "done") and checkpoint."""
    position = names.index(phase)
    next_phase = names[position + 1] if position + 1 < len(names) else "done"
    state.update(phase=next_phase, epoch=0, bad_epochs=0)
    _save_model(model, checkpoint)
    _write_json(state_path, state)


def load_or_build_model(
    cfg: TrainConfig, run_dir: Path, state_path: Path, checkpoint: Path, resume: bool
) -> tuple[Any, Any, dict[str, Any], str | None]:
    """The backbone, the model and the run state: resumed from the checkpoint or fresh.

    Returns:
        (backbone, model, state, phase the loaded model's optimiser was built for or None).
    """
    import keras

    from training.backbones import build_backbone
    from training.model import build_classifier

    state: dict[str, Any] = {
        "phase": "head",
        "epoch": 0,
        "best": -1.0,
        "best_epoch": None,
        "history": [],
        "bad_epochs": 0,
        "elapsed_s": 0.0,
    }
    backbone = build_backbone(
        cfg.backbone, cfg.input_size, weights=not (resume and checkpoint.exists())
    )
    if resume and state_path.exists() and checkpoint.exists():
        state = json.loads(state_path.read_text())
        import training.optimizer  # noqa: F401  (registers the checkpoint's optimiser class)

        model = keras.models.load_model(checkpoint, compile=True)
        log.info("resumed %s at phase %s epoch %d", run_dir, state["phase"], state["epoch"])
        return backbone, model, state, state["phase"]
    return backbone, build_classifier(backbone, len(CLASS_CODES), cfg.dropout), state, None


def run_training(cfg: TrainConfig, resume: bool = False) -> Path:
    """Train (or resume) a run and write its model, calibration, metrics and report.

    Returns:
        The run folder.
    """
    if cfg.distributed and cfg.source_power:
        from device.errors import ConfigError

        raise ConfigError("source_power: source-balanced weights are not yet in distributed runs")
    if cfg.distributed:
        from training.distributed import run_distributed_training

        return run_distributed_training(cfg, resume=resume)
    import keras

    from training.model import set_trainable

    run_dir = Path(cfg.run_dir)
    state_path = run_dir / "state.json"
    if state_path.exists() and not resume:
        raise RunExistsError(f"{run_dir} already holds a run: resume it with --resume {run_dir}")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    if not cfg.cache_dir:
        cfg.cache_dir = str(run_dir.parent / "cache")
    _write_json(run_dir / "config.json", asdict(cfg))
    file_log = logging.FileHandler(run_dir / "train.log")
    file_log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(file_log)
    started = time.time()
    keras.utils.set_random_seed(cfg.seed)

    data = _Data(cfg, run_dir)
    x_train, y_train, _ = data.by_split["train"]
    x_val, y_val, _ = data.by_split["val"]
    log.info(
        "images: train %d, val %d, test %d; skipped %d",
        len(y_train),
        len(y_val),
        len(data.by_split["test"][1]),
        len(data.skipped),
    )

    checkpoint = run_dir / "checkpoints" / "last.keras"
    best_path = run_dir / "checkpoints" / "best.weights.h5"
    backbone, model, state, loaded_phase = load_or_build_model(
        cfg, run_dir, state_path, checkpoint, resume
    )
    elapsed_before = state.get("elapsed_s", 0.0)

    full_steps = math.ceil(len(y_train) / cfg.batch_size)
    steps = min(full_steps, cfg.steps_per_epoch) if cfg.steps_per_epoch else full_steps
    batches = make_batches(cfg, x_train, y_train, steps, train_weights(cfg, data))
    phases = [
        ("head", cfg.head_epochs, cfg.head_lr, None),
        ("finetune", cfg.finetune_epochs, cfg.finetune_lr, cfg.first_trainable_block),
        ("deep", cfg.deep_epochs, cfg.deep_lr, cfg.deep_first_trainable_block),
    ]
    phases = [p for p in phases if p[1] > 0]
    names = [p[0] for p in phases]
    for phase, epochs, peak_lr, first_block in phases:
        if state["phase"] == "done" or names.index(phase) < names.index(state["phase"]):
            continue
        if state["epoch"] == 0 and names.index(phase) > 0 and best_path.exists():
            # Each later phase starts from the best weights so far, not the last ones.
            model.load_weights(best_path)
        count = set_trainable(model, backbone.block_names, first_block)
        # A run resumed at a phase's first epoch has the previous phase's optimiser, built
        # for other trainable variables: it needs a fresh one, as an uninterrupted run has.
        if loaded_phase != phase or state["epoch"] == 0:
            _compile(model, cfg, peak_lr, 1.0 if phase == "head" else cfg.head_lr_multiplier)
        loaded_phase = None
        log.info(
            "phase %s: %d trainable tensors, %d epochs of %d steps", phase, count, epochs, steps
        )
        total_steps = epochs * steps
        warmup = int(cfg.warmup_epochs * steps) if phase != "head" else 0

        if state["epoch"] == 0:
            state["phase_step0"] = int(model.optimizer.iterations.numpy())
        while state["epoch"] < epochs:
            epoch = state["epoch"]
            batches.epoch = len(state["history"])
            batches._order = batches._shuffle()
            tick = time.time()
            fit = model.fit(
                batches,
                epochs=1,
                verbose=2 if os.environ.get("CI") else 1,
                callbacks=[_learning_rate_callback(state, total_steps, warmup, peak_lr)],
            )
            loss = float(fit.history["loss"][-1])
            record = {"phase": phase, "epoch": epoch + 1, "loss": loss, "tick": tick}
            paths = (best_path, checkpoint, state_path)
            clock = (elapsed_before, started)
            if end_epoch(cfg, state, record, model, (x_val, y_val), paths, epochs, clock):
                break
        end_phase(state, names, phase, model, checkpoint, state_path)

    finish_run(cfg, run_dir, model, data, state, backbone, elapsed_before, started)
    return run_dir


def train_weights(cfg: TrainConfig, data: _Data) -> np.ndarray | None:
    """Per-image loss weights of the training split: class and source balanced.

    None (class weights only, as before) for a run with one source or ``source_power`` 0.
    """
    from training.sources import balanced_weights

    chosen = data.by_split["train"][2]
    if len(data.sources) < 2 or cfg.source_power == 0 or cfg.class_weighting == "none":
        return None
    return balanced_weights(chosen, cfg.source_power).astype(np.float32)


def finish_run(
    cfg: TrainConfig,
    run_dir: Path,
    model: Any,
    data: _Data,
    state: dict[str, Any],
    backbone: Any,
    elapsed_before: float,
    started: float,
) -> None:
    """Write the final model (best weights), calibration, provenance and report of a run."""
    best_path = run_dir / "checkpoints" / "best.weights.h5"
    x_val, y_val, _ = data.by_split["val"]
    model.load_weights(best_path)
    _save_model(model, run_dir / "model.keras")
    val_logits = predict_logits(model, x_val)
    x_test, y_test, _ = data.by_split["test"]
    test_logits = predict_logits(model, x_test)
    write_calibration(
        run_dir,
        {"val": (val_logits, y_val), "test": (test_logits, y_test)},
        cfg.min_sensitivity,
        cfg.threshold_confidence,
        cfg.uncertainty_threshold,
    )
    state["elapsed_s"] = elapsed_before + time.time() - started
    _write_json(run_dir / "state.json", state)
    _write_json(
        run_dir / "provenance.json",
        {
            "run_id": run_dir.name,
            "data_hash": data.data_hash,
            "split_hash": data.split_hash,
            "backbone": cfg.backbone,
            "weights_source": backbone.weights_source,
            "weights_licence": backbone.weights_licence,
            "dataset": _citation(data.layout, cfg),
            "data_layout": data.layout,
            "data_dirs": [cfg.data_dir, *cfg.extra_data_dirs],
            "sources": data.sources,
            "held_out_source": cfg.hold_out_source or None,
            "split_grouping": data.grouping,
            "skipped": data.skipped,
            "train_seconds": state["elapsed_s"],
            "best_epoch": state["best_epoch"],
        },
    )
    from training.report import write_report

    write_report(run_dir)
    log.info("run finished in %.1f min: %s", state["elapsed_s"] / 60, run_dir)
