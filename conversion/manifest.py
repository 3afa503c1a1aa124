"""Writing the bundle manifest from converted models (no TensorFlow needed).

Tensor descriptions are read back from the flatbuffers with the device runtime,
so the manifest states exactly what the device's interpreter will report.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from device.labels import HAM10000_CLASSES
from device.runtime.bundle import sha256_bytes
from device.runtime.interpreter import TensorInfo, create_model
from device.runtime.manifest import (
    GRADCAM_FILE,
    MANIFEST_NAME,
    MODEL_FILE,
    SCHEMA_VERSION,
    Calibration,
    ClassifierSpec,
    FamiliaritySpec,
    FileEntry,
    GradcamSpec,
    LabelSpec,
    Manifest,
    Provenance,
    TensorSpec,
)

log = logging.getLogger(__name__)

MODEL_CARD_FILE = "MODEL_CARD.md"


def _by_rank(tensors: tuple[TensorInfo, ...], rank: int, what: str) -> TensorInfo:
    found = [t for t in tensors if len(t.shape) == rank]
    if len(found) != 1:
        shapes = [list(t.shape) for t in tensors]
        raise ValueError(f"{what}: expected exactly one tensor of rank {rank}, got {shapes}")
    return found[0]


def describe_classifier(model_bytes: bytes) -> ClassifierSpec:
    """Describe ``model.tflite``: its image input, feature map (rank 4) and logits (rank 2)."""
    model = create_model(model_bytes, label=MODEL_FILE)
    if len(model.inputs) != 1 or len(model.outputs) != 2:
        raise ValueError(
            f"{MODEL_FILE}: expected 1 input and 2 outputs, got "
            f"{len(model.inputs)} and {len(model.outputs)}"
        )
    return ClassifierSpec(
        file=MODEL_FILE,
        input=TensorSpec.from_info(model.inputs[0]),
        feature_map=TensorSpec.from_info(_by_rank(model.outputs, 4, "model outputs")),
        logits=TensorSpec.from_info(_by_rank(model.outputs, 2, "model outputs")),
    )


def describe_gradcam(gradcam_bytes: bytes) -> GradcamSpec:
    """Describe ``gradcam.tflite``: inputs by rank (4: feature map, 2: one-hot), outputs too."""
    model = create_model(gradcam_bytes, label=GRADCAM_FILE)
    return GradcamSpec(
        file=GRADCAM_FILE,
        feature_map=TensorSpec.from_info(_by_rank(model.inputs, 4, "gradcam inputs")),
        class_one_hot=TensorSpec.from_info(_by_rank(model.inputs, 2, "gradcam inputs")),
        weights=TensorSpec.from_info(_by_rank(model.outputs, 2, "gradcam outputs")),
        cam=TensorSpec.from_info(_by_rank(model.outputs, 3, "gradcam outputs")),
    )


def default_labels() -> tuple[LabelSpec, ...]:
    """The seven HAM10000 classes from :mod:`device.labels`, in output order."""
    return tuple(
        LabelSpec(code=d.code, name=d.name, malignant=d.malignant) for d in HAM10000_CLASSES
    )


def utc_now() -> str:
    """The current UTC time, ISO-8601 to the second."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def build_manifest(
    files: Mapping[str, bytes],
    *,
    bundle_id: str,
    preprocessing: Mapping[str, Any],
    calibration: Calibration | Mapping[str, float],
    provenance: Provenance | Mapping[str, Any],
    metrics: Mapping[str, Any] | None = None,
    created_at: str | None = None,
    familiarity: FamiliaritySpec | Mapping[str, Any] | None = None,
) -> Manifest:
    """Build and validate the manifest for a bundle's files.

    Args:
        files: bundle file name -> content; must hold model.tflite and gradcam.tflite
            and may hold others (e.g. MODEL_CARD.md). Each gets its sha256 and size.
        bundle_id: short id shown on the device and stored in each record.
        preprocessing: ``PreprocessSpec.to_dict()`` of the training run.
        calibration: temperature, referral and uncertainty thresholds.
        provenance: run id, data/split hashes, backbone, weights source and licence.
        metrics: evaluation figures (JSON-ready).
        created_at: ISO-8601 time; now by default.
        familiarity: the out-of-distribution check's spec (its file must be in ``files``).

    Returns:
        The validated manifest, sealed (``decision_sha256`` set).
    """
    for required in (MODEL_FILE, GRADCAM_FILE):
        if required not in files:
            raise ValueError(f"bundle files must include {required}")
    if MANIFEST_NAME in files:
        raise ValueError(f"{MANIFEST_NAME} is written from the manifest, not passed as a file")
    return Manifest(
        schema_version=SCHEMA_VERSION,
        bundle_id=bundle_id,
        created_at=created_at or utc_now(),
        labels=default_labels(),
        classifier=describe_classifier(files[MODEL_FILE]),
        gradcam=describe_gradcam(files[GRADCAM_FILE]),
        preprocessing=dict(preprocessing),
        calibration=Calibration.model_validate(
            calibration.model_dump() if isinstance(calibration, Calibration) else dict(calibration)
        ),
        provenance=Provenance.model_validate(
            provenance.model_dump() if isinstance(provenance, Provenance) else dict(provenance)
        ),
        metrics=dict(metrics or {}),
        familiarity=(
            None
            if familiarity is None
            else FamiliaritySpec.model_validate(
                familiarity.model_dump()
                if isinstance(familiarity, FamiliaritySpec)
                else dict(familiarity)
            )
        ),
        files={
            name: FileEntry(sha256=sha256_bytes(data), size=len(data))
            for name, data in sorted(files.items())
        },
    ).sealed()


def write_bundle(out_dir: str | Path, files: Mapping[str, bytes], manifest: Manifest) -> Path:
    """Write the files and then manifest.json into ``out_dir`` (created if needed).

    The manifest is written last, through a temporary file and a rename, so a
    half-written bundle never has a valid manifest. It is sealed here (its
    ``decision_sha256`` recomputed), so every bundle conversion writes carries the
    checksum the device verifies, whatever was changed on the way.

    Returns:
        The bundle folder.
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = manifest.sealed()
    for name in manifest.files:
        if name not in files:
            raise ValueError(f"manifest lists {name} but no content was given")
    stale = folder / MANIFEST_NAME
    if stale.exists():
        stale.unlink()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    tmp = folder / f".{MANIFEST_NAME}.tmp"
    tmp.write_text(manifest.to_json(), encoding="utf-8")
    tmp.replace(folder / MANIFEST_NAME)
    log.info("wrote bundle %s to %s", manifest.bundle_id, folder)
    return folder
