"""The training run: data -> cache -> two-phase transfer learning -> calibration -> report.

A run folder holds everything a later step needs (config, split, checkpoints, the
final model, calibration and metrics). Every file is written atomically, and
``state.json`` is written last after each epoch, so a run killed at any moment
resumes from its last finished epoch with ``skinscan train --resume RUN``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict
from pathlib import Path

from training.train_config import (
    RunExistsError,
    TrainConfig,
    _write_json,
)
from training.train_data import (
    _Data,
    make_batches,
    train_weights,
)
from training.train_loop import (
    _compile,
    _learning_rate_callback,
    end_epoch,
    end_phase,
    finish_run,
    load_or_build_model,
)

log = logging.getLogger(__name__)


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
