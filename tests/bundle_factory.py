"""Small, valid model bundles for tests, with or without TensorFlow.

Two ways to get one:

* :func:`make_bundle` (no TensorFlow): copies the tiny prebuilt models in
  ``tests/data/tiny_bundle/`` and writes a fresh manifest for them with the
  current schema and :func:`bundle_spec` (spec 3: nothing to fit). Fast; use it
  in any test that needs a loadable bundle::

      from bundle_factory import make_bundle

      def test_something(tmp_path):
          bundle_dir = make_bundle(tmp_path / "bundle")

* :func:`build_bundle_files` (TensorFlow): converts a Keras model with the real
  conversion code. ``python tests/bundle_factory.py`` rebuilds the prebuilt
  models from :func:`tiny_keras_model` trained on :func:`synthetic_frames`.

The tiny model has the production contract: float 0..255 RGB input of
224x224x3, a ``feature_map`` layer (7x7), then ``gap`` -> ``dropout`` -> Dense
``logits``. It is trained on synthetic lesions whose colour encodes the class
(:data:`CLASS_COLOURS`), so tests can check that a frame of a given colour is
classified as its class after the device's preprocessing.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from conversion.manifest import build_manifest, write_bundle  # noqa: E402
from device.imaging.pipeline import PreprocessSpec, default_spec, preprocess  # noqa: E402
from device.labels import CLASS_CODES  # noqa: E402
from device.runtime.manifest import GRADCAM_FILE, MODEL_FILE  # noqa: E402

PREBUILT_DIR = Path(__file__).resolve().parent / "data" / "tiny_bundle"
INPUT_SIZE = 224
N_CLASSES = 7

# Lesion colour per class (RGB), in device.labels order: akiec, bcc, bkl, df, mel, nv, vasc.
CLASS_COLOURS: tuple[tuple[int, int, int], ...] = (
    (210, 70, 60),
    (235, 160, 200),
    (160, 140, 50),
    (70, 100, 160),
    (25, 20, 30),
    (120, 70, 30),
    (150, 20, 90),
)
SKIN = (225, 185, 160)

DEFAULT_CALIBRATION = {
    "temperature": 1.5,
    "referral_threshold": 0.4,
    "uncertainty_threshold": 0.5,
}
DEFAULT_PROVENANCE = {
    "run_id": "tiny-test",
    "data_hash": "synthetic",
    "split_hash": "synthetic",
    "backbone": "tiny-cnn",
    "weights_source": "random init, trained on synthetic lesions in tests/bundle_factory.py",
    "weights_licence": "Apache-2.0",
    "data_source": "synthetic",
    "data_licence": "none",
}


def synthetic_frame(
    class_index: int, rng: np.random.Generator, height: int = 150, width: int = 200
) -> np.ndarray:
    """A dermoscopy-like RGB uint8 frame: skin with a lesion of the class's colour."""
    yy, xx = np.mgrid[0:height, 0:width]
    frame = np.empty((height, width, 3), np.float32)
    frame[:] = np.array(SKIN, np.float32) + rng.normal(0, 6, size=3)
    cy = height / 2 + rng.uniform(-0.12, 0.12) * height
    cx = width / 2 + rng.uniform(-0.12, 0.12) * width
    ry = rng.uniform(0.2, 0.33) * height
    rx = ry * rng.uniform(0.8, 1.3)
    inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    colour = np.array(CLASS_COLOURS[class_index], np.float32) + rng.normal(0, 8, size=3)
    frame[inside] = colour
    frame += rng.normal(0, 5, size=frame.shape)
    return np.clip(frame, 0, 255).astype(np.uint8)


def synthetic_frames(n: int, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """``n`` synthetic frames with balanced labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % N_CLASSES
    rng.shuffle(labels)
    return [synthetic_frame(int(c), rng) for c in labels], labels.astype(np.int64)


def write_synthetic_jpegs(
    images: Path, codes: tuple[str, ...], per_class: int, seed: int = 0
) -> list[tuple[str, str, int]]:
    """Write ``per_class`` synthetic JPEGs of each class code; returns (image_id, code, i)."""
    rng = np.random.default_rng(seed)
    images.mkdir(parents=True, exist_ok=True)
    written = []
    for code in codes:
        for i in range(per_class):
            image_id = f"ISIC_{code}_{i}"
            frame = synthetic_frame(CLASS_CODES.index(code), rng)
            cv2.imwrite(str(images / f"{image_id}.jpg"), frame[..., ::-1])
            written.append((image_id, code, i))
    return written


def write_rows_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write dict rows (same keys) as a CSV with a header."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def bundle_spec() -> PreprocessSpec:
    """The preprocessing of test bundles: spec 3, a kept spec with no colour region to fit.

    (The tiny models classify synthetic frames through it as well as through a spec 6
    fitted on them: 140 of 140 fresh frames either way.)
    """
    return default_spec(3)


def synthetic_model_inputs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic frames run through the device's preprocessing: (N, 224, 224, 3) uint8."""
    frames, labels = synthetic_frames(n, seed)
    spec = bundle_spec()
    return np.stack([preprocess(f, spec).model_input for f in frames]), labels


def tiny_keras_model(input_size: int = INPUT_SIZE, width: int = 16, seed: int = 0) -> Any:
    """A small CNN with the production layer names (TensorFlow/Keras needed)."""
    import keras

    keras.utils.set_random_seed(seed)
    layers = keras.layers
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="normalise")(inputs)
    x = layers.Conv2D(width, 3, strides=4, padding="same", activation="relu")(x)
    x = layers.Conv2D(width, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2D(2 * width, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2D(2 * width, 3, strides=2, padding="same")(x)
    x = layers.ReLU(name="feature_map")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(0.2, name="dropout")(x)
    outputs = layers.Dense(N_CLASSES, name="logits")(x)
    return keras.Model(inputs, outputs, name="tiny")


def train_tiny_model(images: np.ndarray, labels: np.ndarray, epochs: int = 6, seed: int = 0) -> Any:
    """Build and briefly train :func:`tiny_keras_model` on preprocessed images."""
    import keras

    model = tiny_keras_model(images.shape[1], seed=seed)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(images.astype(np.float32), labels, epochs=epochs, batch_size=32, verbose=0)
    return model


def build_bundle_files(model: Any, representative: np.ndarray) -> dict[str, bytes]:
    """Convert a Keras model with the production converter: {model.tflite, gradcam.tflite}."""
    from conversion.tflite import convert_classifier, convert_gradcam

    return {
        MODEL_FILE: convert_classifier(model, lambda: iter(representative)),
        GRADCAM_FILE: convert_gradcam(model),
    }


def prebuilt_files() -> dict[str, bytes]:
    """The committed tiny models."""
    return {name: (PREBUILT_DIR / name).read_bytes() for name in (MODEL_FILE, GRADCAM_FILE)}


def make_bundle(
    dest: str | Path,
    *,
    files: Mapping[str, bytes] | None = None,
    preprocessing: Mapping[str, Any] | None = None,
    calibration: Mapping[str, float] | None = None,
    provenance: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    bundle_id: str = "tiny-test",
    familiarity: Any = None,
) -> Path:
    """Write a valid bundle into ``dest`` (no TensorFlow needed).

    Args:
        dest: the bundle folder to create.
        files: bundle files; defaults to the prebuilt tiny models.
        preprocessing: preprocessing dict; defaults to ``bundle_spec().to_dict()``.
        calibration: overrides of :data:`DEFAULT_CALIBRATION`.
        provenance: overrides of :data:`DEFAULT_PROVENANCE`.
        metrics: manifest metrics.
        bundle_id: the bundle id.
        familiarity: a fitted ``FeatureDensity`` to ship as the familiarity check.

    Returns:
        ``dest`` as a Path.
    """
    files = dict(files) if files is not None else prebuilt_files()
    familiarity_spec = None
    if familiarity is not None:
        files["familiarity.npz"] = familiarity.to_bytes()
        familiarity_spec = {
            "file": "familiarity.npz",
            "threshold": familiarity.threshold,
            "components": int(familiarity.components.shape[1]),
            "fitted_on": "synthetic frames (tests)",
            "validation_fire_rate": 0.025,
        }
    manifest = build_manifest(
        files,
        bundle_id=bundle_id,
        preprocessing=dict(preprocessing) if preprocessing else bundle_spec().to_dict(),
        calibration={**DEFAULT_CALIBRATION, **(calibration or {})},
        provenance={**DEFAULT_PROVENANCE, **(provenance or {})},
        metrics=metrics or {"note": "tiny synthetic test bundle"},
        familiarity=familiarity_spec,
    )
    return write_bundle(dest, files, manifest)


def rebuild_prebuilt(n_train: int = 420, seed: int = 0) -> dict[str, float]:
    """Retrain the tiny model and overwrite ``tests/data/tiny_bundle`` (TensorFlow needed)."""
    images, labels = synthetic_model_inputs(n_train, seed)
    model = train_tiny_model(images, labels, seed=seed)
    files = build_bundle_files(model, images[:300])
    PREBUILT_DIR.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (PREBUILT_DIR / name).write_bytes(data)
    write_golden(files[MODEL_FILE])
    test_images, test_labels = synthetic_model_inputs(140, seed + 1)
    logits = np.asarray(model(test_images.astype(np.float32), training=False))
    return {"float_accuracy_on_fresh_synthetic": float(np.mean(logits.argmax(1) == test_labels))}


GOLDEN_FILE = PREBUILT_DIR / "golden.json"
GOLDEN_SEED = 123
GOLDEN_COUNT = 14


def golden_inputs() -> tuple[np.ndarray, np.ndarray]:
    """The fixed model inputs of the golden-file test, regenerated from a seed.

    Drawn directly at the model input size, without the device preprocessing, so
    a change of preprocessing defaults does not change them.
    """
    rng = np.random.default_rng(GOLDEN_SEED)
    labels = np.arange(GOLDEN_COUNT) % N_CLASSES
    images = np.stack([synthetic_frame(int(c), rng, INPUT_SIZE, INPUT_SIZE) for c in labels])
    return images, labels


def write_golden(model_bytes: bytes) -> None:
    """Record the LiteRT int8 logits of :func:`golden_inputs` for the golden-file test."""
    from conversion.manifest import describe_classifier
    from device.runtime.classifier import Classifier
    from device.runtime.interpreter import create_model
    from device.runtime.manifest import ClassifierSpec

    spec: ClassifierSpec = describe_classifier(model_bytes)
    clf = Classifier(create_model(model_bytes, runtime="ai_edge_litert"), spec, 1.0)
    images, labels = golden_inputs()
    logits = [clf.classify(x).logits.tolist() for x in images]
    GOLDEN_FILE.write_text(
        json.dumps(
            {
                "about": "LiteRT int8 logits of golden_inputs() for tests/data/tiny_bundle",
                "model_sha256": hashlib.sha256(model_bytes).hexdigest(),
                "logit_scale": spec.logits.quantization.scale if spec.logits.quantization else 1.0,
                "labels": labels.tolist(),
                "logits": logits,
            },
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    if "--golden-only" in sys.argv:
        write_golden((PREBUILT_DIR / MODEL_FILE).read_bytes())
        sys.exit(0)
    print(rebuild_prebuilt())
    shutil.rmtree(ROOT / "tests" / "data" / "tiny_bundle" / "__pycache__", ignore_errors=True)


def write_split_csv(path: Path, splits: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """A run's split.csv for synthetic ``{split: (images, labels)}``, with subgroup columns."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_id", "lesion_id", "dx", "split", "sex", "age", "localization"])
        for name, (_, labels) in splits.items():
            for i, c in enumerate(labels):
                sex = "male" if i % 2 else "female"
                row = [f"{name}{i}", f"L{name}{i}", CLASS_CODES[c], name, sex, 40, "back"]
                writer.writerow(row)
