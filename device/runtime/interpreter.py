"""Choosing a TFLite runtime and creating interpreters.

Preference order (DESIGN.md, "Inference runtime"): ``ai_edge_litert`` (LiteRT),
then ``tflite_runtime``, then ``tensorflow.lite`` (desktop only). Each is
imported lazily, on first use, so this module imports on any machine. Set
``SKINSCAN_RUNTIME`` to one of :data:`RUNTIMES` to force a runtime.

An interpreter is created once per model file and reused for every frame.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from device.errors import BundleModelError, RuntimeUnavailableError

log = logging.getLogger(__name__)

RUNTIME_ENV = "SKINSCAN_RUNTIME"
RUNTIMES: tuple[str, ...] = ("ai_edge_litert", "tflite_runtime", "tensorflow")

_NUMPY_DTYPES = {
    np.dtype(np.uint8): "uint8",
    np.dtype(np.int8): "int8",
    np.dtype(np.int16): "int16",
    np.dtype(np.int32): "int32",
    np.dtype(np.int64): "int64",
    np.dtype(np.float16): "float16",
    np.dtype(np.float32): "float32",
}

_lock = threading.Lock()
_interpreter_classes: dict[str, type] = {}


def _import_interpreter_class(runtime: str) -> type:
    """Import and return the ``Interpreter`` class of ``runtime`` (cached)."""
    with _lock:
        if runtime in _interpreter_classes:
            return _interpreter_classes[runtime]
        if runtime == "ai_edge_litert":
            cls = importlib.import_module("ai_edge_litert.interpreter").Interpreter
        elif runtime == "tflite_runtime":
            cls = importlib.import_module("tflite_runtime.interpreter").Interpreter
        elif runtime == "tensorflow":
            # Desktop fallback only; the name is a string so device code never imports TF
            # unless nothing else is installed.
            cls = importlib.import_module("tensorflow").lite.Interpreter
        else:
            raise RuntimeUnavailableError(
                f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}"
            )
        _interpreter_classes[runtime] = cls
        return cls


def available_runtimes() -> list[str]:
    """Return the runtimes that import here, in preference order."""
    found = []
    for runtime in RUNTIMES:
        try:
            _import_interpreter_class(runtime)
        except ImportError as exc:
            log.debug("runtime %s unavailable: %s", runtime, exc)
            continue
        found.append(runtime)
    return found


def candidate_runtimes(runtime: str | None = None) -> list[str]:
    """The runtimes to try, in order: the forced one (argument or env var) or all.

    Nothing is imported here for the unforced case, so a later runtime (TensorFlow)
    is only imported if every earlier one fails.

    Raises:
        RuntimeUnavailableError: the forced runtime is unknown or does not import.
    """
    forced = runtime or os.environ.get(RUNTIME_ENV) or None
    if forced:
        if forced not in RUNTIMES:
            raise RuntimeUnavailableError(
                f"unknown runtime {forced!r} (from {'argument' if runtime else RUNTIME_ENV}); "
                f"choose one of {', '.join(RUNTIMES)}"
            )
        try:
            _import_interpreter_class(forced)
        except ImportError as exc:
            raise RuntimeUnavailableError(f"runtime {forced} is not installed: {exc}") from exc
        return [forced]
    return list(RUNTIMES)


@dataclass(frozen=True)
class TensorInfo:
    """One interpreter tensor as the runtime reports it.

    Attributes:
        index: tensor index inside the interpreter.
        name: tensor name in the flatbuffer.
        shape: static shape.
        dtype: numpy dtype name, e.g. "uint8".
        scale: per-tensor quantization scale, or None for a float tensor.
        zero_point: per-tensor quantization zero point, or None.
    """

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | None
    zero_point: int | None

    @classmethod
    def from_details(cls, details: Mapping[str, Any]) -> TensorInfo:
        """Build from one entry of ``get_input_details()``/``get_output_details()``."""
        dtype = _NUMPY_DTYPES.get(np.dtype(details["dtype"]), np.dtype(details["dtype"]).name)
        scale, zero_point = details.get("quantization", (0.0, 0))
        quantized = bool(scale) and dtype in ("uint8", "int8", "int16", "int32")
        return cls(
            index=int(details["index"]),
            name=str(details["name"]),
            shape=tuple(int(s) for s in details["shape"]),
            dtype=dtype,
            scale=float(scale) if quantized else None,
            zero_point=int(zero_point) if quantized else None,
        )

    def dequantize(self, values: np.ndarray) -> np.ndarray:
        """Return ``values`` as float32, using this tensor's scale and zero point."""
        if self.scale is None:
            return np.asarray(values, dtype=np.float32)
        return ((values.astype(np.int32) - self.zero_point) * self.scale).astype(np.float32)


class TfliteModel:
    """A TFLite interpreter created once, with its tensors described.

    Calls are serialised with a lock: an interpreter is not thread-safe.

    Attributes:
        runtime: which runtime runs it ("ai_edge_litert", "tflite_runtime", "tensorflow").
        label: a name for messages, usually the bundle file name.
        inputs: input tensors in interpreter order.
        outputs: output tensors in interpreter order.
    """

    def __init__(self, interpreter: Any, runtime: str, label: str) -> None:
        self._interpreter = interpreter
        self.runtime = runtime
        self.label = label
        self.inputs: tuple[TensorInfo, ...] = tuple(
            TensorInfo.from_details(d) for d in interpreter.get_input_details()
        )
        self.outputs: tuple[TensorInfo, ...] = tuple(
            TensorInfo.from_details(d) for d in interpreter.get_output_details()
        )
        self._lock = threading.Lock()

    def tensor(self, name: str) -> TensorInfo | None:
        """Return the input or output tensor called ``name``, or None."""
        for info in (*self.inputs, *self.outputs):
            if info.name == name:
                return info
        return None

    def run(self, feeds: Mapping[int, np.ndarray], fetch: Sequence[int]) -> list[np.ndarray]:
        """Set input tensors by index, invoke, and return copies of the fetched tensors.

        Raises:
            BundleModelError: the runtime failed while running the model.
        """
        with self._lock:
            try:
                for index, value in feeds.items():
                    self._interpreter.set_tensor(index, value)
                self._interpreter.invoke()
                return [np.array(self._interpreter.get_tensor(i)) for i in fetch]
            except (RuntimeError, ValueError) as exc:
                raise BundleModelError(
                    f"{self.label}: {self.runtime} failed to run: {exc}"
                ) from exc


def _runtime_options(runtime: str) -> dict[str, Any]:
    """Extra Interpreter() arguments per runtime."""
    if runtime == "tensorflow":
        # tf.lite in TF 2.21 with its default XNNPACK delegate returns the same output for
        # every input on our uint8-input int8 models (seen here); LiteRT is correct. The
        # plain builtin kernels agree with LiteRT to within a quantization step.
        tf = importlib.import_module("tensorflow")
        resolver = tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        return {"experimental_op_resolver_type": resolver}
    return {}


def create_model(
    model_content: bytes,
    *,
    label: str = "model.tflite",
    runtime: str | None = None,
    num_threads: int | None = None,
) -> TfliteModel:
    """Create an interpreter for ``model_content`` with the first runtime that accepts it.

    The bytes, not a path, are loaded so that what runs is exactly what the
    bundle loader checksummed.

    Args:
        model_content: the .tflite flatbuffer.
        label: the file name used in error messages.
        runtime: force one runtime; by default the ``SKINSCAN_RUNTIME`` env var or
            the preference order.
        num_threads: interpreter threads (None lets the runtime choose).

    Returns:
        A ready :class:`TfliteModel` with tensors allocated.

    Raises:
        RuntimeUnavailableError: no runtime can be imported.
        BundleModelError: every runtime refused the model; the message names the file.
    """
    errors: list[str] = []
    imported = 0
    for name in candidate_runtimes(runtime):
        try:
            cls = _import_interpreter_class(name)
        except ImportError as exc:
            log.debug("runtime %s unavailable: %s", name, exc)
            continue
        imported += 1
        try:
            interpreter = cls(
                model_content=model_content, num_threads=num_threads, **_runtime_options(name)
            )
            interpreter.allocate_tensors()
        except Exception as exc:  # runtimes raise RuntimeError, ValueError or their own types
            log.warning("%s: %s cannot load it: %s", label, name, exc)
            errors.append(f"{name}: {exc}")
            continue
        log.debug("%s: loaded with %s", label, name)
        return TfliteModel(interpreter, name, label)
    if not imported:
        raise RuntimeUnavailableError(
            "no TFLite runtime found: install ai-edge-litert (pip install 'skinscan[device]')"
        )
    raise BundleModelError(f"{label}: cannot be loaded ({'; '.join(errors)})")
