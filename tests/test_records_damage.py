"""Records under a full disk and damage (issue 22 section 2), and the records CLI (section 4).

A full disk is a real 4 MiB tmpfs when this runs as root with ``mount``; otherwise
SQLite's "disk I/O error" is injected where the store opens its database.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import device.records.sqlite_open as sqlite_open_mod
from device.cli import main
from device.errors import StorageError
from device.records.api import DamagedDatabaseError, StoreReadOnlyError
from device.records.paths import DB_NAME, IMAGES_DIR
from device.records.space import MIB, reserve_for
from device.records.store import SqliteScanStore, open_store
from device.records.testing import make_record

ROOT = Path(__file__).resolve().parents[1]


def _snapshot(folder: Path) -> dict[str, str]:
    """Every path under ``folder`` with its content hash (folders as "dir")."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _fill(folder: Path, n: int, size: int = 32) -> list[str]:
    ids = []
    with SqliteScanStore(folder, min_free_bytes=0) as store:
        for seed in range(n):
            ids.append(store.save(make_record(seed, size=size)))
    return ids


@pytest.fixture
def keys(tmp_path, capsys):
    assert main(["records", "keygen", "--out", str(tmp_path / "keys")]) == 0
    capsys.readouterr()
    return tmp_path / "keys" / "clinic.key", tmp_path / "keys" / "clinic.pub"


def _mount_tmpfs(folder: Path, size: str) -> bool:
    if os.environ.get("SKINSCAN_TEST_NO_MOUNT") or os.geteuid() != 0 or not shutil.which("mount"):
        return False
    cmd = ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder)]
    return subprocess.run(cmd, capture_output=True).returncode == 0


def _fill_disk(folder: Path) -> None:
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _full_disk(tmp_path: Path, monkeypatch) -> Iterator[tuple[Path, str]]:
    """A data folder on a disk that is 100% full: a real tmpfs, or SQLite's I/O error injected."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    real = _mount_tmpfs(mnt, "4m")
    try:
        yield mnt, "tmpfs" if real else "simulated"
    finally:
        if real:
            subprocess.run(["umount", str(mnt)], capture_output=True)


def _simulate_full(monkeypatch) -> None:
    real_connect = sqlite3.connect

    class FullConnection:
        def __init__(self, conn):
            self._conn = conn

        def execute(self, *args):
            error = sqlite3.OperationalError("disk I/O error")
            error.sqlite_errorcode = 4874  # SQLITE_IOERR_SHMSIZE, as a full tmpfs reports
            raise error

        def __getattr__(self, name):
            return getattr(self._conn, name)

        def __setattr__(self, name, value):
            if name == "_conn":
                object.__setattr__(self, name, value)
            else:
                setattr(self._conn, name, value)

    def connect(target, *args, uri=False, **kwargs):
        conn = real_connect(target, *args, uri=uri, **kwargs)
        return conn if uri else FullConnection(conn)  # read-write opens fail, read-only work

    monkeypatch.setattr(sqlite_open_mod.sqlite3, "connect", connect)


def test_full_disk_keeps_saved_scans_listable_verifiable_exportable_and_shown(
    tmp_path, monkeypatch, keys, capsys
):
    with _full_disk(tmp_path, monkeypatch) as (mnt, how):
        data = mnt / "data"
        ids = _fill(data, 16)
        if how == "tmpfs":
            _fill_disk(mnt)
            assert os.statvfs(mnt).f_bavail == 0
        else:
            _simulate_full(monkeypatch)
        before = _snapshot(data)
        args = ["--data-dir", str(data)]
        assert main(["records", "list", *args]) == 0, how
        assert "16 record(s)" in capsys.readouterr().out
        assert main(["records", "verify", *args]) == 0
        assert "checked 16 record(s): ok" in capsys.readouterr().out
        if how == "tmpfs":
            assert _snapshot(data) == before  # reading changed and created nothing
        usb = tmp_path / "usb"
        exporting = ["records", "export", *args, "--to", str(usb)]
        assert main([*exporting, "--clinic-key", str(keys[1])]) == 0
        out = capsys.readouterr()
        assert "exported 16 record(s)" in out.out
        assert "could not be logged" in out.err

        store = open_store(data)  # what the device app does at start
        try:
            assert isinstance(store, SqliteScanStore), store.notices
            assert not store.writable
            assert [n.kind for n in store.notices] == ["storage_full"]
            assert "can NOT be saved" in store.notices[0].message
            assert [r.scan_id for r in store.history()] == ids[::-1]
            with pytest.raises(StoreReadOnlyError):
                store.save(make_record(99))
        finally:
            store.close()
        assert main(["records", "open", str(usb), "--clinic-key", str(keys[0])]) == 0
        assert "16 record(s)" in capsys.readouterr().out
        if how == "tmpfs":  # a read-write attempt may leave SQLite's empty -wal/-shm; no data
            after = {k: v for k, v in _snapshot(data).items() if not k.endswith(("-wal", "-shm"))}
            assert after == {k: v for k, v in before.items() if not k.endswith(("-wal", "-shm"))}
        print(f"[full disk, {how}] 16 scans listed, verified, exported and shown")


_SAVE_AND_DIE = """
import os, sys
from device.records.store import SqliteScanStore
from device.records.testing import make_record
store = SqliteScanStore(sys.argv[1], min_free_bytes=0)
for seed in range(int(sys.argv[2])):
    store.save(make_record(seed))
os._exit(0)  # a power cut: the WAL is never checkpointed
"""


def test_full_disk_after_a_power_cut_still_shows_the_scans_in_the_wal(tmp_path, monkeypatch):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if not _mount_tmpfs(mnt, "4m"):
        pytest.skip("needs root and mount for a real full disk")
    try:
        data = mnt / "data"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        subprocess.run([sys.executable, "-c", _SAVE_AND_DIE, str(data), "12"], env=env, check=True)
        assert (data / f"{DB_NAME}-wal").stat().st_size > 0
        _fill_disk(mnt)
        with SqliteScanStore(data, read_only=True) as store:
            assert len(store) == 12
        store = open_store(data)  # writable or not (the -shm may already be full size)
        try:
            assert len(store.history()) == 12
            with pytest.raises(StorageError):
                store.save(make_record(99))
        finally:
            store.close()
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


# --------------------------------------------------------------------------- the reserve


def test_reserve_scales_with_the_disk():
    assert reserve_for(32 * 1024 * MIB) == 16 * MIB  # an SD card: the 16 MiB cap
    assert reserve_for(64 * MIB) == int(0.02 * 64 * MIB)  # small: 2 %
    assert reserve_for(4 * MIB) == 1 * MIB  # tiny: the 1 MiB floor


def test_a_small_disk_saves_and_says_how_much_is_reserved(tmp_path, monkeypatch):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if not _mount_tmpfs(mnt, "8m"):
        monkeypatch.setattr(
            "device.records.sqlite_store.total_bytes", lambda folder: 8 * MIB, raising=True
        )
        budget = {"free": 8 * MIB}
        monkeypatch.setattr(
            "device.records.sqlite_store.free_bytes", lambda folder: budget["free"], raising=True
        )
    try:
        with SqliteScanStore(mnt / "data") as store:  # default reserve
            assert store.reserve_bytes == 1 * MIB
            saved = 0
            with pytest.raises(Exception) as info:
                for seed in range(400):
                    store.save(make_record(seed, size=160))
                    saved += 1
                    if "budget" in locals():
                        budget["free"] -= 160 * 160 * 3 * 2
            assert saved >= 5  # with a fixed 16 MiB reserve an 8 MiB disk saved nothing
            message = str(info.value)
            assert "NOT saved" in message and "1.0 MiB is kept in reserve" in message
            assert "records archive" in message
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


# --------------------------------------------------------------------------- damage


@pytest.fixture
def truncated(tmp_path) -> Path:
    data = tmp_path / "data"
    _fill(data, 6, size=64)
    data.chmod(0o700)
    with open(data / DB_NAME, "r+b") as fh:
        fh.truncate(10000)
    return data


@pytest.mark.parametrize("action", ["list", "verify", "export"])
def test_read_only_commands_name_the_damage_and_change_nothing(
    truncated, action, keys, tmp_path, capsys
):
    before = _snapshot(truncated)
    extra = ["--to", str(tmp_path / "usb"), "--clinic-key", str(keys[1])]
    code = main(
        ["records", action, "--data-dir", str(truncated), *(extra if action == "export" else [])]
    )
    out = capsys.readouterr()
    assert code != 0
    assert "damaged" in (out.out + out.err).lower()
    assert "records repair" in out.out + out.err
    assert "checked 0 record(s): ok" not in out.out
    assert _snapshot(truncated) == before
    assert not list(truncated.glob("corrupt-*"))


def test_repair_moves_the_damaged_database_aside_and_says_where(truncated, capsys):
    assert main(["records", "repair", "--data-dir", str(truncated)]) == 0
    out = capsys.readouterr().out
    moved = list(truncated.glob("corrupt-*"))
    assert len(moved) == 1 and str(moved[0]) in out
    assert (moved[0] / DB_NAME).stat().st_size == 10000  # kept, not deleted
    assert len(list((moved[0] / IMAGES_DIR).iterdir())) == 12
    assert oct(moved[0].stat().st_mode & 0o777) == oct(0o700)
    assert main(["records", "verify", "--data-dir", str(truncated)]) == 0
    assert "checked 0 record(s): ok" in capsys.readouterr().out


def test_the_app_moves_a_damaged_database_and_tells_where(truncated):
    store = open_store(truncated)
    try:
        assert isinstance(store, SqliteScanStore) and store.writable
        assert store.moved_aside is not None and store.moved_aside.parent == truncated
        (notice,) = store.notices
        assert notice.kind == "corrupt_db_moved" and notice.path == str(store.moved_aside)
        assert str(store.moved_aside) in notice.message
    finally:
        store.close()


def test_a_store_that_may_not_recover_raises_with_the_path(truncated):
    with pytest.raises(DamagedDatabaseError) as info:
        SqliteScanStore(truncated, recover=False)
    assert info.value.path == str(truncated / DB_NAME) and info.value.damage
    assert not list(truncated.glob("corrupt-*"))


@pytest.mark.parametrize("mode", [0o700, 0o750])
def test_moved_aside_folders_take_the_data_folders_permissions(tmp_path, mode):
    data = tmp_path / "data"
    _fill(data, 2)
    data.chmod(mode)
    (data / DB_NAME).write_bytes(b"not a database at all" * 100)
    for suffix in ("-wal", "-shm"):
        (data / f"{DB_NAME}{suffix}").unlink(missing_ok=True)
    old = os.umask(0o022)
    try:
        with SqliteScanStore(data) as store:
            moved = store.moved_aside
    finally:
        os.umask(old)
    assert moved is not None
    assert oct(moved.stat().st_mode & 0o777) == oct(mode)


# --------------------------------------------------------------------------- one bad record


def _flip_a_bit_in_one_row(data: Path, victim_bundle: str) -> None:
    db = data / DB_NAME
    blob = bytearray(db.read_bytes())
    at = blob.find(victim_bundle.encode())
    assert at > 0
    blob[at + 7] ^= 0x02
    db.write_bytes(bytes(blob))


def test_one_flipped_bit_skips_one_record_and_exports_and_shows_the_rest(tmp_path, keys, capsys):
    data = tmp_path / "data"
    victim = make_record(2, bundle_id="bundle-AAAA-victim")
    with SqliteScanStore(data, min_free_bytes=0) as store:
        for seed in (1, 3, 4):
            store.save(make_record(seed))
        store.save(victim)
    _flip_a_bit_in_one_row(data, "bundle-AAAA-victim")
    usb = tmp_path / "usb"
    code = main(
        [
            "records",
            "export",
            "--data-dir",
            str(data),
            "--to",
            str(usb),
            "--clinic-key",
            str(keys[1]),
        ]
    )
    out = capsys.readouterr()
    assert code == 1
    assert victim.scan_id in out.err and "SKIPPED 1 damaged record(s)" in out.out
    assert "exported 3 record(s)" in out.out
    assert main(["records", "open", str(usb), "--clinic-key", str(keys[0])]) == 0
    assert "3 record(s)" in capsys.readouterr().out
    with SqliteScanStore(data) as store:  # the device's History
        shown = store.history()
        assert len(shown) == 3 and victim.scan_id not in {r.scan_id for r in shown}
        assert list(store.damaged) == [victim.scan_id]


# --------------------------------------------------------------------------- acknowledged archive


def test_archive_frees_space_only_for_scans_the_clinic_acknowledged(tmp_path, keys, capsys):
    private, public = keys
    data = tmp_path / "data"
    ids = _fill(data, 5, size=64)
    args = ["--data-dir", str(data)]
    usb = tmp_path / "usb"
    assert main(["records", "archive", *args, "--to", str(usb), "--clinic-key", str(public)]) == 0
    assert "archived and removed 0 scan(s)" in capsys.readouterr().out  # nothing acknowledged

    assert main(["records", "export", *args, "--to", str(usb), "--clinic-key", str(public)]) == 0
    with SqliteScanStore(data) as store:
        store.save(make_record(50, size=64))  # made after the export: not acknowledged
    receipt = tmp_path / "clinic" / "receipt.json"
    assert (
        main(["records", "open", str(usb), "--clinic-key", str(private), "--receipt", str(receipt)])
        == 0
    )
    capsys.readouterr()

    forged = tmp_path / "forged.json"
    body = json.loads(receipt.read_text())
    forged.write_text(json.dumps({**body, "proof": "A" * 44}))
    assert main(["records", "ack", *args, str(forged)]) == 2
    assert "proof does not match" in capsys.readouterr().err

    assert main(["records", "ack", *args, str(receipt)]) == 0
    assert "the clinic has 5 scan(s)" in capsys.readouterr().out
    images_before = len(list((data / IMAGES_DIR).iterdir()))
    archive_dir = tmp_path / "archive"
    assert (
        main(["records", "archive", *args, "--to", str(archive_dir), "--clinic-key", str(public)])
        == 0
    )
    out = capsys.readouterr().out
    assert "archived and removed 5 scan(s)" in out and "kept 1 not yet acknowledged" in out
    assert len(list((data / IMAGES_DIR).iterdir())) == images_before - 10
    with SqliteScanStore(data) as store:
        assert len(store) == 1 and store.verify().ok
    assert main(["records", "open", str(archive_dir), "--clinic-key", str(private)]) == 0
    opened = capsys.readouterr().out
    assert "5 record(s)" in opened and all(sid[:8] in opened for sid in ids)


# --------------------------------------------------------------------------- CLI wording


def test_export_without_a_key_points_to_keygen_and_clinic_key(tmp_path, capsys):
    data = tmp_path / "data"
    _fill(data, 1)
    assert main(["records", "export", "--data-dir", str(data), "--to", str(tmp_path / "u")]) == 2
    err = capsys.readouterr().err
    assert "records keygen" in err and "--clinic-key" in err


def test_open_takes_clinic_key_and_keeps_key_as_a_hidden_alias(tmp_path, keys, capsys):
    data = tmp_path / "data"
    _fill(data, 2)
    usb = tmp_path / "usb"
    args = ["records", "export", "--data-dir", str(data), "--to", str(usb)]
    assert main([*args, "--clinic-key", str(keys[1])]) == 0
    for flag in ("--clinic-key", "--key"):
        assert main(["records", "open", str(usb), flag, str(keys[0])]) == 0
        assert "2 record(s)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["records", "open", "--help"])
    help_text = capsys.readouterr().out
    assert "--clinic-key" in help_text and "--key " not in help_text


def test_every_records_action_and_option_has_help():
    from device.records.cli import configure

    parser = argparse.ArgumentParser()
    configure(parser)
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    helps = {c.dest: c.help for c in sub._choices_actions}
    assert set(helps) == set(sub.choices) and all(helps.values()), helps
    for name, action_parser in sub.choices.items():
        for action in action_parser._actions:
            if action.help == argparse.SUPPRESS:
                continue
            assert action.help, f"records {name} {action.option_strings or action.dest}"


# --------------------------------------------------------------------------- a damaged part


def _flip_byte(path: Path, at: int = -1) -> None:
    blob = bytearray(path.read_bytes())
    blob[at] ^= 0x01
    path.write_bytes(bytes(blob))


def test_a_damaged_heatmap_costs_only_the_heatmap(tmp_path, keys, capsys):
    """One changed byte in a heatmap file: the scan is exported with its photo and result,
    the damage is named in the export and by `records list`, which used to blame the
    patient reference."""
    from device.records.export import load_private_key, open_export

    data = tmp_path / "data"
    victim = make_record(7, size=40, patient_ref="SKS-000142-7F3Q", body_site="back")
    with SqliteScanStore(data, min_free_bytes=0) as store:
        store.save(make_record(6, size=40))
        store.save(victim)
    _flip_byte(data / IMAGES_DIR / f"{victim.scan_id}.heatmap")

    assert main(["records", "list", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if victim.scan_id[:8] in ln)
    assert "patient SKS-000142-7F3Q" in line and "reference unreadable" not in line
    assert "DAMAGED the heatmap only" in line and "was altered" in line
    assert "1 damaged" in out

    usb = tmp_path / "usb"
    args = ["records", "export", "--data-dir", str(data), "--to", str(usb)]
    assert main([*args, "--clinic-key", str(keys[1])]) == 0
    out = capsys.readouterr()
    assert "exported 2 record(s)" in out.out
    assert f"DAMAGED {victim.scan_id}: exported without its heatmap" in out.err

    opened = open_export(usb, load_private_key(keys[0]))
    back = {r.scan_id: r for r in opened.records}[victim.scan_id]
    assert (back.image == victim.image).all()  # the photo, intact
    assert back.probabilities == victim.probabilities and back.risk_tier == victim.risk_tier
    assert back.patient_ref == "SKS-000142-7F3Q"
    assert back.heatmap is None and "heatmap file was altered" in back.damaged["heatmap"]
    other = next(r for r in opened.records if r.scan_id != victim.scan_id)
    assert other.heatmap is not None and not other.damaged

    assert main(["records", "open", str(usb), "--clinic-key", str(keys[0])]) == 0
    assert "DAMAGED heatmap" in capsys.readouterr().out

    with SqliteScanStore(data) as store:
        assert store.damage_of(victim.scan_id).keys() == {"heatmap"}
        assert store.damage_of(other.scan_id) == {}
        shown = {r.scan_id: r for r in store.history()}  # the device's History keeps it
        assert shown[victim.scan_id].heatmap is None and "heatmap" in shown[victim.scan_id].damaged
        assert not store.damaged
        with pytest.raises(StorageError):
            store.get(victim.scan_id)  # a plain read still refuses the damaged record
        report = store.verify()
        assert [sid for sid, _ in report.problems] == [victim.scan_id]


def test_a_damaged_photo_or_row_is_named_as_such(tmp_path, capsys):
    data = tmp_path / "data"
    photo, row = make_record(8, size=40), make_record(9, size=40, bundle_id="bundle-ROW-victim")
    with SqliteScanStore(data, min_free_bytes=0) as store:
        store.save(photo)
        store.save(row)
    _flip_byte(data / IMAGES_DIR / f"{photo.scan_id}.image")
    conn = sqlite3.connect(data / DB_NAME)
    conn.execute("DROP TRIGGER scans_no_update")
    conn.execute("UPDATE scans SET label = 'mel' WHERE bundle_id = 'bundle-ROW-victim'")
    conn.commit()
    conn.close()
    with SqliteScanStore(data) as store:
        assert store.damage_of(photo.scan_id).keys() == {"photo"}
        assert store.damage_of(row.scan_id).keys() == {"record"}
    assert main(["records", "list", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert "DAMAGED the photo" in out and "DAMAGED the record itself" in out


def test_an_acknowledged_scan_with_a_damaged_heatmap_is_archived_with_the_damage_named(
    tmp_path, keys, capsys
):
    from device.records.export import load_private_key, open_export

    private, public = keys
    data = tmp_path / "data"
    ids = _fill(data, 2, size=40)
    args = ["--data-dir", str(data)]
    _flip_byte(data / IMAGES_DIR / f"{ids[0]}.heatmap", 10)
    usb, receipt = tmp_path / "usb", tmp_path / "receipt.json"
    assert main(["records", "export", *args, "--to", str(usb), "--clinic-key", str(public)]) == 0
    opening = ["records", "open", str(usb), "--clinic-key", str(private), "--receipt", str(receipt)]
    assert main(opening) == 0
    assert main(["records", "ack", *args, str(receipt)]) == 0
    archive = tmp_path / "archive"
    assert (
        main(["records", "archive", *args, "--to", str(archive), "--clinic-key", str(public)]) == 0
    )
    assert "archived and removed 2 scan(s)" in capsys.readouterr().out
    back = {r.scan_id: r for r in open_export(archive, load_private_key(private)).records}
    assert back[ids[0]].heatmap is None and "heatmap" in back[ids[0]].damaged
    assert back[ids[1]].heatmap is not None and not back[ids[1]].damaged
