"""The device key file and AES-GCM record encryption."""

from __future__ import annotations

import logging
import os
import stat

import pytest

from device.errors import StorageError, TamperError
from device.records.crypto import (
    KEY_BYTES,
    NONCE_BYTES,
    FileKeyProvider,
    RecordCipher,
    StaticKeyProvider,
)

SCAN = "6f1c9a52-3f7e-4b0c-9a55-0d2c1e7f4a10"
OTHER_SCAN = "0b8e2f4d-1c3a-4e5f-8a9b-7c6d5e4f3a21"


def test_key_is_created_once_with_mode_0600(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "sub" / "device.key"
    key = FileKeyProvider(path).load_key(create=True)
    assert len(key) == KEY_BYTES
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert FileKeyProvider(path).load_key(create=True) == key  # reused, not replaced
    assert FileKeyProvider(path).load_key(create=False) == key
    assert [p.name for p in path.parent.iterdir()] == ["device.key"]  # no temporary left
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert key.hex() not in logged and repr(key) not in logged


def test_two_devices_get_different_keys(tmp_path):
    a = FileKeyProvider(tmp_path / "a.key").load_key(create=True)
    b = FileKeyProvider(tmp_path / "b.key").load_key(create=True)
    assert a != b


def test_missing_key_is_not_silently_replaced(tmp_path):
    with pytest.raises(StorageError, match="missing"):
        FileKeyProvider(tmp_path / "device.key").load_key(create=False)
    assert not (tmp_path / "device.key").exists()


def test_damaged_key_file_is_refused(tmp_path):
    path = tmp_path / "device.key"
    path.write_bytes(b"short")
    with pytest.raises(StorageError, match="5 bytes"):
        FileKeyProvider(path).load_key(create=True)
    assert path.read_bytes() == b"short"  # never overwritten


def test_key_file_readable_by_others_is_tightened(tmp_path):
    path = tmp_path / "device.key"
    path.write_bytes(os.urandom(KEY_BYTES))
    path.chmod(0o644)
    FileKeyProvider(path).load_key(create=False)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_key_does_not_appear_in_reprs():
    key = os.urandom(KEY_BYTES)
    for obj in (StaticKeyProvider(key), RecordCipher(key)):
        assert key.hex() not in repr(obj) and str(key) not in repr(obj)


def test_round_trip_uses_a_fresh_nonce_each_time():
    cipher = RecordCipher(os.urandom(KEY_BYTES))
    a = cipher.encrypt(b"pixels", SCAN, "image")
    b = cipher.encrypt(b"pixels", SCAN, "image")
    assert a[:NONCE_BYTES] != b[:NONCE_BYTES] and a != b
    assert cipher.decrypt(a, SCAN, "image") == b"pixels"
    assert b"pixels" not in a


@pytest.mark.parametrize("position", [0, NONCE_BYTES, -1])
def test_flipped_byte_is_tamper(position):
    cipher = RecordCipher(os.urandom(KEY_BYTES))
    blob = bytearray(cipher.encrypt(b"some image bytes", SCAN, "image"))
    blob[position] ^= 0x01
    with pytest.raises(TamperError, match="failed authentication"):
        cipher.decrypt(bytes(blob), SCAN, "image")


def test_ciphertext_is_bound_to_its_scan_and_purpose():
    cipher = RecordCipher(os.urandom(KEY_BYTES))
    blob = cipher.encrypt(b"heatmap", SCAN, "heatmap", b"row")
    with pytest.raises(TamperError):
        cipher.decrypt(blob, OTHER_SCAN, "heatmap", b"row")
    with pytest.raises(TamperError):
        cipher.decrypt(blob, SCAN, "image", b"row")
    with pytest.raises(TamperError):
        cipher.decrypt(blob, SCAN, "heatmap", b"row2")
    assert cipher.decrypt(blob, SCAN, "heatmap", b"row") == b"heatmap"


def test_wrong_key_fails_loudly():
    blob = RecordCipher(os.urandom(KEY_BYTES)).encrypt(b"x", SCAN, "image")
    with pytest.raises(TamperError):
        RecordCipher(os.urandom(KEY_BYTES)).decrypt(blob, SCAN, "image")


def test_truncated_blob_is_tamper():
    with pytest.raises(TamperError, match="truncated"):
        RecordCipher(os.urandom(KEY_BYTES)).decrypt(b"abc", SCAN, "image")


def test_index_is_keyed_and_stable():
    key = os.urandom(KEY_BYTES)
    a, b = RecordCipher(key), RecordCipher(key)
    assert a.index("SKS-0001-22") == b.index("SKS-0001-22")
    assert a.index("SKS-0001-22") != a.index("SKS-0001-23")
    assert RecordCipher(os.urandom(KEY_BYTES)).index("SKS-0001-22") != a.index("SKS-0001-22")
    assert a.key_check == b.key_check != RecordCipher(os.urandom(KEY_BYTES)).key_check
