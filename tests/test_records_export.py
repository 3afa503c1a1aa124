"""Exports sealed to the clinic's X25519 key: only the clinic can open them."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from device.errors import StorageError, TamperError
from device.records.export import (
    MAGIC,
    ExportKeyError,
    export_records,
    generate_clinic_keypair,
    load_private_key,
    load_public_key,
    open_export,
    save_opened,
)
from device.records.testing import make_record

PATIENT = "SKS-000142-7F3Q"


@pytest.fixture
def clinic(tmp_path):
    private_path, public_path = generate_clinic_keypair(tmp_path / "keys")
    return load_private_key(private_path), load_public_key(public_path)


def _records(n: int, size: int = 32):
    return [make_record(i, size=size, patient_ref=PATIENT, body_site="back") for i in range(n)]


def test_round_trip_with_the_clinic_key(tmp_path, clinic):
    private, public = clinic
    records = _records(4)
    records.append(make_record(9, heatmap=None))
    result = export_records(records, tmp_path / "usb", public, device_id="dev-1")
    assert [p.suffix for p in result.files] == [".sealed"]
    opened = open_export(result.files[0], private)
    assert opened.device_id == "dev-1" and opened.export_id == result.export_id
    assert [r.scan_id for r in opened.records] == [r.scan_id for r in records]
    for got, want in zip(opened.records, records, strict=True):
        np.testing.assert_array_equal(got.image, want.image)
        if want.heatmap is None:
            assert got.heatmap is None
        else:
            np.testing.assert_array_equal(got.heatmap, want.heatmap)
        assert got.patient_ref == want.patient_ref
        assert dict(got.probabilities) == dict(want.probabilities)
        assert got.p_malignant == want.p_malignant


def test_export_file_hides_the_patient_and_the_images(tmp_path, clinic):
    _, public = clinic
    result = export_records(_records(3), tmp_path / "usb", public, device_id="dev-1")
    blob = result.files[0].read_bytes()
    assert blob.startswith(MAGIC)
    assert PATIENT.encode() not in blob
    # Signatures long enough that random ciphertext never holds them by chance.
    assert b"\x89PNG\r\n\x1a\n" not in blob and b"\x00\x00\x00\rIHDR" not in blob
    assert b"manifest.json" not in blob


def test_wrong_clinic_key_fails_loudly(tmp_path, clinic):
    _, public = clinic
    result = export_records(_records(2), tmp_path / "usb", public, device_id="dev-1")
    other_private, _ = generate_clinic_keypair(tmp_path / "other")
    with pytest.raises(TamperError, match="cannot be opened with this clinic key"):
        open_export(result.files[0], load_private_key(other_private))


def test_altered_export_is_detected(tmp_path, clinic):
    private, public = clinic
    path = export_records(_records(2), tmp_path / "usb", public, device_id="d").files[0]
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    path.write_bytes(bytes(blob))
    with pytest.raises(TamperError):
        open_export(path, private)


def test_not_an_export_is_refused(tmp_path, clinic):
    path = tmp_path / "holiday.sealed"
    path.write_bytes(b"\x89PNG not an export")
    with pytest.raises(StorageError, match="not a SkinScan export"):
        open_export(path, clinic[0])


def test_large_exports_are_split_into_parts_and_opened_as_a_folder(tmp_path, clinic):
    private, public = clinic
    records = _records(7, size=64)  # ~25 KB of PNG each
    result = export_records(records, tmp_path / "usb", public, device_id="d", max_part_bytes=60_000)
    assert len(result.files) >= 3
    assert result.scan_ids == [r.scan_id for r in records]
    opened = open_export(tmp_path / "usb", private)
    assert opened.parts == len(result.files)
    assert sorted(r.scan_id for r in opened.records) == sorted(result.scan_ids)


def test_parts_of_two_exports_are_not_mixed(tmp_path, clinic):
    private, public = clinic
    export_records(_records(1), tmp_path / "usb", public, device_id="d")
    export_records(_records(1), tmp_path / "usb", public, device_id="d")
    with pytest.raises(StorageError, match="another export"):
        open_export(tmp_path / "usb", private)


def test_nothing_to_export_writes_nothing(tmp_path, clinic):
    result = export_records([], tmp_path / "usb", clinic[1], device_id="d")
    assert result.files == [] and list((tmp_path / "usb").iterdir()) == []


def test_keygen_modes_and_no_overwrite(tmp_path):
    private_path, public_path = generate_clinic_keypair(tmp_path)
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    before = private_path.read_bytes()
    with pytest.raises(ExportKeyError, match="exists already"):
        generate_clinic_keypair(tmp_path)
    assert private_path.read_bytes() == before
    assert load_public_key(public_path) != load_private_key(private_path)


def test_key_files_of_the_wrong_kind_are_refused(tmp_path):
    private_path, public_path = generate_clinic_keypair(tmp_path)
    with pytest.raises(ExportKeyError, match="not a private key"):
        load_private_key(public_path)
    with pytest.raises(ExportKeyError, match="not a public key"):
        load_public_key(private_path)
    junk = tmp_path / "junk.pub"
    junk.write_text("ssh-ed25519 AAAA")
    with pytest.raises(ExportKeyError, match="not a SkinScan clinic key"):
        load_public_key(junk)
    with pytest.raises(ExportKeyError, match="no key file"):
        load_public_key(tmp_path / "absent.pub")


def test_saved_for_people_to_read(tmp_path, clinic):
    private, public = clinic
    result = export_records(_records(2), tmp_path / "usb", public, device_id="d")
    out = save_opened(open_export(result.files[0], private), tmp_path / "opened")
    text = out.read_text()
    assert PATIENT in text
    pngs = sorted(p.name for p in (tmp_path / "opened" / "images").iterdir())
    assert len(pngs) == 4 and all(name.endswith(".png") for name in pngs)
    assert os.path.getsize(tmp_path / "opened" / "images" / pngs[0]) > 0
