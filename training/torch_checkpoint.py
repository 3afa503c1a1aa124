"""Read a PyTorch checkpoint into numpy arrays without installing torch.

Both of torch's formats are pickles whose tensors point at raw storages:
- the legacy format (torch < 1.6): a stream of pickles followed by each storage's bytes;
- the zip format (torch >= 1.6): ``archive/data.pkl`` plus one file per storage.

Only the classes a plain ``state_dict`` needs are allowed through the unpickler, so
a checkpoint cannot run arbitrary code.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


@dataclass(frozen=True)
class _StorageType:
    dtype: type


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: type


@dataclass(frozen=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage, offset, size, stride, *_unused) -> _TensorRef:
    return _TensorRef(storage, int(offset), tuple(size), tuple(stride))


class _CheckpointUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise pickle.UnpicklingError(f"checkpoint refers to {module}.{name}, which is not allowed")

    def persistent_load(self, pid: Any) -> _StorageRef:
        kind, storage_type, key, *_ = pid
        if kind != "storage":
            raise pickle.UnpicklingError(f"unknown persistent id {kind!r}")
        if isinstance(storage_type, str):  # zip format may name the dtype as a string
            storage_type = _StorageType(_STORAGE_DTYPES[storage_type])
        return _StorageRef(str(key), storage_type.dtype)


def _materialise(ref: _TensorRef, buffers: dict[str, np.ndarray]) -> np.ndarray:
    flat = buffers[ref.storage.key]
    itemsize = flat.itemsize
    if not ref.size:
        return np.array(flat[ref.offset])
    view = np.lib.stride_tricks.as_strided(
        flat[ref.offset :],
        shape=ref.size,
        strides=tuple(s * itemsize for s in ref.stride),
        writeable=False,
    )
    return np.array(view)


def _resolve(obj: Any, buffers: dict[str, np.ndarray]) -> Any:
    if isinstance(obj, _TensorRef):
        return _materialise(obj, buffers)
    if isinstance(obj, dict):
        return collections.OrderedDict((k, _resolve(v, buffers)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_resolve(v, buffers) for v in obj)
    return obj


def _collect_storages(obj: Any, found: dict[str, _StorageRef]) -> None:
    if isinstance(obj, _TensorRef):
        found[obj.storage.key] = obj.storage
    elif isinstance(obj, dict):
        for value in obj.values():
            _collect_storages(value, found)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _collect_storages(value, found)


def _load_legacy(stream: BinaryIO) -> Any:
    if pickle.load(stream) != LEGACY_MAGIC:
        raise ValueError("not a PyTorch legacy checkpoint (bad magic number)")
    pickle.load(stream)  # protocol version
    pickle.load(stream)  # sys info
    obj = _CheckpointUnpickler(stream).load()
    keys = pickle.load(stream)
    refs: dict[str, _StorageRef] = {}
    _collect_storages(obj, refs)
    buffers: dict[str, np.ndarray] = {}
    for key in keys:
        (count,) = struct.unpack("<q", stream.read(8))
        dtype = np.dtype(refs[key].dtype) if key in refs else np.dtype(np.float32)
        buffers[key] = np.frombuffer(stream.read(count * dtype.itemsize), dtype=dtype)
    return _resolve(obj, buffers)


def _load_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickle_name = next(n for n in names if n.endswith("/data.pkl"))
        prefix = pickle_name[: -len("data.pkl")]
        obj = _CheckpointUnpickler(io.BytesIO(archive.read(pickle_name))).load()
        refs: dict[str, _StorageRef] = {}
        _collect_storages(obj, refs)
        buffers = {
            key: np.frombuffer(archive.read(f"{prefix}data/{key}"), dtype=ref.dtype)
            for key, ref in refs.items()
        }
    return _resolve(obj, buffers)


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Load a PyTorch ``state_dict`` checkpoint as an ordered dict of numpy arrays."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        obj = _load_zip(path)
    else:
        with path.open("rb") as stream:
            obj = _load_legacy(stream)
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state_dict, got {type(obj).__name__}")
    return obj
