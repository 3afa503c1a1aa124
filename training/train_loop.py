"""The pieces of a training run that one machine and several share: compile, epoch and
phase ends with atomic checkpoints, building or resuming the model, calibration, and
the run's final files.

Kept apart from :mod:`training.train` so that :mod:`training.distributed` can use them
without importing the module that dispatches to it."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from device.labels import CLASS_CODES
from training.train_config import (
    TrainConfig,
    _citation,
    _write_json,
)
from training.train_data import (
    _Data,
)

log = logging.getLogger(__name__)


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
