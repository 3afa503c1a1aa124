"""The int8 classifier: model input -> logits, calibrated probabilities, feature map.

A site-adapted bundle (manifest ``adaptation``) replaces the int8 logits by a float
head on the same feature map: ``logits = mean_HW(feature map) @ W + b`` (:class:`LinearHead`).
"""

from __future__ import annotations

import io
import logging
import zipfile
from dataclasses import dataclass

import numpy as np

from device.errors import AdaptationError, ImageError, TensorMismatchError
from device.runtime.interpreter import TensorInfo, TfliteModel
from device.runtime.manifest import ClassifierSpec, match_tensor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassifierOutput:
    """What the classifier returns for one model input.

    Attributes:
        logits: dequantized class scores, float32, shape (K,).
        probabilities: ``softmax(logits / temperature)``, float64, shape (K,).
        feature_map: dequantized last conv feature map, float32, shape (H, W, C).
    """

    logits: np.ndarray
    probabilities: np.ndarray
    feature_map: np.ndarray


@dataclass(frozen=True)
class LinearHead:
    """A GAP -> Dense head run in float32: ``logits = mean_HW(A) @ W + b``.

    Attributes:
        weights: ``W``, float32, shape (C, K): column k holds class k's channel weights.
        bias: ``b``, float32, shape (K,).
    """

    weights: np.ndarray
    bias: np.ndarray

    @property
    def channels(self) -> int:
        """C, the feature-map channels the head reads."""
        return int(self.weights.shape[0])

    @property
    def n_classes(self) -> int:
        """K, the classes the head scores."""
        return int(self.weights.shape[1])

    def logits(self, feature_map: np.ndarray) -> np.ndarray:
        """Class scores of one (H, W, C) feature map (or pooled (C,) features), float32 (K,)."""
        pooled = np.asarray(feature_map, dtype=np.float32)
        if pooled.ndim == 3:
            pooled = pooled.mean(axis=(0, 1), dtype=np.float32)
        return (pooled @ self.weights + self.bias).astype(np.float32)

    def to_bytes(self) -> bytes:
        """The head as ``.npz`` bytes (arrays ``W`` and ``b``, no pickle)."""
        buffer = io.BytesIO()
        np.savez(buffer, W=self.weights.astype(np.float32), b=self.bias.astype(np.float32))
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, label: str = "head.npz") -> LinearHead:
        """Read a head written by :meth:`to_bytes`.

        Raises:
            AdaptationError: not an .npz, arrays missing, of the wrong dtype or shape,
                or not finite; the message names ``label``.
        """
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise AdaptationError(f"{label}: not a readable .npz head ({exc})") from exc
        missing = [name for name in ("W", "b") if name not in arrays]
        if missing:
            raise AdaptationError(f"{label}: missing array(s) {missing}; found {sorted(arrays)}")
        weights, bias = arrays["W"], arrays["b"]
        if weights.dtype != np.float32 or bias.dtype != np.float32:
            raise AdaptationError(
                f"{label}: W and b must be float32, got {weights.dtype} and {bias.dtype}"
            )
        if weights.ndim != 2 or bias.shape != (weights.shape[1],):
            raise AdaptationError(
                f"{label}: W must be (C, K) and b (K,), got {weights.shape} and {bias.shape}"
            )
        if not (np.isfinite(weights).all() and np.isfinite(bias).all()):
            raise AdaptationError(f"{label}: W or b holds NaN or infinite values")
        return cls(weights=weights, bias=bias)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Temperature-scaled softmax over the last axis, in float64.

    Args:
        logits: class scores, shape (..., K).
        temperature: divides the logits; > 1 softens, < 1 sharpens.

    Returns:
        Probabilities of the same shape, summing to 1 along the last axis.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _input_lut(info: TensorInfo) -> np.ndarray:
    """Map each pixel value 0..255 to the quantized input value the model expects.

    The model's float input is the raw pixel value (normalisation is inside the
    model), so quantize it with the input tensor's own scale and zero point
    instead of assuming ``scale == 1``.
    """
    assert info.scale is not None and info.zero_point is not None
    dtype = np.uint8 if info.dtype == "uint8" else np.int8
    limits = np.iinfo(dtype)
    q = np.round(np.arange(256, dtype=np.float64) / info.scale + info.zero_point)
    return np.clip(q, limits.min, limits.max).astype(dtype)


class Classifier:
    """Runs ``model.tflite`` on one preprocessed image at a time.

    Args:
        model: the interpreter for model.tflite, created once.
        spec: the manifest's classifier section; tensors are checked against it.
        temperature: softmax temperature from the manifest's calibration.
        head: a site-adapted float head whose logits replace the model's int8 logits
            (None for a base bundle).

    Raises:
        TensorMismatchError: the model's tensors disagree with ``spec``.
        AdaptationError: ``head`` does not fit the feature map or the logits.
    """

    def __init__(
        self,
        model: TfliteModel,
        spec: ClassifierSpec,
        temperature: float,
        head: LinearHead | None = None,
    ) -> None:
        self._model = model
        self.spec = spec
        self.temperature = float(temperature)
        self.head = head
        if head is not None:
            expected = (spec.feature_map.shape[-1], spec.logits.shape[-1])
            if (head.channels, head.n_classes) != expected:
                raise AdaptationError(
                    f"head: W is {head.channels}x{head.n_classes} but the model's feature map "
                    f"has {expected[0]} channels and {expected[1]} classes"
                )
        self._input = match_tensor(model, spec.input, "classifier.input", "input")
        self._feature_map = match_tensor(
            model, spec.feature_map, "classifier.feature_map", "output"
        )
        self._logits = match_tensor(model, spec.logits, "classifier.logits", "output")
        if len(model.inputs) != 1:
            raise TensorMismatchError(
                f"{model.label}: expected 1 input tensor, found {len(model.inputs)}"
            )
        self._lut = _input_lut(self._input)
        identity = np.array_equal(self._lut.astype(np.int16), np.arange(256, dtype=np.int16))
        self._input_is_identity = identity and self._input.dtype == "uint8"

    @property
    def runtime(self) -> str:
        """Name of the runtime running the model."""
        return self._model.runtime

    @property
    def input_size(self) -> int:
        """Side of the square RGB uint8 input."""
        return self.spec.input_size

    @property
    def n_classes(self) -> int:
        """Number of output classes."""
        return self.spec.logits.shape[1]

    def classify(self, model_input: np.ndarray) -> ClassifierOutput:
        """Classify one ``S x S x 3`` RGB uint8 image (the preprocessing output).

        Args:
            model_input: RGB uint8 array of shape (input_size, input_size, 3).

        Returns:
            Logits (the float head's when the bundle is site-adapted),
            temperature-scaled probabilities and the feature map.

        Raises:
            ImageError: the array has the wrong shape or dtype.
            BundleModelError: the runtime failed.
        """
        size = self.input_size
        if model_input.dtype != np.uint8 or model_input.shape != (size, size, 3):
            raise ImageError(
                f"model input must be uint8 of shape ({size}, {size}, 3), "
                f"got {model_input.dtype} {model_input.shape}"
            )
        x = model_input if self._input_is_identity else self._lut[model_input]
        fm_q, logits_q = self._model.run(
            {self._input.index: x[np.newaxis]},
            (self._feature_map.index, self._logits.index),
        )
        feature_map = self._feature_map.dequantize(fm_q)[0]
        if self.head is None:
            logits = self._logits.dequantize(logits_q)[0]
        else:
            logits = self.head.logits(feature_map)
        return ClassifierOutput(
            logits=logits,
            probabilities=softmax(logits, self.temperature),
            feature_map=feature_map,
        )
