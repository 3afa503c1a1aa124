"""The scan stores: the ScanStore contract, privacy at rest, tampering, and faults.

Faults use real mechanisms where this machine allows them (a small tmpfs for a
full disk, a read-only bind mount when running as root, chmod otherwise) and a
simulated failure of the same system call where it does not.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

import device.records.durable as durable_mod
import device.records.sqlite_open as sqlite_open_mod
from device.errors import DiskFullError, StorageError, TamperError
from device.records.api import (
    InvalidRecordError,
    PatientRefError,
    ScanStore,
    StoreReadOnlyError,
    correction_of,
)
from device.records.paths import DB_NAME, IMAGES_DIR
from device.records.store import MemoryScanStore, SqliteScanStore, iter_records, open_store
from device.records.testing import make_record

PATIENT = "SKS-000142-7F3Q"
OTHER_PATIENT = "SKS-000977-2B1C"
# Image signatures long enough that random ciphertext never holds them by chance
# (3 bytes of JPEG SOI would turn up in ~1% of runs over 150 KB of ciphertext).
MAGICS = {
    "PNG signature": b"\x89PNG\r\n\x1a\n",
    "PNG header chunk": b"\x00\x00\x00\rIHDR",
    "JPEG/JFIF": b"JFIF\x00",
    "JPEG/Exif": b"Exif\x00",
}


@pytest.fixture
def key() -> bytes:
    return os.urandom(32)


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def sqlite_store(data_dir, key) -> Iterator[SqliteScanStore]:
    with SqliteScanStore(data_dir, key, min_free_bytes=0) as store:
        yield store


@pytest.fixture(params=["sqlite", "memory"])
def any_store(request, data_dir, key) -> Iterator[ScanStore]:
    if request.param == "memory":
        yield MemoryScanStore()
        return
    with SqliteScanStore(data_dir, key, min_free_bytes=0) as store:
        yield store


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _assert_same(a, b) -> None:
    assert a.scan_id == b.scan_id
    np.testing.assert_array_equal(a.image, b.image)
    if b.heatmap is None:
        assert a.heatmap is None
    else:
        np.testing.assert_array_equal(a.heatmap, b.heatmap)
    for name in (
        "created_at",
        "device_id",
        "label",
        "risk_tier",
        "bundle_id",
        "bundle_sha256",
        "app_version",
        "patient_ref",
        "operator",
        "body_site",
        "corrects",
    ):
        assert getattr(a, name) == getattr(b, name), name
    assert dict(a.probabilities) == dict(b.probabilities)
    assert dict(a.quality) == dict(b.quality)
    assert dict(a.extra) == dict(b.extra)
    assert a.p_malignant == b.p_malignant


# --------------------------------------------------------------------------- the contract


def test_both_stores_implement_the_protocol(any_store):
    assert isinstance(any_store, ScanStore)


def test_save_then_get_returns_the_same_record(any_store):
    record = make_record(
        1,
        size=40,
        patient_ref=PATIENT,
        operator="op-7",
        body_site="left forearm",
        extra={"note": "raised"},
    )
    assert any_store.save(record) == record.scan_id
    _assert_same(any_store.get(record.scan_id), record)


def test_grey_heatmap_and_no_heatmap_round_trip(any_store):
    grey = make_record(2, heatmap=np.arange(32 * 32, dtype=np.uint8).reshape(32, 32) % 251)
    none = make_record(3, heatmap=None)
    for record in (grey, none):
        any_store.save(record)
        _assert_same(any_store.get(record.scan_id), record)


def test_unknown_scan_is_key_error(any_store):
    with pytest.raises(KeyError):
        any_store.get("6f1c9a52-3f7e-4b0c-9a55-0d2c1e7f4a10")


def test_history_by_patient_and_site_newest_first(any_store):
    mine = [make_record(i, patient_ref=PATIENT, body_site="back") for i in (5, 1, 9)]
    other_site = make_record(3, patient_ref=PATIENT, body_site="face")
    other_patient = make_record(4, patient_ref=OTHER_PATIENT, body_site="back")
    anonymous = make_record(6, body_site="back")
    for record in [*mine, other_site, other_patient, anonymous]:
        any_store.save(record)
    found = any_store.history(patient_ref=PATIENT, body_site="back")
    assert [r.scan_id for r in found] == [mine[2].scan_id, mine[0].scan_id, mine[1].scan_id]
    assert len(any_store.history(patient_ref=PATIENT)) == 4
    assert len(any_store.history(body_site="back")) == 5
    assert len(any_store.history()) == 6
    assert len(any_store.history(limit=2)) == 2
    assert any_store.history(patient_ref="SKS-123456-00") == []


def test_history_refuses_a_name_as_patient_reference(any_store):
    with pytest.raises(PatientRefError):
        any_store.history(patient_ref="Maria Lopez")


@pytest.mark.parametrize("ref", ["Maria Lopez", "SMITH1980", "ab12", "x" * 41, "SKS 0001 22"])
def test_a_name_or_malformed_reference_is_never_saved(any_store, ref):
    with pytest.raises(InvalidRecordError, match="patient reference"):
        any_store.save(make_record(1, patient_ref=ref))
    assert any_store.history() == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"scan_id": "not-a-uuid"}, "UUID"),
        ({"created_at": "yesterday"}, "ISO-8601"),
        ({"image": np.zeros((8, 8), np.uint8)}, "RGB"),
        ({"image": np.zeros((8, 8, 3), np.float32)}, "uint8"),
        ({"label": "xyz"}, "label"),
        ({"risk_tier": "maybe"}, "risk_tier"),
        ({"p_malignant": 1.5}, "p_malignant"),
        ({"quality": {"sharpness": float("nan")}}, "finite"),
    ],
)
def test_malformed_records_are_refused_and_leave_nothing(any_store, change, message):
    with pytest.raises(InvalidRecordError, match=message):
        any_store.save(make_record(1, **change))
    assert any_store.history() == []


def test_records_are_append_only_and_corrections_point_back(any_store):
    original = make_record(1, patient_ref=PATIENT, body_site="back")
    any_store.save(original)
    with pytest.raises(StorageError, match="saved already"):
        any_store.save(replace(original, label="mel"))
    fix = correction_of(original, body_site="upper back", created_at="2024-01-02T00:00:00+00:00")
    any_store.save(fix)
    assert any_store.get(fix.scan_id).corrects == original.scan_id
    _assert_same(any_store.get(original.scan_id), original)  # the original is kept
    assert [r.scan_id for r in any_store.history(patient_ref=PATIENT)] == [
        fix.scan_id,
        original.scan_id,
    ]


def test_a_correction_of_an_unknown_scan_is_refused(any_store):
    with pytest.raises(InvalidRecordError, match="does not exist"):
        any_store.save(make_record(2, corrects="6f1c9a52-3f7e-4b0c-9a55-0d2c1e7f4a10"))


def test_summaries_and_iteration_since_a_date(any_store):
    for seed in (10, 2000, 5000):  # minutes after 2024-01-01
        any_store.save(make_record(seed))
    since = datetime(2024, 1, 2, tzinfo=timezone.utc)
    assert [s.scan_id for s in any_store.summaries(since=since)] == [
        make_record(2000).scan_id,
        make_record(5000).scan_id,
    ]
    assert len(list(iter_records(any_store))) == 3


# --------------------------------------------------------------------------- privacy at rest


def test_no_plaintext_reference_and_no_image_magic_on_disk(data_dir, key):
    store = SqliteScanStore(data_dir, key, min_free_bytes=0)
    for seed in range(5):
        store.save(make_record(seed, size=48, patient_ref=PATIENT, body_site="back"))

    def check() -> int:
        files = _files(data_dir)
        for path in files:
            blob = path.read_bytes()
            assert PATIENT.encode() not in blob, path
            assert PATIENT.encode("utf-16-le") not in blob, path
            for name, magic in MAGICS.items():
                assert magic not in blob, f"{name} in {path}"
            assert not blob.startswith(b"\xff\xd8\xff"), f"a JPEG file: {path}"
        return len(files)

    # Control: the checks do catch plainly stored images.
    import cv2

    for ext in (".png", ".jpg"):
        encoded = cv2.imencode(ext, make_record(0).image)[1].tobytes()
        assert any(magic in encoded for magic in MAGICS.values()), ext

    seen_open = check()  # with the WAL still holding the rows
    assert (data_dir / f"{DB_NAME}-wal").exists()
    store.close()
    check()
    assert seen_open >= 1 + 10  # the database and 10 image files were actually scanned


def test_data_files_are_private_to_the_service_user(sqlite_store, data_dir):
    sqlite_store.save(make_record(1))
    for path in [data_dir / DB_NAME, *(data_dir / IMAGES_DIR).iterdir()]:
        assert path.stat().st_mode & 0o077 == 0, path
    assert (data_dir / "device.key").exists() is False  # a key was given: no key file made


def test_default_key_file_is_created_and_reused(data_dir):
    with SqliteScanStore(data_dir, min_free_bytes=0) as store:
        store.save(make_record(1, patient_ref=PATIENT))
    assert (data_dir / "device.key").stat().st_mode & 0o777 == 0o600
    with SqliteScanStore(data_dir, min_free_bytes=0) as store:
        assert store.get(make_record(1).scan_id).patient_ref == PATIENT


def test_wrong_key_fails_loudly_at_open(data_dir, key):
    with SqliteScanStore(data_dir, key) as store:
        store.save(make_record(1))
    with pytest.raises(TamperError, match="device key does not match"):
        SqliteScanStore(data_dir, os.urandom(32))


def test_lost_key_file_is_reported_not_replaced(data_dir):
    with SqliteScanStore(data_dir, min_free_bytes=0) as store:
        store.save(make_record(1))
    (data_dir / "device.key").unlink()
    with pytest.raises(StorageError, match="missing"):
        SqliteScanStore(data_dir)
    assert not (data_dir / "device.key").exists()


# --------------------------------------------------------------------------- tampering


def test_flipped_byte_in_an_image_file_is_tamper(sqlite_store, data_dir):
    a, b = make_record(1), make_record(2)
    sqlite_store.save(a)
    sqlite_store.save(b)
    path = data_dir / IMAGES_DIR / f"{a.scan_id}.image"
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x40
    path.write_bytes(bytes(blob))
    with pytest.raises(TamperError, match="altered"):
        sqlite_store.get(a.scan_id)
    _assert_same(sqlite_store.get(b.scan_id), b)
    report = sqlite_store.verify()
    assert not report.ok
    assert [sid for sid, _ in report.problems] == [a.scan_id]


def test_image_files_swapped_between_records_are_tamper(sqlite_store, data_dir):
    a, b = make_record(1), make_record(2)
    sqlite_store.save(a)
    sqlite_store.save(b)
    pa, pb = (data_dir / IMAGES_DIR / f"{r.scan_id}.image" for r in (a, b))
    blob_a, blob_b = pa.read_bytes(), pb.read_bytes()
    pa.write_bytes(blob_b)
    pb.write_bytes(blob_a)
    for record in (a, b):
        with pytest.raises(TamperError):
            sqlite_store.get(record.scan_id)


def test_flipped_byte_in_a_database_row_is_tamper(data_dir, key):
    victim = make_record(1, bundle_id="bundle-AAAA-victim")
    with SqliteScanStore(data_dir, key) as store:
        store.save(victim)
        store.save(make_record(2))
    db = data_dir / DB_NAME
    blob = bytearray(db.read_bytes())
    at = blob.find(b"bundle-AAAA-victim")
    assert at > 0
    blob[at + 7] ^= 0x02  # "bundle-CAAA-victim": same length, valid UTF-8, valid b-tree
    db.write_bytes(bytes(blob))
    with SqliteScanStore(data_dir, key) as store:
        assert store.notices == []  # not structural damage: the row itself is caught
        with pytest.raises(TamperError, match="failed authentication"):
            store.get(victim.scan_id)
        store.get(make_record(2).scan_id)
        assert [sid for sid, _ in store.verify().problems] == [victim.scan_id]


def test_a_row_edited_with_sql_is_tamper_and_triggers_refuse_edits(data_dir, key):
    record = make_record(1, label="nv", probabilities={"nv": 0.9, "mel": 0.1})
    with SqliteScanStore(data_dir, key) as store:
        store.save(record)
    conn = sqlite3.connect(data_dir / DB_NAME)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE scans SET label = 'mel'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM scans")
    conn.execute("DROP TRIGGER scans_no_update")  # what someone with the SD card could do
    conn.execute("UPDATE scans SET label = 'mel'")
    conn.commit()
    conn.close()
    with SqliteScanStore(data_dir, key) as store, pytest.raises(TamperError):
        store.get(record.scan_id)


def test_verify_reports_a_missing_file_and_a_stray_file(sqlite_store, data_dir):
    a = make_record(1)
    sqlite_store.save(a)
    sqlite_store.save(make_record(2))
    assert sqlite_store.verify().ok
    (data_dir / IMAGES_DIR / f"{a.scan_id}.heatmap").unlink()
    (data_dir / IMAGES_DIR / "stray.image").write_bytes(b"x")
    report = sqlite_store.verify()
    assert report.records == 2 and report.integrity == ["ok"]
    assert [sid for sid, _ in report.problems] == [a.scan_id]
    assert "missing" in report.problems[0][1]
    assert report.unreferenced_files == ["stray.image"]
    assert not report.ok


# --------------------------------------------------------------------------- leftovers


def test_leftovers_of_interrupted_saves_are_swept_at_start(data_dir, key):
    kept = make_record(1)
    with SqliteScanStore(data_dir, key) as store:
        store.save(kept)
    images = data_dir / IMAGES_DIR
    (images / ".tmp-abc.image-1-ff").write_bytes(b"half")
    (images / f"{make_record(2).scan_id}.image").write_bytes(b"never committed")
    with SqliteScanStore(data_dir, key) as store:
        assert (store.swept.temporary_files, store.swept.unreferenced_files) == (1, 1)
        assert sorted(p.name for p in images.iterdir()) == sorted(
            [f"{kept.scan_id}.image", f"{kept.scan_id}.heatmap"]
        )
        _assert_same(store.get(kept.scan_id), kept)


def test_no_sweep_while_another_process_has_the_store_open(data_dir, key):
    first = SqliteScanStore(data_dir, key)
    in_flight = data_dir / IMAGES_DIR / f"{make_record(2).scan_id}.image"
    in_flight.write_bytes(b"being saved by the app right now")
    with SqliteScanStore(data_dir, key) as second:
        assert second.swept.unreferenced_files == 0
    assert in_flight.exists()
    first.close()


# --------------------------------------------------------------------------- corrupt database


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fill(data_dir: Path, key: bytes, n: int) -> list[str]:
    with SqliteScanStore(data_dir, key) as store:
        return [store.save(make_record(i, patient_ref=PATIENT)) for i in range(n)]


def _damage_garbage(db: Path) -> None:
    db.write_bytes(os.urandom(db.stat().st_size))


def _damage_truncate(db: Path) -> None:
    with open(db, "r+b") as fh:
        fh.truncate(db.stat().st_size // 2)


def _damage_foreign(db: Path) -> None:
    db.unlink()
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE photos (x)")
    conn.commit()
    conn.close()


@pytest.mark.parametrize("damage", [_damage_garbage, _damage_truncate, _damage_foreign])
def test_damaged_database_is_moved_aside_and_a_new_one_started(data_dir, key, damage):
    ids = _fill(data_dir, key, 40)
    db = data_dir / DB_NAME
    assert not (data_dir / f"{DB_NAME}-wal").exists()  # checkpointed at close
    damage(db)
    damaged_sha = _sha(db)
    image_names = sorted(p.name for p in (data_dir / IMAGES_DIR).iterdir())

    with SqliteScanStore(data_dir, key) as store:
        assert [n.kind for n in store.notices] == ["corrupt_db_moved"]
        moved = Path(store.notices[0].path)
        assert moved.parent == data_dir and moved.name.startswith("corrupt-")
        assert "damaged" in store.notices[0].message
        assert _sha(moved / DB_NAME) == damaged_sha  # kept byte for byte, not deleted
        assert sorted(p.name for p in (moved / IMAGES_DIR).iterdir()) == image_names
        assert store.history() == []
        assert store.swept.unreferenced_files == 0
        new = make_record(1000)
        store.save(new)
        _assert_same(store.get(new.scan_id), new)
        with pytest.raises(KeyError):
            store.get(ids[0])
    with SqliteScanStore(data_dir, key) as store:
        assert store.notices == []  # the new database is sound
        assert len(store) == 1


def test_damage_found_while_the_app_has_it_open_is_reported_not_moved(data_dir, key):
    _fill(data_dir, key, 5)
    app = SqliteScanStore(data_dir, key)
    _damage_garbage(data_dir / DB_NAME)
    with pytest.raises(StorageError, match="damaged"):
        SqliteScanStore(data_dir, key)
    assert (data_dir / DB_NAME).exists()
    assert not list(data_dir.glob("corrupt-*"))
    app.close()


def test_images_without_a_database_are_kept_apart(data_dir, key):
    _fill(data_dir, key, 3)
    (data_dir / DB_NAME).unlink()
    with SqliteScanStore(data_dir, key) as store:
        assert [n.kind for n in store.notices] == ["orphaned_images_moved"]
        assert len(list(Path(store.notices[0].path).iterdir())) == 6
        assert store.swept.unreferenced_files == 0


def test_database_from_a_newer_version_is_refused(data_dir, key):
    _fill(data_dir, key, 1)
    conn = sqlite3.connect(data_dir / DB_NAME)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match="newer"):
        SqliteScanStore(data_dir, key)


# --------------------------------------------------------------------------- read-only media


class _OsProxy:
    """The os module with some functions replaced (only the patched store module sees it)."""

    def __init__(self, **overrides):
        self._overrides = overrides

    def __getattr__(self, name):
        if name in self._overrides:
            return self._overrides[name]
        return getattr(os, name)


def _run(*args: str) -> bool:
    if os.environ.get("SKINSCAN_TEST_NO_MOUNT") and args[0] in ("mount", "umount"):
        return False  # exercise the simulated fallbacks
    return subprocess.run(list(args), capture_output=True).returncode == 0


@contextlib.contextmanager
def _read_only(folder: Path, monkeypatch) -> Iterator[str]:
    """Make ``folder`` read-only: chmod (non-root), a read-only bind mount (root), or simulated."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
        for p in modes:
            p.chmod(modes[p] & ~0o222)
        try:
            yield "chmod"
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    if (
        shutil.which("mount")
        and _run("mount", "--bind", str(folder), str(folder))
        and (_run("mount", "-o", "remount,ro,bind", str(folder)) or not _run("umount", str(folder)))
    ):
        try:
            yield "read-only bind mount"
        finally:
            _run("umount", str(folder))
        return

    real_open = os.open

    def refuse_writes(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(sqlite_open_mod, "os", _OsProxy(open=refuse_writes))
    try:
        yield "simulated EROFS"
    finally:
        monkeypatch.undo()


def test_read_only_folder_keeps_records_viewable_and_refuses_saves(data_dir, key, monkeypatch):
    ids = _fill(data_dir, key, 3)
    before = {p: _sha(p) for p in _files(data_dir)}
    with _read_only(data_dir, monkeypatch) as how:
        store = open_store(data_dir, key_provider=key)
        try:
            assert isinstance(store, SqliteScanStore), how
            assert store.writable is False
            assert [n.kind for n in store.notices] == ["read_only"]
            assert "NOT saved" in store.notices[0].message
            assert [r.scan_id for r in store.history(patient_ref=PATIENT)] == ids[::-1]
            with pytest.raises(StoreReadOnlyError, match="read-only"):
                store.save(make_record(99))
        finally:
            store.close()
    assert {p: _sha(p) for p in before} == before  # nothing was changed
    if how != "simulated EROFS":  # (a simulation cannot stop SQLite itself making its -shm)
        assert set(_files(data_dir)) == set(before)


def test_read_only_folder_without_records_falls_back_to_memory(tmp_path, key, monkeypatch):
    folder = tmp_path / "empty"
    folder.mkdir()
    with _read_only(folder, monkeypatch) as how:
        store = open_store(folder, key_provider=key)
    assert isinstance(store, MemoryScanStore), how
    assert store.writable is False
    assert [n.kind for n in store.notices] == ["read_only"]
    with pytest.raises(StoreReadOnlyError, match="can NOT be saved"):
        store.save(make_record(1))
    assert store.history() == []


def test_unusable_data_folder_falls_back_to_memory(tmp_path, key):
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    store = open_store(blocker / "data", key_provider=key)
    assert isinstance(store, MemoryScanStore) and not store.writable
    with pytest.raises(StoreReadOnlyError):
        store.save(make_record(1))


def test_wrong_key_makes_open_store_refuse_saves_with_a_notice(data_dir, key):
    _fill(data_dir, key, 1)
    store = open_store(data_dir, key_provider=os.urandom(32))
    assert isinstance(store, MemoryScanStore)
    assert "device key does not match" in store.notices[0].message


# --------------------------------------------------------------------------- disk full


@contextlib.contextmanager
def _small_disk(folder: Path, size_kib: int, monkeypatch) -> Iterator[str]:
    """A ``size_kib`` tmpfs at ``folder`` when mounting is allowed, else a simulated one."""
    folder.mkdir(parents=True)
    if (
        os.geteuid() == 0
        and shutil.which("mount")
        and _run("mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0700", "tmpfs", str(folder))
    ):
        try:
            yield "tmpfs"
        finally:
            _run("umount", str(folder))
        return
    budget = [size_kib * 1024]
    real_write = os.write

    def write(fd, data):
        if len(data) > budget[0]:
            budget[0] = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        budget[0] -= len(data)
        return real_write(fd, data)

    monkeypatch.setattr(durable_mod, "os", _OsProxy(write=write))
    try:
        yield "simulated ENOSPC"
    finally:
        monkeypatch.undo()


def _fill_until_full(store: SqliteScanStore, size: int, limit: int = 400) -> tuple[list, tuple]:
    saved = []
    for seed in range(limit):
        record = make_record(seed, size=size, patient_ref=PATIENT)
        try:
            store.save(record)
        except DiskFullError as exc:
            return saved, (record, exc)
        saved.append(record)
    raise AssertionError(f"{limit} records fitted: the disk never filled")


def _assert_nothing_partial(store: SqliteScanStore, folder: Path, failed, saved) -> None:
    with pytest.raises(KeyError):
        store.get(failed.scan_id)
    names = [p.name for p in (folder / IMAGES_DIR).iterdir()]
    assert not [n for n in names if failed.scan_id in n or n.startswith(".tmp-")], names
    assert len(store) == len(saved)
    for record in saved:  # every earlier record is still whole
        _assert_same(store.get(record.scan_id), record)
    assert store.verify().ok


@pytest.mark.parametrize(
    ("early_check", "size"),
    [(True, 48), (False, 48), (False, 160)],
    ids=["reserve", "real-enospc-small-images", "real-enospc-large-images"],
)
def test_disk_full_gives_a_clear_error_and_no_partial_record(
    tmp_path, key, monkeypatch, capsys, early_check, size
):
    folder = tmp_path / "small"
    with _small_disk(folder, 768, monkeypatch) as how:
        store = SqliteScanStore(folder, key, min_free_bytes=64 * 1024 if early_check else 0)
        if not early_check:
            monkeypatch.setattr(store, "_check_space", lambda needed: None)
        saved, (failed, exc) = _fill_until_full(store, size)
        assert "NOT saved" in str(exc) and "earlier scans are safe" in str(exc)
        cause = type(exc.__cause__).__name__ if exc.__cause__ else "free-space check"
        with capsys.disabled():
            print(f"\n[disk full, {how}] {len(saved)} saved, then DiskFullError from {cause}")
        _assert_nothing_partial(store, folder, failed, saved)
        store.close()
        with SqliteScanStore(folder, key, min_free_bytes=0) as reopened:
            assert len(reopened) == len(saved)
            assert reopened.verify().ok


def test_disk_full_at_commit_removes_the_written_images(sqlite_store, data_dir, monkeypatch):
    earlier = make_record(1)
    sqlite_store.save(earlier)

    def full(conn, row):
        conn.execute("BEGIN IMMEDIATE")
        error = sqlite3.OperationalError("database or disk is full")
        error.sqlite_errorcode = 13
        raise error

    monkeypatch.setattr(SqliteScanStore, "_insert", staticmethod(full))
    failed = make_record(2)
    with pytest.raises(DiskFullError, match="NOT saved"):
        sqlite_store.save(failed)
    monkeypatch.undo()
    _assert_nothing_partial(sqlite_store, data_dir, failed, [earlier])
    sqlite_store.save(failed)  # once space is back the same scan saves normally
    _assert_same(sqlite_store.get(failed.scan_id), failed)
