"""Average several trained runs into one model that keeps the bundle contract.

Members are runs on the same lesion-grouped split and preprocessing spec that
differ in their initialisation seed. Each member is backbone -> GAP -> Dense, so
the mean of their logits is itself a GAP -> Dense head on the members' feature
maps stacked along channels:

    mean_i(GAP(F_i) W_i + b_i) = GAP([F_1 .. F_n]) [W_1; ..; W_n] / n + mean_i(b_i)

The ensemble therefore has one ``feature_map`` layer (the concatenation) and one
``logits`` Dense layer, converts like a single model, and its Grad-CAM is still
exactly CAM (the mean of the members' CAMs).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device.errors import ConfigError, DatasetError
from training.model import FEATURE_MAP_LAYER, LOGITS_LAYER, load_keras_model

log = logging.getLogger(__name__)

# Config keys that must agree for members to be averaged without a leak or a mismatch.
SHARED_CONFIG_KEYS = (
    "data_dir",
    "input_size",
    "min_sensitivity",
    "threshold_confidence",
    "uncertainty_threshold",
)


@dataclass(frozen=True)
class Member:
    """One finished training run taking part in an ensemble."""

    run_dir: Path
    config: dict[str, Any]
    split_csv: bytes
    logits: dict[str, np.ndarray]

    @classmethod
    def load(cls, run_dir: Path) -> Member:
        """Read a finished run's config, split and logits.

        Raises:
            DatasetError: when the run is unfinished or a file is missing.
        """
        run_dir = Path(run_dir)
        needed = ("config.json", "split.csv", "logits.npz", "model.keras", "provenance.json")
        missing = [name for name in needed if not (run_dir / name).is_file()]
        if missing:
            raise DatasetError(f"{run_dir} is not a finished training run: missing {missing}")
        with np.load(run_dir / "logits.npz") as data:
            logits = {key: np.asarray(data[key]) for key in data.files}
        return cls(
            run_dir=run_dir,
            config=json.loads((run_dir / "config.json").read_text()),
            split_csv=(run_dir / "split.csv").read_bytes(),
            logits=logits,
        )


def check_compatible(members: list[Member]) -> None:
    """Refuse members that cannot be averaged honestly.

    Raises:
        ConfigError: fewer than two members, a different split (one member's
            training images could be another's test images), different
            preprocessing or input size, or identical seeds (no diversity).
    """
    if len(members) < 2:
        raise ConfigError("an ensemble needs at least two member runs")
    first = members[0]
    for other in members[1:]:
        if other.split_csv != first.split_csv:
            raise ConfigError(
                f"{other.run_dir} and {first.run_dir} use different splits: averaging them "
                "would test on images a member trained on (use --split-seed to share a split)"
            )
        # The spec's digest, not its dict: runs from older releases word the rule differently.
        if _spec_digest(other) != _spec_digest(first):
            raise ConfigError(f"{other.run_dir} differs from {first.run_dir} in 'preprocessing'")
        for key in SHARED_CONFIG_KEYS:
            if other.config.get(key) != first.config.get(key):
                raise ConfigError(f"{other.run_dir} differs from {first.run_dir} in {key!r}")
        for key in ("val_labels", "test_labels"):
            if not np.array_equal(other.logits[key], first.logits[key]):
                raise ConfigError(f"{other.run_dir}: {key} do not match {first.run_dir}")
    seeds = [m.config.get("seed") for m in members]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"members share a seed {seeds}: they would be the same model")


def _spec_digest(member: Member) -> str:
    from device.imaging.pipeline import PreprocessSpec

    return PreprocessSpec.from_dict(member.config["preprocessing"]).digest()


def mean_logits(members: list[Member], split: str) -> np.ndarray:
    """The ensemble's logits on ``split`` ("val" or "test"): the members' mean."""
    return np.mean([m.logits[f"{split}_logits"] for m in members], axis=0)


def build_ensemble(models: list[Any], dropout: float = 0.0) -> Any:
    """One Keras model whose logits are the mean of ``models``' logits.

    Args:
        models: trained classifiers with a ``feature_map`` layer followed by a
            GAP -> (Dropout) -> Dense ``logits`` head, all with the same input shape.
        dropout: rate of the (inference-time inert) dropout kept in the head.

    Returns:
        A model with layers ``feature_map`` (channel concatenation), ``gap``,
        ``dropout`` and ``logits``.

    Raises:
        ConfigError: a member without the layers the contract names, or input
            shapes that differ.
    """
    import keras
    from keras import layers

    shapes = {tuple(model.inputs[0].shape[1:]) for model in models}
    if len(shapes) != 1:
        raise ConfigError(f"members have different input shapes: {sorted(shapes)}")
    inputs = keras.Input(shape=shapes.pop(), name="image")
    features, kernels, biases = [], [], []
    for index, model in enumerate(models):
        try:
            feature_map = model.get_layer(FEATURE_MAP_LAYER).output
            kernel, bias = model.get_layer(LOGITS_LAYER).get_weights()
        except ValueError as exc:
            raise ConfigError(f"member {index}: {exc}") from exc
        extractor = keras.Model(model.inputs[0], feature_map, name=f"member{index}")
        features.append(extractor(inputs))
        kernels.append(kernel)
        biases.append(bias)
    stacked = layers.Concatenate(axis=-1, name=FEATURE_MAP_LAYER)(features)
    pooled = layers.GlobalAveragePooling2D(name="gap")(stacked)
    pooled = layers.Dropout(dropout, name="dropout")(pooled)
    head = layers.Dense(kernels[0].shape[1], name=LOGITS_LAYER)
    logits = head(pooled)
    head.set_weights([np.concatenate(kernels, axis=0) / len(models), np.mean(biases, axis=0)])
    return keras.Model(inputs, logits, name="skinscan_ensemble")


@dataclass
class EnsembleSummary:
    """What ``ensemble_runs`` wrote: the folder and the validation figures it chose by."""

    run_dir: str
    members: list[str]
    val_balanced_accuracy: dict[str, float]
    temperature: float
    referral_threshold: float
    train_seconds: float


def ensemble_runs(member_dirs: list[Path], out_dir: Path) -> EnsembleSummary:
    """Average finished runs into a new run folder that ``skinscan convert`` accepts.

    The new folder holds model.keras, config.json (the first member's, with an
    ``ensemble`` section), split.csv, logits.npz (the members' mean), calibration
    refitted on validation with the members' shared threshold rule, provenance,
    state and the usual report.

    Raises:
        ConfigError: incompatible members (see ``check_compatible``).
        DatasetError: a member that is not a finished run.
        RunExistsError: ``out_dir`` already holds a run.
    """
    from device.metrics import balanced_accuracy
    from training.calibration import softmax
    from training.data import split_seed_of
    from training.report import write_report
    from training.train_config import RunExistsError, _write_json
    from training.train_loop import write_calibration

    started = time.time()
    out_dir = Path(out_dir)
    if (out_dir / "state.json").exists():
        raise RunExistsError(f"{out_dir} already holds a run")
    members = [Member.load(Path(d)) for d in member_dirs]
    check_compatible(members)
    config = dict(members[0].config)
    val_labels = members[0].logits["val_labels"]
    val_logits = mean_logits(members, "val")
    scores = {
        str(m.run_dir): balanced_accuracy(val_labels, softmax(m.logits["val_logits"]))
        for m in members
    }
    scores["ensemble"] = balanced_accuracy(val_labels, softmax(val_logits))
    log.info("validation balanced accuracy: %s", scores)

    out_dir.mkdir(parents=True, exist_ok=True)
    model = build_ensemble([load_keras_model(m.run_dir / "model.keras") for m in members])
    model.save(out_dir / "model.keras")
    shutil.copyfile(members[0].run_dir / "split.csv", out_dir / "split.csv")
    calibration = write_calibration(
        out_dir,
        {
            "val": (val_logits, val_labels),
            "test": (mean_logits(members, "test"), members[0].logits["test_labels"]),
        },
        config["min_sensitivity"],
        config.get("threshold_confidence", 0.0),
        config["uncertainty_threshold"],
    )
    states = [_read_json(m.run_dir / "state.json", {}) for m in members]
    train_seconds = float(sum(s.get("elapsed_s", 0.0) for s in states))
    config.update(
        run_dir=str(out_dir),
        seed=[m.config.get("seed") for m in members],
        ensemble={
            "members": [str(m.run_dir) for m in members],
            "member_seeds": [m.config.get("seed") for m in members],
            "rule": "mean of the members' logits (one GAP -> Dense head on their "
            "concatenated feature maps)",
            "val_balanced_accuracy": scores,
        },
        split_seed=split_seed_of(members[0].config),
    )
    _write_json(out_dir / "config.json", config)
    provenance = _read_json(members[0].run_dir / "provenance.json", {})
    provenance.update(
        run_id=out_dir.name,
        train_seconds=train_seconds,
        best_epoch=[s.get("best_epoch") for s in states],
        members=[
            {
                "run_id": m.run_dir.name,
                "seed": m.config.get("seed"),
                "train_seconds": s.get("elapsed_s"),
                "best_epoch": s.get("best_epoch"),
            }
            for m, s in zip(members, states, strict=True)
        ],
    )
    _write_json(out_dir / "provenance.json", provenance)
    _write_json(
        out_dir / "state.json",
        {
            "phase": "done",
            "elapsed_s": train_seconds,
            "best_epoch": " + ".join(str(s.get("best_epoch")) for s in states),
            "history": [],
            "ensemble_seconds": time.time() - started,
        },
    )
    write_report(out_dir)
    summary = EnsembleSummary(
        run_dir=str(out_dir),
        members=[str(m.run_dir) for m in members],
        val_balanced_accuracy=scores,
        temperature=calibration["temperature"],
        referral_threshold=calibration["referral_threshold"],
        train_seconds=train_seconds,
    )
    log.info("ensemble written: %s", json.dumps(asdict(summary)))
    return summary


def _read_json(path: Path, default: Any) -> Any:
    return json.loads(path.read_text()) if path.is_file() else default
