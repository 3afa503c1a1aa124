"""Schema 2 of the scan store: the lesion's key, the photo's scale and the bundle label
(issue 28 item 4, issue 27 item 3), the migration of a schema-1 database, and assigning
a patient to a scan saved without one."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path

import pytest

from device.cli import main
from device.errors import TamperError
from device.records.api import InvalidRecordError, PatientRefError
from device.records.assign import PatientAlreadySetError, assign_patient, current_records
from device.records.codec import encode_png
from device.records.crypto import RecordCipher
from device.records.durable import sha256_hex
from device.records.memory_store import MemoryScanStore
from device.records.paths import DB_NAME, IMAGES_DIR
from device.records.schema import SCHEMA, SCHEMA_VERSION, SEALED_COLUMNS, canonical, to_json
from device.records.store import SqliteScanStore
from device.records.testing import make_record

KEY = bytes(range(32))
PATIENT = "SKS-000142-7F3Q"


def _v1_database(folder: Path, records) -> None:
    """A database exactly as schema 1 wrote it: its tables, meta, and rows sealed over the
    schema-1 columns (what every scanner in the field holds before this update)."""
    folder.mkdir(mode=0o700)
    (folder / IMAGES_DIR).mkdir(mode=0o700)
    cipher = RecordCipher(KEY)
    conn = sqlite3.connect(folder / DB_NAME, isolation_level=None)
    for statement in SCHEMA:
        conn.execute(statement)
    meta = {
        "schema_version": "1",
        "key_check": cipher.key_check,
        "device_id": "old-device",
        "created_at": "2024-01-01T00:00:00+00:00",
    }
    conn.executemany("INSERT INTO meta VALUES (?, ?)", list(meta.items()))
    for r in records:
        sid = r.scan_id
        image = cipher.encrypt(encode_png(r.image), sid, "image")
        heat = cipher.encrypt(encode_png(r.heatmap), sid, "heatmap")
        (folder / IMAGES_DIR / f"{sid}.image").write_bytes(image)
        (folder / IMAGES_DIR / f"{sid}.heatmap").write_bytes(heat)
        row = {
            "scan_id": sid,
            "created_at": r.created_at,
            "created_ts": datetime.fromisoformat(r.created_at).timestamp(),
            "device_id": r.device_id,
            "operator": None,
            "body_site": r.body_site,
            "patient_ref_index": cipher.index(r.patient_ref) if r.patient_ref else None,
            "label": r.label,
            "risk_tier": r.risk_tier,
            "p_malignant": r.p_malignant,
            "probabilities": to_json(dict(r.probabilities)),
            "quality": to_json(dict(r.quality)),
            "bundle_id": r.bundle_id,
            "bundle_sha256": r.bundle_sha256,
            "app_version": r.app_version,
            "corrects": None,
            "extra": to_json({}),
            "image_file": f"{sid}.image",
            "image_sha256": sha256_hex(image),
            "heatmap_file": f"{sid}.heatmap",
            "heatmap_sha256": sha256_hex(heat),
        }
        assert list(row) == list(SEALED_COLUMNS)
        seal = cipher.encrypt(
            json.dumps({"patient_ref": r.patient_ref}).encode(), sid, "record", canonical(row, 1)
        )
        marks = ", ".join("?" for _ in range(len(row) + 1))
        conn.execute(
            f"INSERT INTO scans ({', '.join(row)}, seal) VALUES ({marks})", (*row.values(), seal)
        )
    conn.close()


def _columns(folder: Path) -> set[str]:
    conn = sqlite3.connect(folder / DB_NAME)
    try:
        return {r[1] for r in conn.execute("PRAGMA table_info(scans)")}
    finally:
        conn.close()


def _version(folder: Path) -> int:
    conn = sqlite3.connect(folder / DB_NAME)
    try:
        return int(conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])
    finally:
        conn.close()


def test_new_fields_round_trip_through_the_store(tmp_path):
    record = make_record(
        1,
        patient_ref=PATIENT,
        body_site="forearm",
        body_side="left",
        lesion="2",
        mm_per_px=0.0625,
        bundle_label="adapted for clinic-north, 2026-12-07",
    )
    with SqliteScanStore(tmp_path / "d", KEY) as store:
        store.save(record)
        back = store.get(record.scan_id)
        (summary,) = store.summaries()
    assert (back.body_side, back.lesion, back.mm_per_px) == ("left", "2", 0.0625)
    assert back.bundle_label == "adapted for clinic-north, 2026-12-07"
    assert back.lesion_key == (PATIENT, "forearm", "left", "2")
    assert (summary.body_side, summary.lesion, summary.bundle_label) == (
        "left",
        "2",
        back.bundle_label,
    )
    assert _version(tmp_path / "d") == SCHEMA_VERSION == 2


def test_a_schema_1_database_is_migrated_and_its_old_scans_still_read(tmp_path):
    folder = tmp_path / "old"
    old = [make_record(seed, patient_ref=PATIENT, body_site="face") for seed in (1, 2)]
    _v1_database(folder, old)
    assert "lesion" not in _columns(folder)
    # Read-only (e.g. a full disk): nothing is migrated, and old scans still read.
    with SqliteScanStore(folder, KEY, read_only=True) as store:
        assert [r.scan_id for r in store.history()] == [old[1].scan_id, old[0].scan_id]
    assert _version(folder) == 1 and "lesion" not in _columns(folder)
    with SqliteScanStore(folder, KEY) as store:
        back = store.get(old[0].scan_id)
        assert back.patient_ref == PATIENT and back.lesion is None and back.bundle_label is None
        new = make_record(3, patient_ref=PATIENT, body_site="face", lesion="1")
        store.save(new)
        assert store.verify().ok
    assert _version(folder) == 2
    assert {"body_side", "lesion", "mm_per_px", "bundle_label", "damaged"} <= _columns(folder)
    with SqliteScanStore(folder, KEY) as store:  # a second open changes nothing
        assert store.get(new.scan_id).lesion == "1"
        assert len(store) == 3


def test_changing_a_lesion_label_or_the_seal_format_breaks_the_seal(tmp_path):
    record = make_record(1, patient_ref=PATIENT, body_site="face", lesion="1")
    with SqliteScanStore(tmp_path / "d", KEY) as store:
        store.save(record)
    conn = sqlite3.connect(tmp_path / "d" / DB_NAME)
    conn.execute("DROP TRIGGER scans_no_update")  # what someone with the SD card could do
    conn.execute("UPDATE scans SET lesion = '2'")
    conn.commit()
    with SqliteScanStore(tmp_path / "d", KEY) as store, pytest.raises(TamperError):
        store.get(record.scan_id)
    conn.execute("UPDATE scans SET lesion = '1', seal_format = 1")  # pretend it is an old row
    conn.commit()
    conn.close()
    with SqliteScanStore(tmp_path / "d", KEY) as store, pytest.raises(TamperError):
        store.get(record.scan_id)


@pytest.mark.parametrize(
    ("field", "value"),
    [("body_side", "middle"), ("lesion", "my mole"), ("mm_per_px", -1.0), ("mm_per_px", 1e9)],
)
def test_bad_lesion_fields_are_refused(tmp_path, field, value):
    with pytest.raises(InvalidRecordError):
        MemoryScanStore().save(make_record(1, **{field: value}))


def test_assigning_a_patient_saves_a_correction_and_history_shows_it_once(tmp_path):
    orphan = make_record(1, body_site="back", lesion="1")
    with SqliteScanStore(tmp_path / "d", KEY) as store:
        store.save(orphan)
        fixed = assign_patient(store, orphan.scan_id, PATIENT, now="2024-02-01T00:00:00+00:00")
        assert fixed.corrects == orphan.scan_id and fixed.patient_ref == PATIENT
        assert fixed.created_at == orphan.created_at  # the photo's time, for follow-up
        assert fixed.extra["patient_assigned_at"] == "2024-02-01T00:00:00+00:00"
        assert [r.scan_id for r in store.history(patient_ref=PATIENT)] == [fixed.scan_id]
        everything = store.history()
        assert len(everything) == 2  # the original stays, as the audit trail
        assert [r.scan_id for r in current_records(everything)] == [fixed.scan_id]
        assert store.get(orphan.scan_id).patient_ref is None
        with pytest.raises(PatientAlreadySetError, match="corrected already"):
            assign_patient(store, orphan.scan_id, PATIENT)
        with pytest.raises(PatientAlreadySetError, match="has a patient already"):
            assign_patient(store, fixed.scan_id, "SKS-000143-2222")
        with pytest.raises(PatientRefError):
            assign_patient(store, orphan.scan_id, "Jane Doe")


def test_records_assign_cli(tmp_path, capsys):
    data = tmp_path / "d"
    orphan = make_record(1, body_site="back")
    with SqliteScanStore(data) as store:
        store.save(orphan)
    args = ["records", "assign", orphan.scan_id[:8], "--patient", PATIENT, "--data-dir", str(data)]
    assert main(args) == 0
    assert f"now belongs to patient {PATIENT}" in capsys.readouterr().out
    assert main(args) == 2
    assert "corrected already" in capsys.readouterr().err
    assert main(["records", "list", "--data-dir", str(data), "--patient", PATIENT]) == 0
    out = capsys.readouterr().out
    assert f"corrects {orphan.scan_id[:8]}" in out and "1 record(s)" in out


def test_records_list_names_the_lesion_and_the_bundle(tmp_path, capsys):
    data = tmp_path / "d"
    with SqliteScanStore(data) as store:
        store.save(
            make_record(
                1,
                body_site="forearm",
                body_side="right",
                lesion="upper",
                bundle_label="adapted for clinic-north, 2026-12-07",
            )
        )
    assert main(["records", "list", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert "right forearm, lesion upper" in out
    assert "bundle test-bundle (adapted for clinic-north, 2026-12-07)" in out
