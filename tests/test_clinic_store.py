"""The clinic store and the import of sealed exports (clinic.store, .importer)."""

from __future__ import annotations

import sqlite3

import cv2
import numpy as np
import pytest
from clinic_support import PATIENT, make_export, make_keys

from clinic.followup import compare, lesion_area_fraction
from clinic.importer import ImportRefusedError, import_export, import_uploaded
from clinic.store import ClinicStore
from device.errors import StorageError, TamperError
from device.records.export import load_private_key
from device.records.testing import make_record


@pytest.fixture
def keys(tmp_path):
    private, public = make_keys(tmp_path / "keys")
    return load_private_key(private), public


@pytest.fixture
def store(tmp_path):
    with ClinicStore(tmp_path / "clinic") as opened:
        yield opened


def _nothing_imported(store: ClinicStore) -> None:
    assert store.scan_count() == 0
    assert store.patients() == []
    assert list(store.imports()) == []


def test_import_adds_the_scans_once(tmp_path, store, keys):
    private, public = keys
    files = make_export(tmp_path / "usb", public)
    first = import_export(store, files[0], private, imported_by="alice")
    assert len(first.added) == 3 and first.already_present == ()
    assert first.device_id == "dev-7"
    again = import_export(store, files[0], private, imported_by="bob")
    assert again.added == () and set(again.already_present) == set(first.added)
    assert store.scan_count() == 3
    assert [(e.imported_by, e.added, e.already_present) for e in store.imports()] == [
        ("bob", 0, 3),
        ("alice", 3, 0),
    ]
    (patient,) = store.patients()
    assert patient.patient_ref == PATIENT and patient.scans == 3
    times = [s.created_at for s in store.scans_of(PATIENT)]
    assert times == sorted(times, reverse=True)


def test_an_export_that_overlaps_adds_only_the_new_scans(tmp_path, store, keys):
    private, public = keys
    records = [make_record(i, size=32, patient_ref=PATIENT) for i in range(4)]
    import_export(
        store, make_export(tmp_path / "a", public, records[:2])[0], private, imported_by="a"
    )
    report = import_export(
        store, make_export(tmp_path / "b", public, records)[0], private, imported_by="a"
    )
    assert set(report.added) == {r.scan_id for r in records[2:]}
    assert store.scan_count() == 4


def test_a_tampered_export_is_refused_and_nothing_is_imported(tmp_path, store, keys):
    private, public = keys
    (path,) = make_export(tmp_path / "usb", public)
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    path.write_bytes(bytes(blob))
    with pytest.raises(ImportRefusedError, match=r"altered.*nothing was imported"):
        import_export(store, path, private, imported_by="alice")
    _nothing_imported(store)


def test_an_export_for_another_clinic_is_refused(tmp_path, store, keys):
    private, _ = keys
    _, other_public = make_keys(tmp_path / "other")
    (path,) = make_export(tmp_path / "usb", other_public)
    with pytest.raises(ImportRefusedError, match="another clinic"):
        import_export(store, path, private, imported_by="alice")
    _nothing_imported(store)


def test_one_bad_part_refuses_the_whole_export(tmp_path, store, keys):
    private, public = keys
    records = [make_record(i, size=64, patient_ref=PATIENT) for i in range(6)]
    files = make_export(tmp_path / "usb", public, records, max_part_bytes=20_000)
    assert len(files) >= 3
    blob = bytearray(files[-1].read_bytes())
    blob[-5] ^= 0x80
    files[-1].write_bytes(bytes(blob))
    parts = [(p.name, p.read_bytes()) for p in files]
    with pytest.raises(ImportRefusedError):
        import_uploaded(store, parts, private, imported_by="alice")
    _nothing_imported(store)
    assert list(store.tmp_dir.iterdir()) == []  # the upload's temporary copy is gone


def test_a_file_that_is_not_an_export_is_refused(store, keys):
    private, _ = keys
    with pytest.raises(ImportRefusedError, match="not a SkinScan export"):
        import_uploaded(store, [("photo.jpg", b"\xff\xd8\xff junk")], private, imported_by="a")
    with pytest.raises(ImportRefusedError, match="no export file"):
        import_uploaded(store, [], private, imported_by="a")
    _nothing_imported(store)


def test_patient_refs_images_and_notes_are_encrypted_at_rest(tmp_path, keys):
    private, public = keys
    folder = tmp_path / "clinic"
    record = make_record(1, size=40, patient_ref=PATIENT)
    with ClinicStore(folder) as store:
        import_export(
            store, make_export(tmp_path / "usb", public, [record])[0], private, imported_by="a"
        )
        store.add_review(record.scan_id, "alice", "disagree", "mel", "irregular border seen")
    png_signature = b"\x89PNG\r\n\x1a\n"
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert PATIENT.encode() not in data, path
            assert b"irregular border" not in data, path
            assert png_signature not in data, path
    with ClinicStore(folder) as store:  # reopens with its key
        assert store.get_scan(record.scan_id).patient_ref == PATIENT
        (review,) = store.reviews(record.scan_id)
        assert review.note == "irregular border seen" and review.reviewer == "alice"
    (folder / "store.key").write_bytes(bytes(32))
    with pytest.raises(TamperError):
        ClinicStore(folder)


def test_reviews_are_append_only(tmp_path, store):
    record = make_record(3, size=32)
    assert store.add_scan(record)
    first = store.add_review(record.scan_id, "alice", "agree", None, "")
    second = store.add_review(record.scan_id, "bob", "disagree", "bkl", "seborrhoeic")
    assert store.reviews(record.scan_id) == [first, second]
    conn = sqlite3.connect(store.data_dir / "clinic.db")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE reviews SET verdict = 'agree'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM reviews")
    conn.close()
    with pytest.raises(KeyError):
        store.add_review("00000000-0000-4000-8000-000000000000", "a", "agree", None, "")
    with pytest.raises(ValueError):
        store.add_review(record.scan_id, "a", "maybe", None, "")


def test_usernames_are_unique(store):
    store.add_user("alice", "hash-1")
    with pytest.raises(StorageError, match="exists already"):
        store.add_user("alice", "hash-2")
    assert store.password_hash("alice") == "hash-1" and store.password_hash("bob") is None


def _disk_photo(radius: int) -> np.ndarray:
    photo = np.full((352, 352, 3), (205, 160, 140), np.uint8)
    cv2.circle(photo, (176, 176), radius, (90, 50, 40), -1)
    noise = np.random.default_rng(radius).normal(0, 6, photo.shape)  # skin is never flat
    return np.clip(photo + noise, 0, 255).astype(np.uint8)


def test_lesion_area_and_follow_up_change():
    small, large = _disk_photo(60), _disk_photo(90)
    assert lesion_area_fraction(np.full((352, 352, 3), 200, np.uint8)) is None
    area_small = lesion_area_fraction(small)
    area_large = lesion_area_fraction(large)
    assert area_small == pytest.approx(np.pi * 60**2 / 352**2, rel=0.35)
    assert area_large == pytest.approx(np.pi * 90**2 / 352**2, rel=0.35)
    # One lesion: same patient, site and lesion label (clinic.followup.same_lesion).
    before = make_record(1, patient_ref=PATIENT, body_site="back", lesion="1", risk_tier="monitor")
    after = make_record(50, patient_ref=PATIENT, body_site="back", lesion="1", risk_tier="refer")
    before = type(before)(**{**before.__dict__, "image": small, "p_malignant": 0.1})
    after = type(after)(**{**after.__dict__, "image": large, "p_malignant": 0.4})
    c = compare(after, before)  # either order
    assert c.earlier is before and c.later is after
    assert c.p_malignant_change == pytest.approx(0.3)
    assert c.tier_change == "higher" and c.same_lesion
    assert c.area_change == pytest.approx((90 / 60) ** 2 - 1, rel=0.25)
    assert c.days == pytest.approx(49 / 1440)
