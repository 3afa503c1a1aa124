"""The clinic app's casework pages through Flask's test client, on the real store.

Confirmed diagnoses on the scan page, sites, the Confirmed cases page, the worklist
and the CSV downloads.
"""

from __future__ import annotations

import csv
import io
import re

import pytest

pytest.importorskip("flask")
pytest.importorskip("flask_wtf")
pytest.importorskip("argon2")

from clinic_support import csrf, login, make_app, make_keys

from device.records.testing import make_record

SCANNER = "scanner-n1"


@pytest.fixture(scope="module")
def analysis():
    from clinic.analysis import AnalysisService

    return AnalysisService(max_pixels=2_000_000)


@pytest.fixture
def app(tmp_path, analysis):
    private, _ = make_keys(tmp_path / "keys")
    flask_app = make_app(tmp_path / "clinic", private, analysis)
    yield flask_app
    flask_app.extensions["skinscan_clinic"].store.close()


@pytest.fixture
def store(app):
    return app.extensions["skinscan_clinic"].store


@pytest.fixture
def client(app):
    client = app.test_client()
    assert login(client).status_code == 302
    return client


def _scan(store, seed: int, **fields) -> str:
    record = make_record(seed, size=32, device_id=fields.pop("device_id", SCANNER), **fields)
    store.add_scan(record)
    return record.scan_id


def _post(client, path: str, form_page: str, **form) -> object:
    return client.post(path, data={"csrf_token": csrf(client, form_page), **form})


def _confirm(client, scan_id: str, **form):
    return _post(client, f"/scans/{scan_id}/confirm", f"/scans/{scan_id}", **form)


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_a_confirmed_diagnosis_is_recorded_and_a_later_one_supersedes_it_visibly(client, store):
    scan_id = _scan(store, 1)
    page = client.get(f"/scans/{scan_id}").get_data(as_text=True)
    assert "No confirmed diagnosis yet." in page and "Record confirmed diagnosis" in page
    assert "Other / unknown" in page and "Unchanged at follow-up" in page
    response = _confirm(client, scan_id, diagnosis="nv", basis="consensus", note="looked benign")
    assert response.status_code == 302 and response.headers["Location"].endswith("#confirmed")
    _confirm(client, scan_id, diagnosis="mel", basis="histopathology", note="H-2026/77")
    page = client.get(f"/scans/{scan_id}").get_data(as_text=True)
    section = page[page.index('id="confirmed"') :]
    assert re.search(r'<li class="superseded">\s*<del><strong>Melanocytic nevus', section)
    assert "<del>looked benign</del>" in section and "superseded" in section
    assert re.search(r'<li class="current">\s*<strong>Melanoma \(mel\)</strong>', section)
    assert "Confirmed: <strong>Melanoma (mel)</strong>" in section
    assert "by alice" in section
    assert [c.diagnosis for c in store.confirmations(scan_id)] == ["nv", "mel"]


@pytest.mark.parametrize(
    ("form", "status", "message"),
    [
        ({"diagnosis": "melanoma", "basis": "histopathology"}, 400, "from the list"),
        ({"diagnosis": "mel", "basis": ""}, 400, "what confirmed it"),
        ({"diagnosis": "mel", "basis": "histopathology", "note": "x" * 2001}, 400, "2000"),
    ],
)
def test_a_bad_confirmation_gets_a_message_and_nothing_is_saved(
    client, store, form, status, message
):
    scan_id = _scan(store, 2)
    response = _confirm(client, scan_id, **form)
    assert response.status_code == status
    assert message in response.get_data(as_text=True)
    assert store.confirmations() == []


def test_a_confirmation_needs_the_form_token_and_an_existing_scan(client, store):
    scan_id = _scan(store, 3)
    forged = client.post(
        f"/scans/{scan_id}/confirm", data={"diagnosis": "mel", "basis": "consensus"}
    )
    assert forged.status_code == 400
    missing = _post(
        client,
        "/scans/00000000-0000-4000-8000-000000000000/confirm",
        f"/scans/{scan_id}",
        diagnosis="mel",
        basis="consensus",
    )
    assert missing.status_code == 404
    assert store.confirmations() == []


def test_sites_are_made_and_scanners_assigned_on_the_sites_page(client, store):
    _scan(store, 4)
    _scan(store, 5, device_id="scanner-s1")
    page = client.get("/sites").get_data(as_text=True)
    assert SCANNER in page and "scanner-s1" in page and "No site yet." in page
    made = _post(client, "/sites", "/sites", action="create", name="clinic-north")
    assert made.status_code == 302
    refused = _post(client, "/sites", "/sites", action="create", name="North Clinic!")
    assert refused.status_code == 400 and "Not saved: site name" in refused.get_data(as_text=True)
    assigned = _post(
        client, "/sites", "/sites", action="assign", scanner=SCANNER, site="clinic-north"
    )
    assert assigned.status_code == 302
    unknown = _post(
        client, "/sites", "/sites", action="assign", scanner="nobody", site="clinic-north"
    )
    assert unknown.status_code == 400
    assert [(s.name, s.scanners) for s in store.sites()] == [("clinic-north", (SCANNER,))]
    page = client.get("/sites").get_data(as_text=True)
    assert '<option value="clinic-north" selected>' in page


def test_the_confirmed_cases_page_counts_and_says_what_adapt_needs(client, store):
    store.add_site("clinic-north", "alice")
    store.assign_scanner(SCANNER, "clinic-north", "alice")
    for seed, dx in enumerate(["mel"] * 6 + ["nv"] * 12 + ["other"] * 2):
        store.add_confirmation(_scan(store, 100 + seed), "alice", dx, "histopathology")
    page = client.get("/confirmed").get_data(as_text=True)
    text = _text(page)
    assert "needs 4 more malignant cases (akiec, bcc or mel)" in text
    assert "needs 12 more cases in all" in text
    command = re.search(r"skinscan adapt (.*?)\n\.venv", page, re.S).group(1)
    assert command.split() == [
        "--data-dir",
        str(store.data_dir.resolve()),
        "\\",
        "--site",
        "clinic-north",
        "--out",
        "adapted-clinic-north",
    ]
    assert "skinscan bundle sign adapted-clinic-north --key signing.key" in text
    assert "Verification bias" in text
    row = re.search(r"<td class=\"name\">clinic-north</td>(.*?)</tr>", page, re.S).group(1)
    cells = re.findall(r'<td class="num[^"]*">(?:<strong>)?(\d+)', row)
    # akiec bcc bkl df mel nv vasc | other | malignant usable | histo consensus follow-up
    assert cells == ["0", "0", "0", "0", "6", "12", "0", "2", "6", "18", "20", "0", "0"]


def test_the_worklist_is_linked_from_every_page_and_lists_unreviewed_referrals(client, store):
    waiting = _scan(store, 10, risk_tier="refer")
    older = _scan(store, 5, risk_tier="uncertain")
    _scan(store, 1, risk_tier="monitor")
    page = client.get("/patients").get_data(as_text=True)
    assert re.search(r'href="/worklist">Worklist <span class="count">2</span>', page)
    page = client.get("/worklist").get_data(as_text=True)
    assert page.index(older[:8]) < page.index(waiting[:8])
    assert 'href="/export/reviews.csv"' in page
    _post(client, f"/scans/{older}/review", f"/scans/{older}", verdict="agree", diagnosis="nv")
    page = client.get("/worklist").get_data(as_text=True)
    assert older[:8] not in page and waiting[:8] in page
    store.add_review(waiting, "alice", "disagree", None, "")
    page = client.get("/worklist").get_data(as_text=True)
    assert "No referred or uncertain scan is waiting for a review." in page
    assert 'class="count"' not in page


def test_csv_downloads_need_a_login_and_are_attachments(app, client, store):
    scan_id = _scan(store, 20)
    store.add_review(scan_id, "alice", "agree", "mel", "=1+1")
    store.add_confirmation(scan_id, "alice", "mel", "histopathology", "@cmd")
    for path, column in (("/export/reviews.csv", "verdict"), ("/export/confirmed.csv", "basis")):
        anonymous = app.test_client().get(path)
        assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
        response = client.get(path)
        assert response.status_code == 200 and response.mimetype == "text/csv"
        assert response.headers["Content-Disposition"].startswith("attachment; filename=")
        assert response.headers["Cache-Control"] == "no-store"
        (row,) = list(csv.DictReader(io.StringIO(response.get_data(as_text=True), newline="")))
        assert row["scan_id"] == scan_id and row[column]
        assert row["note"] in ("'=1+1", "'@cmd")


def test_a_store_failure_still_gets_its_error_page(client, store, monkeypatch):
    from device.errors import StorageError

    def broken(*_args, **_kwargs):
        raise StorageError("the scan database is locked")

    monkeypatch.setattr(store.scans, "summaries", broken)
    response = client.get("/worklist")
    assert response.status_code == 503
    assert "the scan database is locked" in response.get_data(as_text=True)
