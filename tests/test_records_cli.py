"""``skinscan records``: list, export, verify, open and keygen, through the real entry point."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from device.cli import main
from device.records.paths import DB_NAME, IMAGES_DIR
from device.records.store import SqliteScanStore
from device.records.testing import make_record

PATIENT = "SKS-000142-7F3Q"


@pytest.fixture
def data_dir(tmp_path):
    folder = tmp_path / "data"
    with SqliteScanStore(folder, min_free_bytes=0) as store:  # the default key file
        for seed in (60, 3000, 6000):  # 01:00 on Jan 1st, then Jan 3rd and Jan 5th
            store.save(make_record(seed, patient_ref=PATIENT, body_site="back"))
        store.save(make_record(7000, patient_ref="SKS-000977-2B1C", body_site="face"))
    return folder


@pytest.fixture
def keys(tmp_path, capsys):
    assert main(["records", "keygen", "--out", str(tmp_path / "keys")]) == 0
    capsys.readouterr()
    return tmp_path / "keys" / "clinic.key", tmp_path / "keys" / "clinic.pub"


def test_list_shows_records_without_patient_references(data_dir, capsys):
    assert main(["records", "list", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "4 record(s)" in out
    assert make_record(60).scan_id[:8] in out
    assert f"patient {PATIENT}" in out  # issue 22 section 1: the opaque reference is shown
    assert main(["records", "list", "--data-dir", str(data_dir), "--patient", PATIENT]) == 0
    assert "3 record(s)" in capsys.readouterr().out
    assert main(["records", "list", "--data-dir", str(data_dir), "--since", "2024-01-04"]) == 0
    assert "2 record(s)" in capsys.readouterr().out


def test_data_dir_from_the_environment(data_dir, capsys, monkeypatch):
    monkeypatch.setenv("SKINSCAN_DATA_DIR", str(data_dir))
    assert main(["records", "list"]) == 0
    assert "4 record(s)" in capsys.readouterr().out


def test_list_without_records_is_one_clear_error(tmp_path, capsys):
    code = main(["records", "list", "--data-dir", str(tmp_path / "none")])
    err = capsys.readouterr().err
    assert code == 2
    assert "no scan records in" in err and "Traceback" not in err
    assert not (tmp_path / "none").exists()  # looking does not create a store


def test_bad_date_is_a_usage_error(data_dir, capsys):
    with pytest.raises(SystemExit) as info:
        main(["records", "list", "--data-dir", str(data_dir), "--since", "last week"])
    assert info.value.code == 2
    assert "not a date" in capsys.readouterr().err


def test_verify_passes_then_names_the_altered_record(data_dir, capsys):
    assert main(["records", "verify", "--data-dir", str(data_dir)]) == 0
    assert "checked 4 record(s): ok" in capsys.readouterr().out
    victim = make_record(3000).scan_id
    path = data_dir / IMAGES_DIR / f"{victim}.heatmap"
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF
    path.write_bytes(bytes(blob))
    assert main(["records", "verify", "--data-dir", str(data_dir)]) == 1
    out = capsys.readouterr().out
    assert victim in out and "PROBLEMS FOUND" in out


def test_export_then_open_at_the_clinic(data_dir, keys, tmp_path, capsys):
    private, public = keys
    usb = tmp_path / "usb"
    args = ["records", "export", "--data-dir", str(data_dir), "--to", str(usb)]
    assert main([*args, "--clinic-key", str(public), "--since", "2024-01-03"]) == 0
    assert "exported 3 record(s)" in capsys.readouterr().out
    conn = sqlite3.connect(data_dir / DB_NAME)
    logged = conn.execute("SELECT scan_ids FROM exports").fetchall()
    conn.close()
    assert len(json.loads(logged[0][0])) == 3  # the device logs what left it

    out_dir = tmp_path / "opened"
    assert main(["records", "open", str(usb), "--key", str(private), "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "3 record(s)" in out and PATIENT in out
    assert len(json.loads((out_dir / "records.json").read_text())["records"]) == 3


def test_export_uses_the_provisioned_clinic_key(data_dir, keys, tmp_path, capsys):
    shutil.copy(keys[1], data_dir / "clinic.pub")
    assert main(["records", "export", "--data-dir", str(data_dir), "--to", str(tmp_path)]) == 0
    assert "exported 4 record(s)" in capsys.readouterr().out


def test_export_without_a_clinic_key_fails_clearly(data_dir, tmp_path, capsys):
    code = main(["records", "export", "--data-dir", str(data_dir), "--to", str(tmp_path / "u")])
    assert code == 2
    assert "no key file" in capsys.readouterr().err


def test_open_with_the_wrong_key_fails_clearly(data_dir, keys, tmp_path, capsys):
    usb = tmp_path / "usb"
    args = ["records", "export", "--data-dir", str(data_dir), "--to", str(usb)]
    assert main([*args, "--clinic-key", str(keys[1])]) == 0
    assert main(["records", "keygen", "--out", str(tmp_path / "k2")]) == 0
    capsys.readouterr()
    code = main(["records", "open", str(usb), "--key", str(tmp_path / "k2" / "clinic.key")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot be opened with this clinic key" in err
    code = main(["records", "open", str(usb), "--key", str(keys[1])])
    assert code == 2 and "not a private key" in capsys.readouterr().err
