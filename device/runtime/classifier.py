"""The int8 classifier: model input -> logits, calibrated probabilities, feature map."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from device.errors import ImageError, TensorMismatchError
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

    Raises:
        TensorMismatchError: the model's tensors disagree with ``spec``.
    """

    def __init__(self, model: TfliteModel, spec: ClassifierSpec, temperature: float) -> None:
        self._model = model
        self.spec = spec
        self.temperature = float(temperature)
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
            Logits, temperature-scaled probabilities and the feature map.

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
        logits = self._logits.dequantize(logits_q)[0]
        return ClassifierOutput(
            logits=logits,
            probabilities=softmax(logits, self.temperature),
            feature_map=self._feature_map.dequantize(fm_q)[0],
        )
