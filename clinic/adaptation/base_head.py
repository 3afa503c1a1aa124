"""The base bundle's head (W0, b0): the Dense layer of its int8 model, dequantized.

The shipped models end GAP -> Dense. LiteRT exposes the Dense layer's constant
tensors: int8 weights (K, C) with one scale per class, and an int32 bias whose
scale is the input scale times the weight scale. Dequantized, they reproduce the
model's int8 logits from the mean of the dequantized feature map to within about
one output quantization step (measured: at most 0.95 steps on 20 ISIC archive
images, tests/test_adaptation_base_head.py). When the base is itself adapted, its
float head is the base head.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import numpy as np

from device.errors import AdaptationError, RuntimeUnavailableError
from device.runtime.bundle import Bundle, sha256_bytes
from device.runtime.classifier import LinearHead
from device.runtime.interpreter import candidate_runtimes

log = logging.getLogger(__name__)

_INTERPRETER_MODULES = {
    "ai_edge_litert": "ai_edge_litert.interpreter",
    "tflite_runtime": "tflite_runtime.interpreter",
}


def _interpreter(model_bytes: bytes) -> Any:
    """A LiteRT (or tflite-runtime) interpreter whose constant tensors can be read."""
    for runtime in candidate_runtimes():
        module_name = _INTERPRETER_MODULES.get(runtime)
        if module_name is None:
            continue
        try:
            cls = importlib.import_module(module_name).Interpreter
        except ImportError:
            continue
        interpreter = cls(model_content=model_bytes)
        interpreter.allocate_tensors()
        return interpreter
    raise RuntimeUnavailableError(
        "reading the base head needs ai-edge-litert or tflite-runtime "
        "(pip install 'skinscan[device]')"
    )


def _dequantized(interpreter: Any, details: dict[str, Any]) -> np.ndarray:
    values = interpreter.get_tensor(details["index"]).astype(np.float64)
    scales = np.asarray(details["quantization_parameters"]["scales"], dtype=np.float64)
    zero_points = np.asarray(details["quantization_parameters"]["zero_points"], dtype=np.float64)
    if scales.size == 0:
        return values
    shape = (-1,) + (1,) * (values.ndim - 1)
    if scales.size == 1:
        return (values - zero_points[0]) * scales[0]
    return (values - zero_points.reshape(shape)) * scales.reshape(shape)


def dense_head(model_bytes: bytes, channels: int, n_classes: int) -> LinearHead:
    """The GAP -> Dense head of an int8 model, dequantized to float32.

    Args:
        model_bytes: model.tflite.
        channels: C, the feature map's channels.
        n_classes: K, the logits' classes.

    Returns:
        The head with ``W`` (C, K) and ``b`` (K,).

    Raises:
        AdaptationError: the model has no single (K, C) weight tensor and (K,) int32
            bias, so its head is not one GAP -> Dense layer.
    """
    interpreter = _interpreter(model_bytes)
    details = interpreter.get_tensor_details()
    weights = [
        d
        for d in details
        if tuple(d["shape"]) == (n_classes, channels) and np.dtype(d["dtype"]) == np.int8
    ]
    biases = [
        d for d in details if tuple(d["shape"]) == (n_classes,) and np.dtype(d["dtype"]) == np.int32
    ]
    if len(weights) != 1 or len(biases) != 1:
        raise AdaptationError(
            f"model.tflite: expected one int8 Dense weight ({n_classes}x{channels}) and one "
            f"int32 bias ({n_classes}), found {len(weights)} and {len(biases)}; only a "
            "GAP -> Dense head can be adapted"
        )
    w = _dequantized(interpreter, weights[0]).T
    b = _dequantized(interpreter, biases[0])
    return LinearHead(weights=w.astype(np.float32), bias=b.astype(np.float32))


def base_head(bundle: Bundle) -> LinearHead:
    """The head a bundle classifies with: its float head if adapted, else its int8 Dense layer."""
    if bundle.head is not None:
        return bundle.head
    spec = bundle.manifest.classifier
    model_bytes = (bundle.path / spec.file).read_bytes()
    if sha256_bytes(model_bytes) != bundle.model_sha256:
        raise AdaptationError(f"{spec.file}: changed on disk since the bundle was loaded")
    return dense_head(model_bytes, spec.feature_map.shape[-1], spec.logits.shape[-1])
