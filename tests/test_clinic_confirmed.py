"""Confirmed diagnoses, sites, confirmed-case counts, the worklist and the CSV export (store level).

Everything runs on the real clinic store (SQLite ``clinic.db`` beside the device's
encrypted scan store) in a temporary folder.
"""

from __future__ import annotations

import csv
import io
import sqlite3

import cv2
import numpy as np
import pytest

from clinic.confirmed_cases import MIN_CASES, MIN_MALIGNANT, count_cases, load_site_cases
from clinic.csv_export import CONFIRMATION_COLUMNS, REVIEW_COLUMNS, confirmations_csv, reviews_csv
from clinic.schema import MIGRATIONS, SCHEMA_VERSION
from clinic.store import CLINIC_DB, ClinicStore, EntryError
from clinic.views_cases import worklist
from device.errors import DatasetError, StorageError
from device.records.testing import make_record

NORTH = ("scanner-n1", "scanner-n2")
SOUTH = "scanner-s1"


@pytest.fixture
def store(tmp_path):
    with ClinicStore(tmp_path / "clinic") as opened:
        yield opened


def _add(store: ClinicStore, seed: int, device_id: str = NORTH[0], **fields) -> str:
    record = make_record(seed, size=24, device_id=device_id, **fields)
    assert store.add_scan(record)
    return record.scan_id


def _raw(store: ClinicStore) -> sqlite3.Connection:
    return sqlite3.connect(store.data_dir / CLINIC_DB)


# --------------------------------------------------------------------------- confirmations


def test_a_later_confirmation_supersedes_an_earlier_one_which_stays_in_the_history(store):
    scan = _add(store, 1)
    first = store.add_confirmation(scan, "alice", "nv", "consensus", "clinical review")
    second = store.add_confirmation(scan, "bob", "mel", "histopathology", "report H-17/123")
    history = store.confirmations(scan)
    assert [c.diagnosis for c in history] == ["nv", "mel"]
    assert history[0].superseded and history[0].superseded_by == second.seq
    assert not history[1].superseded
    assert history[0].note == "clinical review" and history[1].confirmed_by == "bob"
    assert history[0].confirmed_at <= history[1].confirmed_at
    assert store.current_confirmations() == {scan: history[1]}
    assert first.seq < second.seq


def test_confirmations_are_append_only_in_the_database(store):
    scan = _add(store, 2)
    store.add_confirmation(scan, "alice", "bcc", "histopathology")
    conn = _raw(store)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE confirmations SET diagnosis = 'nv'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM confirmations")
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            conn.execute(
                "INSERT INTO confirmations (scan_id, confirmed_by, confirmed_at, diagnosis, "
                "basis) VALUES (?, 'x', 'now', 'melanoma', 'histopathology')",
                (scan,),
            )
    finally:
        conn.close()
    assert [c.diagnosis for c in store.confirmations(scan)] == ["bcc"]


@pytest.mark.parametrize(
    ("diagnosis", "basis", "message"),
    [("melanoma", "histopathology", "unknown diagnosis"), ("mel", "biopsy", "unknown basis")],
)
def test_a_bad_confirmation_is_refused_and_nothing_saved(store, diagnosis, basis, message):
    scan = _add(store, 3)
    with pytest.raises(EntryError, match=message):
        store.add_confirmation(scan, "alice", diagnosis, basis)
    with pytest.raises(EntryError, match="no scan"):
        store.add_confirmation("00000000-0000-4000-8000-000000000000", "alice", "mel", "consensus")
    assert store.confirmations() == []


def test_confirmation_notes_are_encrypted_at_rest(store):
    scan = _add(store, 4)
    store.add_confirmation(scan, "alice", "df", "consensus", "secret-pathology-ref-4711")
    conn = _raw(store)
    try:
        conn.execute("PRAGMA wal_checkpoint(FULL)")
    finally:
        conn.close()
    on_disk = b"".join(p.read_bytes() for p in store.data_dir.glob(CLINIC_DB + "*"))
    assert b"secret-pathology-ref-4711" not in on_disk
    assert store.confirmations(scan)[0].note == "secret-pathology-ref-4711"


# --------------------------------------------------------------------------- schema versions


def test_a_database_from_before_versioning_is_migrated_keeping_its_rows(tmp_path):
    folder = tmp_path / "clinic"
    with ClinicStore(folder) as store:
        scans = [_add(store, seed, device_id=f"dev-{seed}") for seed in (11, 12)]
    # The clinic.db an earlier SkinScan wrote: the version-1 tables, user_version 0.
    for path in folder.glob(CLINIC_DB + "*"):
        path.unlink()
    conn = sqlite3.connect(folder / CLINIC_DB)
    for statement in MIGRATIONS[1]:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO reviews (scan_id, reviewer, created_at, verdict) "
        "VALUES (?, 'alice', '2025-01-01T00:00:00+00:00', 'agree')",
        (scans[0],),
    )
    conn.execute(
        "INSERT INTO imports (imported_at, imported_by, export_id, device_id, added, "
        "already_present) VALUES ('2025-01-01', 'alice', 'e1', 'dev-11', 1, 0)"
    )
    conn.commit()
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    conn.close()

    with ClinicStore(folder) as store:
        assert [r.verdict for r in store.reviews(scans[0])] == ["agree"]
        (entry,) = store.imports()
        assert entry.export_id == "e1" and entry.kind == "export"
        # Each scan's scanner is read once from the encrypted record and remembered.
        assert store.scanner_of_scans() == {scans[0]: "dev-11", scans[1]: "dev-12"}
        store.add_confirmation(scans[1], "bob", "mel", "histopathology")
    conn = sqlite3.connect(folder / CLINIC_DB)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
        assert conn.execute("SELECT COUNT(*) FROM scan_scanners").fetchone()[0] == 2
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM reviews")
    finally:
        conn.close()
    with ClinicStore(folder) as store:  # opening again migrates nothing and loses nothing
        assert len(store.confirmations()) == 1


def test_a_database_from_a_newer_skinscan_is_refused_and_left_alone(tmp_path):
    folder = tmp_path / "clinic"
    ClinicStore(folder).close()
    conn = sqlite3.connect(folder / CLINIC_DB)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match="newer SkinScan"):
        ClinicStore(folder)
    conn = sqlite3.connect(folder / CLINIC_DB)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    finally:
        conn.close()


# --------------------------------------------------------------------------- sites


def test_sites_group_scanners_and_a_scanner_is_in_one_site_at_most(store):
    store.add_site("Clinic-North ", "alice")
    store.add_site("clinic-south", "alice")
    with pytest.raises(EntryError, match="exists already"):
        store.add_site("clinic-north", "bob")
    for bad in ("", "-north", "north clinic", "a" * 41, "nörth", "x/../y"):
        with pytest.raises(EntryError, match="refused"):
            store.add_site(bad, "alice")
    store.assign_scanner(NORTH[0], "clinic-north", "alice")
    store.assign_scanner(NORTH[1], "clinic-south", "alice")
    store.assign_scanner(NORTH[1], "clinic-north", "alice")  # moved, not copied
    with pytest.raises(EntryError, match="no site"):
        store.assign_scanner(SOUTH, "clinic-west", "alice")
    sites = {s.name: s.scanners for s in store.sites()}
    assert sites == {"clinic-north": NORTH, "clinic-south": ()}
    store.assign_scanner(NORTH[0], None, "alice")
    assert store.site_of_scanners() == {NORTH[1]: "clinic-north"}


# --------------------------------------------------------------------------- counts


def _confirm_many(store, device_id, diagnoses, start, basis="histopathology"):
    ids = []
    for offset, dx in enumerate(diagnoses):
        scan = _add(store, start + offset, device_id=device_id)
        store.add_confirmation(scan, "alice", dx, basis)
        ids.append(scan)
    return ids


def test_counts_say_what_adaptation_still_needs(store):
    store.add_site("clinic-north", "alice")
    for device_id in NORTH:
        store.assign_scanner(device_id, "clinic-north", "alice")
    _confirm_many(store, NORTH[0], ["mel"] * 4 + ["nv"] * 10, 100)
    _confirm_many(store, NORTH[1], ["bcc"] * 2 + ["nv"] * 4 + ["other"] * 3, 200, "consensus")
    south = _confirm_many(store, SOUTH, ["mel"] * 3, 300)
    # A superseded diagnosis is counted once, as its newest entry says.
    store.add_confirmation(south[0], "bob", "nv", "follow-up")
    overview = count_cases(store)
    (north,) = overview.sites
    assert (north.malignant, north.usable, north.other) == (6, 20, 3)
    assert north.per_class["mel"] == 4 and north.per_class["nv"] == 14
    assert north.per_basis == {"histopathology": 14, "consensus": 9, "follow-up": 0}
    assert north.needs() == [
        f"needs {MIN_MALIGNANT - 6} more malignant cases (akiec, bcc or mel)",
        f"needs {MIN_CASES - 20} more cases in all",
    ]
    assert not north.ready
    scanners = {c.name: c for c in overview.scanners}
    assert set(scanners) == {*NORTH, SOUTH}
    assert scanners[SOUTH].per_class["mel"] == 2 and scanners[SOUTH].per_class["nv"] == 1
    assert scanners[SOUTH].per_basis["follow-up"] == 1
    assert overview.site_of == {NORTH[0]: "clinic-north", NORTH[1]: "clinic-north"}
    assert overview.total.usable == 23 and overview.total.other == 3

    _confirm_many(store, NORTH[0], ["akiec"] * 4 + ["bkl"] * 6, 400)
    (north,) = count_cases(store).sites
    assert (north.malignant, north.usable) == (10, 30)
    assert north.ready and north.needs() == []


def test_one_class_only_is_not_enough(store):
    _confirm_many(store, SOUTH, ["mel"] * 30, 500)
    (south,) = count_cases(store).scanners
    assert south.needs() == ["needs cases of more than one class"]


# --------------------------------------------------------------------------- loading cases


def test_load_site_cases_gives_the_sites_current_diagnoses_with_their_photos(store, tmp_path):
    store.add_site("clinic-north", "alice")
    store.assign_scanner(NORTH[0], "clinic-north", "alice")
    mel, nv, unknown = _confirm_many(store, NORTH[0], ["nv", "nv", "other"], 600)
    store.add_confirmation(mel, "bob", "mel", "histopathology")  # supersedes nv
    _confirm_many(store, SOUTH, ["bcc"], 700)  # another site's scanner: left out
    _add(store, 800, device_id=NORTH[0])  # not confirmed: left out
    cases = load_site_cases(store.data_dir, "clinic-north")
    assert [c.case_id for c in cases] == [nv, unknown, mel]  # by time of confirmation
    by_id = {c.case_id: c for c in cases}
    assert by_id[mel].dx == "mel" and by_id[mel].basis == "histopathology"
    assert by_id[unknown].dx is None and by_id[nv].dx == "nv"
    assert {c.scanner_id for c in cases} == {NORTH[0]}
    assert all(c.confirmed_at for c in cases)
    photo = cv2.imdecode(np.frombuffer(by_id[mel].image, np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(photo[..., ::-1], store.get_scan(mel).image)


def test_load_site_cases_refuses_an_unknown_or_empty_site_and_a_missing_folder(store, tmp_path):
    store.add_site("clinic-south", "alice")
    with pytest.raises(DatasetError, match=r"no site 'clinic-west'.*clinic-south"):
        load_site_cases(store.data_dir, "clinic-west")
    with pytest.raises(DatasetError, match="no scanners"):
        load_site_cases(store.data_dir, "clinic-south")
    empty = tmp_path / "nothing-here"
    with pytest.raises(StorageError, match="not a clinic data folder"):
        load_site_cases(empty, "clinic-south")
    assert not empty.exists()  # no new store made by a typo


# --------------------------------------------------------------------------- worklist


def test_the_worklist_has_unreviewed_referrals_and_uncertain_scans_oldest_first(store):
    late_refer = _add(store, 50, risk_tier="refer")
    early_uncertain = _add(store, 10, risk_tier="uncertain", device_id=SOUTH)
    _add(store, 5, risk_tier="monitor")
    reviewed = _add(store, 1, risk_tier="refer")
    store.add_review(reviewed, "alice", "agree", "mel", "")
    items = worklist(store)
    assert [i.scan.scan_id for i in items] == [early_uncertain, late_refer]
    assert items[0].scanner == SOUTH and items[0].site is None
    assert all(i.days > 300 for i in items)  # make_record dates them in 2024
    store.add_review(late_refer, "bob", "disagree", "nv", "")
    assert [i.scan.scan_id for i in worklist(store)] == [early_uncertain]


# --------------------------------------------------------------------------- CSV


def _rows(text: str) -> list[dict[str, str]]:
    assert text.endswith("\r\n")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_csv_escapes_and_guards_against_formulas(store):
    scan = _add(store, 20, device_id="=cmd|' /C calc'!A0")
    note = 'biopsy, "urgent"\nsecond line'
    store.add_review(scan, "alice", "agree", "mel", note)
    store.add_review(scan, "bob", "disagree", None, '=HYPERLINK("http://x","y")')
    store.add_review(scan, "carol", "agree", None, "+1; -2; @SUM(A1)")
    rows = _rows(reviews_csv(store))
    assert list(rows[0]) == list(REVIEW_COLUMNS)
    assert [r["reviewer"] for r in rows] == ["alice", "bob", "carol"]
    assert rows[0]["note"] == note  # commas, quotes and line breaks survive
    assert rows[1]["note"] == '\'=HYPERLINK("http://x","y")'
    assert rows[2]["note"].startswith("'+1")
    assert rows[0]["scanner"] == "'=cmd|' /C calc'!A0"
    assert rows[0]["scan_id"] == scan and rows[0]["diagnosis"] == "mel"
    assert float(rows[0]["p_malignant"]) == pytest.approx(store.get_scan(scan).p_malignant, 1e-4)


def test_confirmed_csv_lists_every_entry_and_says_which_are_superseded(store):
    store.add_site("clinic-north", "alice")
    store.assign_scanner(NORTH[0], "clinic-north", "alice")
    scan = _add(store, 30)
    first = store.add_confirmation(scan, "alice", "nv", "consensus", "-looks benign")
    second = store.add_confirmation(scan, "bob", "mel", "histopathology")
    rows = _rows(confirmations_csv(store))
    assert list(rows[0]) == list(CONFIRMATION_COLUMNS)
    assert [(r["diagnosis"], r["status"]) for r in rows] == [
        ("nv", "superseded"),
        ("mel", "current"),
    ]
    assert rows[0]["superseded_by_entry"] == str(second.seq)
    assert rows[0]["entry"] == str(first.seq) and rows[1]["superseded_by_entry"] == ""
    assert rows[0]["note"] == "'-looks benign"
    assert {r["site"] for r in rows} == {"clinic-north"}


def test_malignant_cases_alone_are_not_enough(store):
    _confirm_many(store, SOUTH, ["mel"] * 15 + ["bcc"] * 15, 900)
    (south,) = count_cases(store).scanners
    assert south.needs() == ["needs benign cases too (bkl, df, nv or vasc)"]


def test_skinscan_adapt_reads_a_sites_cases_from_the_clinic_folder(store, tmp_path, capsys):
    from device.cli import main
    from device.phantoms import make_phantom

    store.add_site("clinic-north", "alice")
    store.assign_scanner(NORTH[0], "clinic-north", "alice")
    for seed, dx in enumerate(["mel", "nv", "nv", "bkl", "other"]):
        photo = make_phantom(seed, size=(352, 352)).image
        scan = _add(store, 1000 + seed, device_id=NORTH[0], image=photo, heatmap=None)
        store.add_confirmation(scan, "alice", dx, "histopathology")
    out = tmp_path / "adapted"
    args = ["adapt", "--data-dir", str(store.data_dir), "--site", "clinic-north"]
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "too few confirmed cases" in err and "4 usable" in err, err
    assert not out.exists()
