"""The schema of ``manifest.json``, the description of a model bundle.

The schema is strict (``extra="forbid"`` everywhere): an unknown or misspelled
field is an error, never silently ignored. Conversion writes manifests with
these same models, so writer and reader cannot drift apart.

Layout (schema version 1)::

    schema_version   1
    bundle_id        short id shown on screen and stored with each record
    created_at       ISO-8601 UTC time of conversion
    labels           [{code, name, malignant}] in model output order
    classifier       model.tflite: file, input, feature_map and logits tensors
    gradcam          gradcam.tflite: file, feature_map and class_one_hot inputs,
                     weights and cam outputs
    preprocessing    PreprocessSpec.to_dict() of the training run (spec 3 or 6; a retired
                     spec is refused when the bundle loads, naming its version)
    calibration      softmax temperature, referral and uncertainty thresholds
    familiarity      optional (newer bundles): the out-of-distribution check,
                     {file, threshold, components, fitted_on, validation_fire_rate}
    adaptation       optional (site-adapted bundles only, ``skinscan adapt``): the float
                     head that replaces the int8 logits, {head_file, head_runtime,
                     base_bundle_id, base_model_sha256, base_preprocessing_sha256, site,
                     adapted_at, n_cases, cases_per_class, forced}; see AdaptationSpec
    provenance       run id, data and split hashes, backbone, weights source and licence
    metrics          evaluation figures of this bundle (free-form JSON)
    files            file name -> {sha256, size} for every other file in the bundle
    decision_sha256  sha256 of the decision fields (DECISION_FIELDS) as canonical
                     JSON; the loader refuses a manifest whose fields no longer match,
                     so a hand edit of a threshold is refused, not silently used.
                     It is a seal against edits, not a signature: conversion
                     (``conversion.manifest.write_bundle``) writes it.

Each tensor is ``{name, shape, dtype, quantization: {scale, zero_point} | null}``
exactly as the runtime reports it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from device.errors import TensorMismatchError
from device.runtime.interpreter import TensorInfo, TfliteModel

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
MODEL_FILE = "model.tflite"
GRADCAM_FILE = "gradcam.tflite"

# A bare file name inside the bundle folder: no directories, no "..", no hidden files.
FileName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$", max_length=128)]
DType = Literal["uint8", "int8", "int16", "int32", "float32"]
# Everything that changes what the device says for a frame. The model files are
# covered by their own sha256 in ``files``; provenance, metrics and dates are not.
DECISION_FIELDS = (
    "labels",
    "classifier",
    "gradcam",
    "preprocessing",
    "calibration",
    "familiarity",
)
# Decision fields that exist only on some bundles: sealed when present, left out of the
# digest when absent, so bundles sealed before the field existed still verify.
OPTIONAL_DECISION_FIELDS = ("adaptation",)
HEAD_FILE = "head.npz"
# Relative tolerance on quantization scales: the float32 stored in the flatbuffer
# round-trips through JSON as a decimal.
SCALE_RTOL = 1e-6


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Quantization(_Strict):
    """Per-tensor affine quantization: ``real = (q - zero_point) * scale``."""

    scale: float = Field(gt=0)
    zero_point: int


class TensorSpec(_Strict):
    """One interpreter tensor: name, static shape, dtype and quantization."""

    name: str = Field(min_length=1)
    shape: tuple[Annotated[int, Field(ge=1)], ...]
    dtype: DType
    quantization: Quantization | None = None

    @classmethod
    def from_info(cls, info: TensorInfo) -> TensorSpec:
        """Describe a runtime tensor (used by conversion to write the manifest)."""
        quant = None
        if info.scale is not None and info.zero_point is not None:
            quant = Quantization(scale=info.scale, zero_point=info.zero_point)
        return cls(name=info.name, shape=info.shape, dtype=info.dtype, quantization=quant)


class LabelSpec(_Strict):
    """One output class: HAM10000 code, human name, malignant flag."""

    code: str = Field(min_length=1)
    name: str = Field(min_length=1)
    malignant: bool


class ClassifierSpec(_Strict):
    """``model.tflite``: uint8/int8 image in; feature map and logits out."""

    file: FileName = MODEL_FILE
    input: TensorSpec
    feature_map: TensorSpec
    logits: TensorSpec

    @model_validator(mode="after")
    def _check_shapes(self) -> ClassifierSpec:
        shape = self.input.shape
        if len(shape) != 4 or shape[0] != 1 or shape[3] != 3 or shape[1] != shape[2]:
            raise ValueError(f"input.shape must be [1, S, S, 3], got {list(shape)}")
        if self.input.dtype not in ("uint8", "int8") or self.input.quantization is None:
            raise ValueError("input must be a quantized uint8 or int8 tensor")
        if len(self.feature_map.shape) != 4 or self.feature_map.shape[0] != 1:
            raise ValueError(
                f"feature_map.shape must be [1, H, W, C], got {list(self.feature_map.shape)}"
            )
        if len(self.logits.shape) != 2 or self.logits.shape[0] != 1:
            raise ValueError(f"logits.shape must be [1, K], got {list(self.logits.shape)}")
        return self

    @property
    def input_size(self) -> int:
        """Side of the square model input."""
        return self.input.shape[1]


class GradcamSpec(_Strict):
    """``gradcam.tflite``: (feature map, class one-hot) -> (channel weights, CAM)."""

    file: FileName = GRADCAM_FILE
    feature_map: TensorSpec
    class_one_hot: TensorSpec
    weights: TensorSpec
    cam: TensorSpec


class Calibration(_Strict):
    """Decision parameters from training (temperature scaling on validation)."""

    temperature: float = Field(gt=0)
    referral_threshold: float = Field(ge=0, le=1)
    uncertainty_threshold: float = Field(ge=0, le=1)


class FamiliaritySpec(_Strict):
    """``familiarity.npz``: the feature-density check behind "Uncertain — refer"."""

    file: FileName
    threshold: float
    components: int = Field(gt=0)
    fitted_on: str
    validation_fire_rate: float = Field(ge=0, le=1)


class AdaptationSpec(_Strict):
    """A site-adapted head: ``logits = mean_HW(dequantized feature map) @ W + b`` in float32.

    Written by ``skinscan adapt``; the trunk (model.tflite) is the base bundle's, byte
    for byte. ``head_file`` holds ``W`` float32 (C, K) and ``b`` float32 (K,).
    """

    head_file: FileName = HEAD_FILE
    head_runtime: Literal["float32"] = "float32"
    base_bundle_id: str = Field(min_length=1, max_length=64)
    base_model_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    base_preprocessing_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    site: str = Field(min_length=1, max_length=64)
    adapted_at: str = Field(min_length=1)
    n_cases: int = Field(ge=0)
    cases_per_class: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)
    forced: bool = False


def preprocessing_sha256(preprocessing: Mapping[str, Any]) -> str:
    """sha256 of a preprocessing dict as canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(preprocessing, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Provenance(_Strict):
    """Where the model came from."""

    run_id: str
    data_hash: str
    split_hash: str
    backbone: str
    weights_source: str
    weights_licence: str
    data_source: str = "HAM10000 (Tschandl, Rosendahl and Kittler, Sci. Data 5, 180161, 2018)"
    data_licence: str = "CC BY-NC 4.0"
    converter: dict[str, str] = Field(default_factory=dict)
    extra: dict[str, JsonValue] = Field(default_factory=dict)


class FileEntry(_Strict):
    """Integrity record of one bundle file."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class Manifest(_Strict):
    """The whole ``manifest.json``."""

    schema_version: Literal[1]
    bundle_id: str = Field(min_length=1, max_length=64)
    created_at: str
    labels: tuple[LabelSpec, ...] = Field(min_length=2)
    classifier: ClassifierSpec
    gradcam: GradcamSpec
    preprocessing: dict[str, JsonValue]
    calibration: Calibration
    provenance: Provenance
    metrics: dict[str, JsonValue] = Field(default_factory=dict)
    files: dict[FileName, FileEntry]
    familiarity: FamiliaritySpec | None = None
    adaptation: AdaptationSpec | None = None
    decision_sha256: str = Field("", pattern=r"^([0-9a-f]{64})?$")

    @model_validator(mode="after")
    def _check_consistency(self) -> Manifest:
        n_classes = self.classifier.logits.shape[1]
        if len(self.labels) != n_classes:
            raise ValueError(
                f"labels has {len(self.labels)} entries but classifier.logits has {n_classes}"
            )
        codes = [label.code for label in self.labels]
        if len(set(codes)) != len(codes):
            raise ValueError(f"labels: duplicate codes in {codes}")
        fm = self.classifier.feature_map.shape
        if self.gradcam.feature_map.shape != fm:
            raise ValueError(
                f"gradcam.feature_map.shape {list(self.gradcam.feature_map.shape)} differs from "
                f"classifier.feature_map.shape {list(fm)}"
            )
        if self.gradcam.class_one_hot.shape != (1, n_classes):
            raise ValueError(f"gradcam.class_one_hot.shape must be [1, {n_classes}]")
        if self.gradcam.cam.shape != (1, fm[1], fm[2]):
            raise ValueError(f"gradcam.cam.shape must be [1, {fm[1]}, {fm[2]}]")
        if self.gradcam.weights.shape != (1, fm[3]):
            raise ValueError(f"gradcam.weights.shape must be [1, {fm[3]}]")
        roles: list[tuple[str, Any]] = [("classifier", self.classifier), ("gradcam", self.gradcam)]
        if self.familiarity is not None:
            roles.append(("familiarity", self.familiarity))
        for role, spec in roles:
            if spec.file not in self.files:
                raise ValueError(f"{role}.file {spec.file!r} has no entry in files")
        if self.adaptation is not None and self.adaptation.head_file not in self.files:
            raise ValueError(
                f"adaptation.head_file {self.adaptation.head_file!r} has no entry in files"
            )
        if self.adaptation is None and HEAD_FILE in self.files:
            # A tool that rewrote an adapted manifest without its adaptation section would
            # otherwise turn it back into its base model without a word.
            raise ValueError(
                f"files lists {HEAD_FILE} but there is no adaptation section: a site-adapted "
                "bundle whose manifest lost its adaptation"
            )
        if MANIFEST_NAME in self.files:
            raise ValueError("files must not list manifest.json itself")
        return self

    @property
    def class_codes(self) -> tuple[str, ...]:
        """Class codes in model output order."""
        return tuple(label.code for label in self.labels)

    @property
    def adaptation_label(self) -> str | None:
        """``"adapted for <site>, <date>"`` for a site-adapted bundle; None for a base bundle."""
        if self.adaptation is None:
            return None
        return f"adapted for {self.adaptation.site}, {self.adaptation.adapted_at[:10]}"

    def decision_digest(self) -> str:
        """sha256 of the decision fields, as canonical JSON (sorted keys, no spaces).

        An optional decision field (``adaptation``) is part of the digest only when present.
        """
        present = {name for name in OPTIONAL_DECISION_FIELDS if getattr(self, name) is not None}
        fields = self.model_dump(mode="json", include=set(DECISION_FIELDS) | present)
        text = json.dumps(fields, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def sealed(self) -> Manifest:
        """This manifest with ``decision_sha256`` set to its decision fields' digest."""
        return self.model_copy(update={"decision_sha256": self.decision_digest()})

    @property
    def is_sealed(self) -> bool:
        """True when ``decision_sha256`` matches the decision fields."""
        return self.decision_sha256 == self.decision_digest()

    def to_json(self) -> str:
        """Serialise for writing to ``manifest.json`` (stable key order, 2-space indent).

        A base bundle's manifest has no ``adaptation`` key at all (not ``null``).
        """
        exclude = {"adaptation"} if self.adaptation is None else None
        return self.model_dump_json(indent=2, exclude=exclude) + "\n"


def match_tensor(
    model: TfliteModel, spec: TensorSpec, role: str, kind: Literal["input", "output"]
) -> TensorInfo:
    """Find the runtime tensor the manifest describes and check that it agrees.

    Args:
        model: the loaded interpreter.
        spec: the manifest's description of the tensor.
        role: dotted manifest key for messages, e.g. "classifier.logits".
        kind: whether the tensor must be a model input or output.

    Returns:
        The runtime's description of the tensor.

    Raises:
        TensorMismatchError: the tensor is absent or differs in shape, dtype or
            quantization; the message names the file, the tensor and both values.
    """
    candidates = model.inputs if kind == "input" else model.outputs
    info = next((t for t in candidates if t.name == spec.name), None)
    if info is None:
        names = ", ".join(t.name for t in candidates)
        raise TensorMismatchError(
            f"{model.label}: manifest {role} names {kind} tensor {spec.name!r}, "
            f"but the model's {kind}s are: {names}"
        )

    def fail(what: str, expected: Any, actual: Any) -> TensorMismatchError:
        return TensorMismatchError(
            f"{model.label}: {kind} tensor {spec.name!r} ({role}) {what} is {actual} "
            f"but the manifest says {expected}"
        )

    if tuple(info.shape) != tuple(spec.shape):
        raise fail("shape", list(spec.shape), list(info.shape))
    if info.dtype != spec.dtype:
        raise fail("dtype", spec.dtype, info.dtype)
    quant = spec.quantization
    if (quant is None) != (info.scale is None):
        raise fail(
            "quantization",
            "none" if quant is None else "quantized",
            "none" if info.scale is None else "quantized",
        )
    if quant is not None and info.scale is not None:
        if abs(info.scale - quant.scale) > SCALE_RTOL * quant.scale:
            raise fail("quantization scale", quant.scale, info.scale)
        if info.zero_point != quant.zero_point:
            raise fail("quantization zero point", quant.zero_point, info.zero_point)
    return info
