"""Turn a finished training run into a model bundle (in memory).

:func:`convert_run` reads the run folder, converts the model, runs the parity
checks, refits the temperature and the referral threshold on the int8 model's own
validation outputs (the device runs the int8 model, so its operating point must
be chosen for it), computes the bundle's own int8 metrics, writes the model card
and the manifest, and returns every file as bytes. The caller (``skinscan convert``)
writes them.

Run folder contract (from ``skinscan train``)::

    config.json       includes "preprocessing" (PreprocessSpec.to_dict()), "backbone", "seed"
    split.csv         image_id, lesion_id, dx, split (train/val/test), sex, age, localization
    model.keras       float model: input 0..255 RGB, layers feature_map, gap, dropout, logits
    calibration.json  temperature, referral_threshold, uncertainty_threshold (fitted on the
                      float model's validation logits), min_sensitivity_target and
                      threshold_confidence (the rule; both optional)
    metrics.json      float test metrics (optional)
    provenance.json   run_id, data_hash, split_hash, backbone, weights_source, weights_licence
"""

from __future__ import annotations

import importlib
import json
import logging
import platform
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from conversion import parity, tflite
from conversion.manifest import MODEL_CARD_FILE, build_manifest
from conversion.model_card import render_model_card
from device import metrics
from device.errors import ConfigError, SkinScanError
from device.imaging.pipeline import PreprocessSpec
from device.labels import CLASS_CODES
from device.runtime.classifier import Classifier, softmax
from device.runtime.explainer import Explainer
from device.runtime.familiarity import (
    FAMILIARITY_FILE,
    VALIDATION_QUANTILE,
    fit_feature_density,
    pooled,
)
from device.runtime.interpreter import create_model
from device.runtime.manifest import GRADCAM_FILE, MODEL_FILE, Manifest, Provenance
from training.calibration import fit_temperature, referral_threshold

log = logging.getLogger(__name__)

# (run_dir, split) -> (uint8 images (N, S, S, 3), int labels (N,))
SplitLoader = Callable[[Path, str], tuple[np.ndarray, np.ndarray]]
MIN_REPRESENTATIVE = 300
# 1,000 rather than 300 halved v3's int8 balanced-accuracy drop on validation (1.6 -> 0.8 points).
DEFAULT_REPRESENTATIVE = 1000
MODEL_SIZE_LIMIT = 5_000_000
_PROVENANCE_KEYS = ("run_id", "data_hash", "split_hash", "backbone", "weights_source")


class ConversionError(SkinScanError, ValueError):
    """The run folder cannot be converted, or the converted bundle fails its checks."""


@dataclass
class ConversionResult:
    """A converted bundle, not yet written.

    Attributes:
        files: file name -> content, excluding manifest.json.
        manifest: the manifest to write beside them.
        report: parity and metric figures (also inside the manifest's metrics).
        failures: parity checks that failed (empty when all pass).
    """

    files: dict[str, bytes]
    manifest: Manifest
    report: dict[str, Any]
    failures: list[str] = field(default_factory=list)


def _read_json(path: Path, required: bool = True) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise ConversionError(f"{path}: missing from the run folder")
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConversionError(f"{path}: not valid JSON ({exc})") from exc


def default_loader() -> SplitLoader:
    """``training.data.load_preprocessed``: the run's cached device preprocessing."""
    try:
        module = importlib.import_module("training.data")
    except ImportError as exc:
        raise ConversionError(f"training.data is not importable here: {exc}") from exc
    return module.load_preprocessed


def load_keras_model(path: Path) -> Any:
    """Load a run's ``model.keras`` with training's custom layers registered."""
    if not path.is_file():
        raise ConversionError(f"{path}: missing from the run folder")
    from training.model import load_keras_model as load

    return load(path)


def representative_indices(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Pick ``n`` images covering every class present: an equal share per class first
    (as many as exist), then a uniform random fill.

    Raises:
        ConversionError: fewer than ``n`` images, or a class missing.
    """
    labels = np.asarray(labels)
    if len(labels) < n:
        raise ConversionError(f"only {len(labels)} training images; calibration needs {n}")
    missing = [CLASS_CODES[c] for c in range(len(CLASS_CODES)) if not np.any(labels == c)]
    if missing:
        raise ConversionError(f"the training split has no images of {missing}")
    rng = np.random.default_rng(seed)
    share = n // (2 * len(CLASS_CODES))
    chosen: list[int] = []
    for c in range(len(CLASS_CODES)):
        idx = np.flatnonzero(labels == c)
        chosen.extend(rng.choice(idx, size=min(share, len(idx)), replace=False).tolist())
    rest = np.setdiff1d(np.arange(len(labels)), chosen)
    chosen.extend(rng.choice(rest, size=n - len(chosen), replace=False).tolist())
    return np.array(sorted(chosen))


def make_provenance(run_dir: Path, config: dict[str, Any]) -> Provenance:
    """Map the run's provenance.json onto the manifest schema (unknown keys go to ``extra``)."""
    raw = _read_json(run_dir / "provenance.json")
    raw.setdefault("run_id", run_dir.name)
    raw.setdefault("backbone", config.get("backbone", "unknown"))
    missing = [k for k in (*_PROVENANCE_KEYS, "weights_licence") if k not in raw]
    if "weights_license" in raw and "weights_licence" in missing:
        raw["weights_licence"] = raw.pop("weights_license")
        missing.remove("weights_licence")
    if missing:
        raise ConversionError(f"{run_dir / 'provenance.json'}: missing {missing}")
    known = {*_PROVENANCE_KEYS, "weights_licence", "data_source", "data_licence"}
    fields_ = {k: raw[k] for k in known if k in raw}
    if "dataset" in raw:
        fields_.setdefault("data_source", str(raw["dataset"]))
    extra = {k: v for k, v in raw.items() if k not in known}
    import tensorflow as tf

    converter = {
        "tensorflow": tf.__version__,
        "python": platform.python_version(),
        "skinscan": importlib.import_module("device").__version__,
    }
    return Provenance(**fields_, converter=converter, extra=json.loads(json.dumps(extra)))


def _bundle_id(run_id: str, model_bytes: bytes) -> str:
    import hashlib

    short = hashlib.sha256(model_bytes).hexdigest()[:8]
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", run_id)[:40] or "run"
    return f"{safe}-int8-{short}"


def _subgroups(
    run_dir: Path, n: int, labels: np.ndarray, probs: np.ndarray, threshold: float
) -> dict[str, Any] | None:
    """int8 metrics per sex, age band and localization on the test split, if the
    split file's test rows line up with the loaded images."""
    try:
        from training.data import read_split_csv
        from training.report import subgroup_metrics
    except ImportError:
        return None
    rows = [r for r in read_split_csv(run_dir / "split.csv") if r["split"] == "test"]
    if len(rows) != n or [CLASS_CODES.index(r["dx"]) for r in rows] != labels.tolist():
        log.warning("test rows do not line up with the loaded images; subgroups skipped")
        return None
    bands = _skin_bands(run_dir, rows)
    return metrics.json_safe(subgroup_metrics(rows, labels, probs, threshold, bands))


def _skin_bands(run_dir: Path, rows: list[dict[str, str]]) -> list[str] | None:
    """The ITA skin-tone band of each test image (training.skin_tone), if its images are here."""
    from device.evaluation.runner import read_labelled_csv
    from training.skin_tone import skin_tones

    config = _read_json(run_dir / "config.json", required=False)
    folders = [
        Path(d) / "images" for d in [config.get("data_dir", ""), *config.get("extra_data_dirs", [])]
    ]
    folders = [f for f in folders if f.is_dir()]
    if not folders:
        log.warning("the run's images are not here; the skin-tone subgroups are skipped")
        return None
    items = {
        i.image_id: i.path for i in read_labelled_csv(run_dir / "split.csv", folders, "test")[0]
    }
    if set(items) != {r["image_id"] for r in rows}:
        return None
    return [t.band for t in skin_tones([items[r["image_id"]] for r in rows])]


def threshold_rule(calibration_raw: dict[str, Any]) -> dict[str, float]:
    """The run's referral-threshold rule: ``min_sensitivity_target`` (default 0.90) and
    ``threshold_confidence`` (default 0: the point estimate), for runs that predate them."""
    return {
        "min_sensitivity_target": float(calibration_raw.get("min_sensitivity_target", 0.90)),
        "threshold_confidence": float(calibration_raw.get("threshold_confidence", 0.0)),
    }


def refit_for_int8(
    logits: np.ndarray,
    labels: np.ndarray,
    calibration: dict[str, float],
    rule: dict[str, Any],
) -> dict[str, float]:
    """Temperature and referral threshold refitted on the int8 model's validation logits.

    The threshold follows the run's rule (:func:`threshold_rule`). The uncertainty
    threshold is kept.

    Raises:
        ConversionError: the validation split cannot support the rule.
    """
    temperature = fit_temperature(logits, labels)
    try:
        threshold = referral_threshold(
            softmax(logits, temperature),
            labels,
            rule["min_sensitivity_target"],
            rule["threshold_confidence"],
        )
    except ValueError as exc:
        raise ConversionError(f"referral threshold for the int8 model: {exc}") from exc
    return {**calibration, "temperature": temperature, "referral_threshold": threshold}


def convert_run(
    run_dir: str | Path,
    *,
    loader: SplitLoader | None = None,
    representative_size: int = DEFAULT_REPRESENTATIVE,
    parity_limit: int = 0,
    gradcam_images: int = 200,
    n_boot: int = 1000,
    thresholds: parity.ParityThresholds | None = None,
    bundle_id: str | None = None,
    seed: int = 0,
    keras_model: Any = None,
) -> ConversionResult:
    """Convert a finished training run into bundle files plus manifest.

    Args:
        run_dir: the training run folder.
        loader: ``(run_dir, split) -> (images, labels)`` of preprocessed uint8 images;
            defaults to ``training.data.load_preprocessed``.
        representative_size: calibration images from the training split (>= 300; all of
            the split when it is smaller, as long as it holds 300).
        parity_limit: use at most this many validation images for parity (0: all).
        gradcam_images: validation images used for the Grad-CAM correlation.
        n_boot: bootstrap resamples for the CIs of the test metrics.
        thresholds: parity pass marks.
        bundle_id: the id shown on the device; by default run id + model hash.
        seed: seed of the representative sample and the bootstrap.
        keras_model: an already loaded model (tests); by default ``run_dir/model.keras``.

    Returns:
        The files, manifest, report and any parity failures.

    Raises:
        ConversionError: missing run files, too little data, or a model too large.
    """
    run_dir = Path(run_dir)
    started = time.perf_counter()
    thresholds = thresholds or parity.ParityThresholds()
    if representative_size < MIN_REPRESENTATIVE:
        raise ConversionError(
            f"representative_size {representative_size} < {MIN_REPRESENTATIVE} images"
        )
    config = _read_json(run_dir / "config.json")
    if "preprocessing" not in config:
        raise ConversionError(f"{run_dir / 'config.json'}: no 'preprocessing' section")
    try:
        # Validated, and its resize rule in words restated by the code that will run it.
        preprocessing = PreprocessSpec.from_dict(config["preprocessing"]).to_dict()
    except ConfigError as exc:
        raise ConversionError(f"{run_dir / 'config.json'}: {exc}") from exc
    calibration_raw = _read_json(run_dir / "calibration.json")
    try:
        calibration = {
            k: float(calibration_raw[k])
            for k in ("temperature", "referral_threshold", "uncertainty_threshold")
        }
    except KeyError as exc:
        raise ConversionError(f"{run_dir / 'calibration.json'}: missing {exc}") from exc
    float_metrics = _read_json(run_dir / "metrics.json", required=False)
    provenance = make_provenance(run_dir, config)
    load = loader or default_loader()
    model = keras_model if keras_model is not None else load_keras_model(run_dir / "model.keras")

    log.info("loading the training split for calibration")
    x_train, y_train = load(run_dir, "train")
    # A small training split calibrates on all of it (still at least MIN_REPRESENTATIVE).
    wanted = max(MIN_REPRESENTATIVE, min(representative_size, len(y_train)))
    rep = representative_indices(y_train, wanted, seed)
    rep_images = np.asarray(x_train[rep], dtype=np.uint8)
    rep_classes = sorted({CLASS_CODES[c] for c in y_train[rep]})
    del x_train

    log.info("converting: int8 classifier calibrated on %d images", len(rep_images))
    model_bytes = tflite.convert_classifier(model, lambda: iter(rep_images))
    if len(model_bytes) > MODEL_SIZE_LIMIT:
        raise ConversionError(
            f"{MODEL_FILE} is {len(model_bytes) / 1e6:.2f} MB, over the "
            f"{MODEL_SIZE_LIMIT / 1e6:.0f} MB limit"
        )
    log.info("converting: Grad-CAM gradient submodel")
    gradcam_bytes = tflite.convert_gradcam(model)
    files = {MODEL_FILE: model_bytes, GRADCAM_FILE: gradcam_bytes}

    draft = build_manifest(
        files,
        bundle_id=bundle_id or _bundle_id(provenance.run_id, model_bytes),
        preprocessing=preprocessing,
        calibration=calibration,
        provenance=provenance,
    )
    temperature, threshold = calibration["temperature"], calibration["referral_threshold"]
    classifier = Classifier(
        create_model(model_bytes, label=MODEL_FILE), draft.classifier, temperature
    )
    explainer = Explainer(create_model(gradcam_bytes, label=GRADCAM_FILE), draft.gradcam)

    report: dict[str, Any] = {
        "representative": {"n": int(len(rep_images)), "classes": rep_classes, "split": "train"},
        "model_tflite_bytes": len(model_bytes),
        "gradcam_tflite_bytes": len(gradcam_bytes),
        "head_layers": tflite.head_layer_types(model),
    }

    log.info("parity: int8 against float on validation")
    x_val, y_val = load(run_dir, "val")
    if parity_limit and len(y_val) > parity_limit:
        keep = np.random.default_rng(seed).choice(len(y_val), parity_limit, replace=False)
        keep.sort()
        x_val, y_val = x_val[keep], y_val[keep]
    x_val = np.asarray(x_val, dtype=np.uint8)
    f_val = tflite.float_logits(model, x_val)
    q_val, q_fm = parity.int8_logits(classifier, x_val)
    report["classifier_val"] = parity.classifier_parity(f_val, q_val, y_val, temperature, threshold)
    rule = threshold_rule(calibration_raw)
    calibration = refit_for_int8(q_val, y_val, calibration, rule)
    report["calibration"] = {
        "float_fitted": {"temperature": temperature, "referral_threshold": threshold},
        "int8_fitted": calibration,
        "rule": rule,
        "fitted_on": f"val ({len(y_val)} images), int8 logits",
    }
    temperature, threshold = calibration["temperature"], calibration["referral_threshold"]
    draft = build_manifest(
        files,
        bundle_id=draft.bundle_id,
        preprocessing=preprocessing,
        calibration=calibration,
        provenance=provenance,
        created_at=draft.created_at,
    )

    log.info("parity: Grad-CAM against the float GradientTape reference")
    m = min(gradcam_images, len(x_val))
    cam_idx = np.linspace(0, len(x_val) - 1, m).astype(int) if m else np.array([], int)
    classes = f_val[cam_idx].argmax(1)
    ref_cams, ref_fm, _ = tflite.reference_gradcam(model, x_val[cam_idx], classes)
    report["gradcam"] = parity.gradcam_parity(ref_cams, ref_fm, q_fm[cam_idx], classes, explainer)
    report["oracle_max_error"] = (
        parity.oracle_error(tflite.dense_kernel(model), explainer)
        if tflite.is_gap_dense_head(model)
        else None
    )
    report["runtimes"] = parity.runtime_parity(
        model_bytes, draft, x_val[:64], thresholds.runtime_close_call
    )

    log.info("familiarity: feature density of the training images, threshold on validation")
    _, rep_fm = parity.int8_logits(classifier, rep_images)
    density = fit_feature_density(pooled(rep_fm), pooled(q_fm))
    del rep_fm
    files[FAMILIARITY_FILE] = density.to_bytes()
    familiarity = {
        "file": FAMILIARITY_FILE,
        "threshold": density.threshold,
        "components": int(density.components.shape[1]),
        "fitted_on": (
            f"int8 pooled features of {len(rep_images)} training images; threshold at the "
            f"{100 * VALIDATION_QUANTILE:.1f}th percentile of {len(y_val)} validation images"
        ),
        "validation_fire_rate": float(np.mean(density.scores(pooled(q_fm)) > density.threshold)),
    }
    del x_val, q_fm

    log.info("metrics: int8 and float on the test split")
    x_test, y_test = load(run_dir, "test")
    x_test = np.asarray(x_test, dtype=np.uint8)
    f_test = tflite.float_logits(model, x_test)
    q_test, test_fm = parity.int8_logits(classifier, x_test)
    p_test = softmax(q_test, temperature)
    test_unfamiliar = density.scores(pooled(test_fm)) > density.threshold
    del test_fm
    report["familiarity"] = {
        **familiarity,
        "test_fire_rate": float(np.mean(test_unfamiliar)),
        "test_fire_rate_malignant": float(np.mean(test_unfamiliar[metrics.is_malignant(y_test)])),
    }
    report["classifier_test"] = parity.classifier_parity(
        f_test, q_test, y_test, temperature, threshold
    )
    int8_test = metrics.json_safe(metrics.evaluate(y_test, p_test, threshold, n_boot=n_boot))
    float_test = metrics.json_safe(
        metrics.evaluate(y_test, softmax(f_test, temperature), threshold, n_boot=0)
    )
    subgroups = _subgroups(run_dir, len(y_test), y_test, p_test, threshold)
    failed = parity.failures(report, thresholds)
    report["failures"] = failed
    report["thresholds"] = parity.thresholds_dict(thresholds)
    report["seconds"] = round(time.perf_counter() - started, 1)

    bundle_metrics: dict[str, Any] = metrics.json_safe(
        {
            "split": "test (lesion-grouped; preprocessed with the bundle's spec)",
            "int8_test": int8_test,
            "float_test": float_test,
            "int8_minus_float_test": {
                k: (int8_test[k] - float_test[k])
                if isinstance(int8_test.get(k), float) and isinstance(float_test.get(k), float)
                else None
                for k in metrics.HEADLINE_METRICS
            },
            "subgroups_int8_test": subgroups,
            "parity": report,
            "training_metrics": {
                k: float_metrics[k] for k in ("split", "test", "model") if k in float_metrics
            },
        }
    )
    draft = draft.model_copy(update={"metrics": bundle_metrics})
    files[MODEL_CARD_FILE] = render_model_card(draft).encode("utf-8")
    manifest = build_manifest(
        files,
        bundle_id=draft.bundle_id,
        preprocessing=draft.preprocessing,
        calibration=draft.calibration,
        provenance=draft.provenance,
        metrics=bundle_metrics,
        created_at=draft.created_at,
        familiarity=familiarity,
    )
    return ConversionResult(files=files, manifest=manifest, report=report, failures=failed)
