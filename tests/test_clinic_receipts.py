"""The clinic app's receipts: import a scanner's export, download the receipt, ``records ack``.

End to end with a real device store and the real ``skinscan`` entry point on both
sides: the device exports (sealing a secret proof), the clinic imports through the
web page and offers the receipt, the device acknowledges it and may then archive
the acknowledged scans off the device. A tampered receipt is refused.
"""

from __future__ import annotations

import json
import re
import sqlite3

import pytest

pytest.importorskip("flask")
pytest.importorskip("flask_wtf")
pytest.importorskip("argon2")

from clinic_support import PATIENT, import_files, login, make_app, make_export, make_keys

from clinic.store import CLINIC_DB
from device.cli import main
from device.records.archive import acknowledged_ids
from device.records.paths import IMAGES_DIR
from device.records.store import SqliteScanStore
from device.records.testing import make_record

ACK_SENTENCE = "Copy this file to the scanner that made the export and run"
RECEIPT_LINK = re.compile(r'href="(/import/[^"/]+/receipt)"')


@pytest.fixture(scope="module")
def analysis():
    from clinic.analysis import AnalysisService

    return AnalysisService(max_pixels=2_000_000)


@pytest.fixture
def keys(tmp_path):
    return make_keys(tmp_path / "keys")


@pytest.fixture
def app(tmp_path, analysis, keys):
    flask_app = make_app(tmp_path / "clinic", keys[0], analysis)
    yield flask_app
    flask_app.extensions["skinscan_clinic"].store.close()


@pytest.fixture
def store(app):
    return app.extensions["skinscan_clinic"].store


@pytest.fixture
def logged_in(app):
    client = app.test_client()
    assert login(client).status_code == 302
    return client


@pytest.fixture
def device(tmp_path):
    """A scanner's data folder with three saved scans."""
    folder = tmp_path / "device"
    with SqliteScanStore(folder, min_free_bytes=0) as scanner:
        ids = [
            scanner.save(make_record(seed, size=48, patient_ref=PATIENT, body_site="back"))
            for seed in (60, 3000, 6000)
        ]
    return folder, ids


def _export(device_dir, public_key, usb) -> list:
    args = ["records", "export", "--data-dir", str(device_dir), "--to", str(usb)]
    assert main([*args, "--clinic-key", str(public_key)]) == 0
    return sorted(usb.glob("*.sealed"))


def _import(client, parts):
    response = client.get("/import")  # a fresh page, as a user would have
    assert response.status_code == 200
    response = import_files(client, [(p.name, p.read_bytes()) for p in parts])
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data(as_text=True)


def _download(client, page: str) -> tuple[str, bytes]:
    found = RECEIPT_LINK.search(page)
    assert found, "no receipt download on the page"
    response = client.get(found.group(1))
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment")
    name = re.search(r'filename="?([^";]+)', disposition).group(1)
    return name, response.data


def _ack(device_dir, receipt) -> int:
    return main(["records", "ack", "--data-dir", str(device_dir), str(receipt)])


def test_an_import_offers_a_receipt_that_the_scanner_accepts(
    tmp_path, logged_in, keys, device, capsys
):
    device_dir, ids = device
    parts = _export(device_dir, keys[1], tmp_path / "usb")
    page = _import(logged_in, parts)
    assert "3 new scan(s)" in page
    assert ACK_SENTENCE in page and "skinscan records ack" in page

    name, body = _download(logged_in, page)
    assert name.endswith(".json") and name in page  # the sentence names the file to copy
    receipt = json.loads(body)
    assert sorted(receipt["scan_ids"]) == sorted(ids)
    usb_receipt = tmp_path / "usb" / name
    usb_receipt.write_bytes(body)
    capsys.readouterr()

    assert _ack(device_dir, usb_receipt) == 0
    assert "the clinic has 3 scan(s)" in capsys.readouterr().out
    with SqliteScanStore(device_dir) as scanner:
        assert acknowledged_ids(scanner) == set(ids)
    # Only now may the scans leave the device.
    archive = ["records", "archive", "--data-dir", str(device_dir), "--to", str(tmp_path / "arc")]
    assert main([*archive, "--clinic-key", str(keys[1])]) == 0
    assert "archived and removed 3 scan(s)" in capsys.readouterr().out
    with SqliteScanStore(device_dir) as scanner:
        assert len(scanner) == 0
    assert list((device_dir / IMAGES_DIR).iterdir()) == []


def test_a_tampered_receipt_is_refused_by_the_scanner(tmp_path, logged_in, keys, device, capsys):
    device_dir, _ = device
    parts = _export(device_dir, keys[1], tmp_path / "usb")
    _, body = _download(logged_in, _import(logged_in, parts))
    receipt = json.loads(body)
    capsys.readouterr()
    forgeries = {
        "proof": ({**receipt, "proof": "A" * 44}, "proof does not match"),
        "export": ({**receipt, "export_id": receipt["export_id"][::-1]}, "export log"),
        "device": ({**receipt, "device_id": "another-scanner"}, "not this one"),
        "format": ({**receipt, "format": "skinscan-receipt-0"}, "not a SkinScan receipt"),
    }
    for label, (forged, message) in forgeries.items():
        path = tmp_path / f"forged-{label}.json"
        path.write_text(json.dumps(forged))
        assert _ack(device_dir, path) == 2, label
        assert message in capsys.readouterr().err, label
    flipped = bytearray(body)
    flipped[body.index(b'"proof"') + 12] ^= 0x01
    (tmp_path / "flipped.json").write_bytes(bytes(flipped))
    assert _ack(device_dir, tmp_path / "flipped.json") == 2
    with SqliteScanStore(device_dir) as scanner:
        assert acknowledged_ids(scanner) == set()
    archive = ["records", "archive", "--data-dir", str(device_dir), "--to", str(tmp_path / "arc")]
    assert main([*archive, "--clinic-key", str(keys[1])]) == 0
    assert "archived and removed 0 scan(s)" in capsys.readouterr().out


def test_the_receipt_can_be_downloaded_again_from_the_import_log(
    tmp_path, logged_in, keys, device, store
):
    device_dir, _ = device
    parts = _export(device_dir, keys[1], tmp_path / "usb")
    _, first = _download(logged_in, _import(logged_in, parts))
    log_page = logged_in.get("/import").get_data(as_text=True)
    assert "Recent imports" in log_page and ACK_SENTENCE not in log_page
    _, again = _download(logged_in, log_page)
    assert json.loads(again)["proof"] == json.loads(first)["proof"]
    # Importing the same export again adds nothing but still gives its receipt.
    page = _import(logged_in, parts)
    assert "0 new scan(s)" in page and ACK_SENTENCE in page
    assert store.scan_count() == 3
    assert logged_in.get("/import/00000000-0000-4000-8000-000000000000/receipt").status_code == 404


def test_the_receipt_is_kept_encrypted_in_the_clinic_database(
    tmp_path, logged_in, keys, device, store
):
    device_dir, _ = device
    parts = _export(device_dir, keys[1], tmp_path / "usb")
    _, body = _download(logged_in, _import(logged_in, parts))
    proof = json.loads(body)["proof"]
    conn = sqlite3.connect(store.data_dir / CLINIC_DB)
    try:
        conn.execute("PRAGMA wal_checkpoint(FULL)")
    finally:
        conn.close()
    on_disk = b"".join(p.read_bytes() for p in store.data_dir.glob(CLINIC_DB + "*"))
    assert proof.encode() not in on_disk


def test_an_export_without_a_proof_is_imported_with_no_receipt_offered(
    tmp_path, logged_in, keys, store
):
    (part,) = make_export(tmp_path / "usb", keys[1])  # an older scanner: no proof sealed in
    page = _import(logged_in, [part])
    assert "3 new scan(s)" in page
    assert RECEIPT_LINK.search(page) is None and ACK_SENTENCE not in page
    assert "No receipt can be made" in page and "older than receipts" in page
    assert "archive file</strong>" not in page
    assert store.scan_count() == 3


def test_a_receipt_download_needs_a_login(tmp_path, app, logged_in, keys, device):
    device_dir, _ = device
    parts = _export(device_dir, keys[1], tmp_path / "usb")
    url = RECEIPT_LINK.search(_import(logged_in, parts)).group(1)
    anonymous = app.test_client().get(url)
    assert anonymous.status_code == 302 and anonymous.headers["Location"].startswith("/login")
    assert b"proof" not in anonymous.data


def _archive_after_ack(tmp_path, logged_in, keys, device_dir) -> list:
    """Export, import, ack the receipt on the scanner, archive: the archive file(s)."""
    parts = _export(device_dir, keys[1], tmp_path / "usb")
    name, body = _download(logged_in, _import(logged_in, parts))
    (tmp_path / "usb" / name).write_bytes(body)
    assert _ack(device_dir, tmp_path / "usb" / name) == 0
    archive = ["records", "archive", "--data-dir", str(device_dir), "--to", str(tmp_path / "arc")]
    assert main([*archive, "--clinic-key", str(keys[1])]) == 0
    files = sorted((tmp_path / "arc").glob("*.sealed"))
    assert files and all(f.name.startswith("skinscan-archive-") for f in files)
    return files


def test_an_archive_file_is_imported_and_called_what_it_is(
    tmp_path, logged_in, keys, device, store
):
    device_dir, _ = device
    files = _archive_after_ack(tmp_path, logged_in, keys, device_dir)
    page = _import(logged_in, files)
    assert "0 new scan(s)" in page and "3 already in the store" in page
    assert "archive file</strong>" in page and "needs no receipt" in page
    assert "Every scan in it was in this store already" in page
    assert "older SkinScan" not in page and "stay on the scanner" not in page
    assert ACK_SENTENCE not in page  # the link in the log is the earlier export's
    assert store.imports()[0].kind == "archive"
    assert "archive file: none needed" in logged_in.get("/import").get_data(as_text=True)


def test_a_renamed_archive_file_is_known_by_its_receipted_scans(
    tmp_path, logged_in, keys, device, store
):
    device_dir, _ = device
    (archived,) = _archive_after_ack(tmp_path, logged_in, keys, device_dir)
    page = _import_named(logged_in, "backup-tuesday.sealed", archived.read_bytes())
    assert "archive file</strong>" in page


def test_an_archive_file_brings_scans_into_a_store_that_lost_them(
    tmp_path, analysis, logged_in, keys, device
):
    device_dir, _ = device
    files = _archive_after_ack(tmp_path, logged_in, keys, device_dir)
    # Another clinic folder (a restored backup, say) opened with the same clinic key.
    other = make_app(tmp_path / "clinic-restored", keys[0], analysis)
    try:
        client = other.test_client()
        assert login(client).status_code == 302
        page = _import(client, files)
        assert "3 new scan(s)" in page and "archive file</strong>" in page
        assert "3 of its scans were not in this store and now are" in page
    finally:
        other.extensions["skinscan_clinic"].store.close()


def _import_named(client, name: str, data: bytes) -> str:
    response = import_files(client, [(name, data)])
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data(as_text=True)
