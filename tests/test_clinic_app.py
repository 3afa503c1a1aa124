"""The clinic web app through Flask's test client: login, CSRF, import, scan page, uploads."""

from __future__ import annotations

import io
import logging
import re

import numpy as np
import pytest

pytest.importorskip("flask")
pytest.importorskip("flask_wtf")
pytest.importorskip("argon2")

from clinic_support import (
    PASSWORD,
    PATIENT,
    csrf,
    encode,
    import_files,
    jpeg_claiming,
    lesion_jpeg,
    login,
    make_export,
    make_keys,
    png_of_size,
    upload,
)

from clinic.analysis import AnalysisService, UploadError, sniff_upload
from clinic.app import ClinicSettings, create_app
from clinic.auth import LoginThrottle, hash_password
from device.imaging.io import read_image
from device.imaging.quality import assess_quality
from device.records.testing import make_record
from device.runtime.analyzer import Analyzer

NOTICE = "Screening aid — not a diagnosis"


@pytest.fixture(scope="module")
def analysis():
    return AnalysisService(max_pixels=2_000_000)  # the shipped bundle, the device's thresholds


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def keys(tmp_path):
    return make_keys(tmp_path / "keys")


@pytest.fixture(scope="module")
def password_hashes():
    # argon2 is slow on purpose: hash once per module, not per test.
    return {"alice": hash_password(PASSWORD), "bob": hash_password(PASSWORD + "!")}


@pytest.fixture
def app(tmp_path, analysis, keys, clock, password_hashes):
    settings = ClinicSettings(
        data_dir=tmp_path / "clinic",
        clinic_key=keys[0],
        max_upload_bytes=2 * 1024 * 1024,
        throttle=LoginThrottle(max_failures=5, window_s=900, clock=clock),
    )
    flask_app = create_app(settings, analysis=analysis)
    store = flask_app.extensions["skinscan_clinic"].store
    for name, hashed in password_hashes.items():
        store.add_user(name, hashed)
    yield flask_app
    store.close()


@pytest.fixture
def store(app):
    return app.extensions["skinscan_clinic"].store


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def logged_in(client):
    assert login(client).status_code == 302
    return client


@pytest.fixture
def imported(tmp_path, logged_in, keys, store):
    records = [
        make_record(
            i, size=64, patient_ref=PATIENT, body_site="back", extra={"referral_threshold": "0.235"}
        )
        for i in (1, 2)
    ]
    records.append(make_record(3, size=64))  # no patient reference
    (part,) = make_export(tmp_path / "usb", keys[1], records)
    response = import_files(logged_in, [(part.name, part.read_bytes())])
    assert response.status_code == 200, response.get_data(as_text=True)
    return records


def _text(response) -> str:
    return response.get_data(as_text=True)


def _alert(response) -> str:
    found = re.search(r'role="alert">(.*?)</p>', _text(response), re.S)
    return re.sub(r"<[^>]+>|\s+", " ", found.group(1)).strip() if found else ""


# --------------------------------------------------------------------------- login


def test_every_route_needs_a_login(app, client, store):
    record = make_record(4, size=32)
    store.add_scan(record)
    token = csrf(client)  # a valid token, so only the login check can refuse
    values = {"scan_id": record.scan_id, "patient_ref": PATIENT, "export_id": "e" * 8}
    checked = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in ("login", "static"):
            continue
        url = rule.build(values, append_unknown=False)[1]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            data = {"csrf_token": token} if method == "POST" else None
            response = client.open(url, method=method, data=data)
            assert response.status_code == 302, (method, url)
            assert response.headers["Location"].startswith("/login"), (method, url)
            assert b"PNG" not in response.data[:8]
            checked.append((method, rule.rule))
    assert ("GET", "/scans/<scan_id>/photo.png") in checked
    assert ("POST", "/upload") in checked and ("POST", "/import") in checked
    assert ("GET", "/import/<path:export_id>/receipt") in checked
    assert len(checked) >= 15
    assert store.reviews(record.scan_id) == []


def test_login_sets_a_hardened_session_cookie(client):
    response = login(client)
    assert response.status_code == 302 and response.headers["Location"] == "/patients"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    page = client.get("/patients")
    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"


def test_wrong_password_is_refused(client):
    response = login(client, password="wrong password")
    assert response.status_code == 401 and "Wrong username or password" in _alert(response)
    assert client.get("/patients").status_code == 302
    assert login(client, username="nobody").status_code == 401


def test_the_lockout_counts_failures_per_account_not_per_address(client, clock):
    for _ in range(5):
        assert login(client, password="guess").status_code == 401
    blocked = login(client)  # even the right password
    assert blocked.status_code == 429 and "Too many failed logins" in _alert(blocked)
    # Behind a same-machine TLS proxy every user comes from one address: bob still gets in.
    assert login(client, username="bob", password=PASSWORD + "!").status_code == 302
    assert login(client).status_code == 429
    clock.now += 901
    assert login(client).status_code == 302


def test_the_lockout_survives_a_restart(tmp_path, app, client, analysis, keys, clock):
    for _ in range(5):
        assert login(client, password="guess").status_code == 401
    app.extensions["skinscan_clinic"].store.close()
    settings = ClinicSettings(
        data_dir=tmp_path / "clinic",
        clinic_key=keys[0],
        throttle=LoginThrottle(max_failures=5, window_s=900, clock=clock),
    )
    restarted = create_app(settings, analysis=analysis)
    try:
        fresh = restarted.test_client()
        assert login(fresh).status_code == 429
        clock.now += 901
        assert login(fresh).status_code == 302
    finally:
        restarted.extensions["skinscan_clinic"].store.close()


def test_a_forwarded_address_is_trusted_only_when_configured(
    tmp_path, analysis, keys, caplog, password_hashes
):
    for proxies, logged in ((0, "127.0.0.1"), (1, "203.0.113.9")):
        settings = ClinicSettings(
            data_dir=tmp_path / f"clinic{proxies}", clinic_key=keys[0], trusted_proxies=proxies
        )
        flask_app = create_app(settings, analysis=analysis)
        store = flask_app.extensions["skinscan_clinic"].store
        try:
            store.add_user("alice", password_hashes["alice"])
            client = flask_app.test_client()
            token = csrf(client)
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="clinic.views"):
                response = client.post(
                    "/login",
                    data={"username": "alice", "password": "guess", "csrf_token": token},
                    headers={"X-Forwarded-For": "203.0.113.9"},
                )
            assert response.status_code == 401
            assert f"from {logged}" in caplog.text, (proxies, caplog.text)
        finally:
            store.close()


def test_logout_ends_the_session(logged_in):
    token = csrf(logged_in, "/patients")
    assert logged_in.post("/logout", data={"csrf_token": token}).status_code == 302
    assert logged_in.get("/patients").status_code == 302


def test_after_login_only_a_local_page_is_followed(client):
    token = csrf(client)
    form = {"username": "alice", "password": PASSWORD, "csrf_token": token}
    response = client.post("/login", data={**form, "next": "//evil.example/x"})
    assert response.headers["Location"] == "/patients"
    client.get("/login")
    token = csrf(client)
    response = client.post("/login", data={**form, "csrf_token": token, "next": "/import"})
    assert response.headers["Location"] == "/import"


# --------------------------------------------------------------------------- CSRF


def test_forms_without_a_csrf_token_are_rejected(logged_in, store):
    record = make_record(5, size=32)
    store.add_scan(record)
    form = {"verdict": "agree", "diagnosis": "nv", "note": "x"}
    no_token = logged_in.post(f"/scans/{record.scan_id}/review", data=form)
    assert no_token.status_code == 400 and "Form expired" in _text(no_token)
    bad_token = logged_in.post(
        f"/scans/{record.scan_id}/review", data={**form, "csrf_token": "forged"}
    )
    assert bad_token.status_code == 400
    assert store.reviews(record.scan_id) == []
    response = logged_in.post(
        "/upload",
        data={"image": (io.BytesIO(lesion_jpeg()), "x.jpg")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400 and store.scan_count() == 1
    assert (
        logged_in.post("/login", data={"username": "alice", "password": PASSWORD}).status_code
        == 400
    )


# --------------------------------------------------------------------------- import, pages


def test_import_page_is_idempotent(tmp_path, logged_in, keys, store):
    (part,) = make_export(tmp_path / "usb", keys[1])
    first = import_files(logged_in, [(part.name, part.read_bytes())])
    assert first.status_code == 200 and "3 new scan(s)" in _text(first)
    second = import_files(logged_in, [(part.name, part.read_bytes())])
    assert "0 new scan(s)" in _text(second) and "3 already in the store" in _text(second)
    assert store.scan_count() == 3


def test_tampered_or_foreign_export_is_refused_on_the_page(tmp_path, logged_in, keys, store):
    (part,) = make_export(tmp_path / "usb", keys[1])
    blob = bytearray(part.read_bytes())
    blob[-100] ^= 0x04
    response = import_files(logged_in, [(part.name, bytes(blob))])
    assert response.status_code == 422
    assert "nothing was imported" in _alert(response)
    _, other_public = make_keys(tmp_path / "other")
    (foreign,) = make_export(tmp_path / "usb2", other_public)
    response = import_files(logged_in, [(foreign.name, foreign.read_bytes())])
    assert response.status_code == 422 and "another clinic" in _alert(response)
    response = import_files(logged_in, [("notes.txt", b"hello")])
    assert response.status_code == 422 and "not a SkinScan export" in _alert(response)
    assert store.scan_count() == 0


def test_import_errors_name_the_users_file_not_an_internal_part(tmp_path, logged_in, keys, store):
    _, other_public = make_keys(tmp_path / "other")
    (foreign,) = make_export(tmp_path / "usb2", other_public)
    response = import_files(logged_in, [("visit-2024-05.sealed", foreign.read_bytes())])
    alert = _alert(response)
    assert response.status_code == 422
    assert "visit-2024-05.sealed cannot be opened with this clinic key" in alert
    assert "part-0" not in alert and str(store.tmp_dir) not in alert
    (mine,) = make_export(tmp_path / "usb", keys[1])
    (other,) = make_export(tmp_path / "usb3", keys[1], [make_record(9, size=48)])
    files = [("monday.sealed", mine.read_bytes()), ("tuesday.sealed", other.read_bytes())]
    alert = _alert(import_files(logged_in, files))
    assert "tuesday.sealed (file 2 of 2) belongs to another export" in alert, alert
    assert "part-0" not in alert
    assert store.scan_count() == 0


def test_patients_and_their_scans_newest_first(logged_in, imported):
    page = _text(logged_in.get("/patients"))
    assert PATIENT in page and "Scans without a patient reference</a> (1)" in page
    patient = _text(logged_in.get(f"/patients/{PATIENT}"))
    ids = re.findall(r'href="/scans/([0-9a-f-]{36})"', patient)
    assert ids == [imported[1].scan_id, imported[0].scan_id]  # newest first
    other = _text(logged_in.get("/unreferenced"))
    assert re.findall(r'href="/scans/([0-9a-f-]{36})"', other) == [imported[2].scan_id]
    assert logged_in.get("/patients/SKS-999999-0000").status_code == 404
    assert logged_in.get("/patients/Jane Doe").status_code == 404


def test_scan_page_shows_the_devices_result(logged_in, imported):
    record = imported[1]
    response = logged_in.get(f"/scans/{record.scan_id}")
    page = _text(response)
    assert response.status_code == 200
    assert NOTICE in page
    ranked = sorted(record.probabilities.items(), key=lambda kv: -kv[1])[:3]
    shown = re.findall(r'<td class="num">(\d+)%</td>', page)
    assert shown == [f"{100 * p:.0f}" for _, p in ranked]
    assert f"{100 * record.p_malignant:.1f}%" in page and "23.5%" in page  # vs its threshold
    assert record.bundle_id in page and record.device_id in page
    assert f'class="banner tier-{record.risk_tier}"' in page
    assert "Sharpness" in page and "Grad-CAM heatmap" in page and 'id="heatmap-main"' in page
    photo = logged_in.get(f"/scans/{record.scan_id}/photo.png")
    assert photo.status_code == 200 and photo.mimetype == "image/png"
    import cv2

    decoded = cv2.imdecode(np.frombuffer(photo.data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    np.testing.assert_array_equal(decoded, record.image)
    assert logged_in.get(f"/scans/{record.scan_id}/heatmap.png").status_code == 200
    assert logged_in.get("/scans/00000000-0000-4000-8000-000000000000").status_code == 404


def test_follow_up_compares_two_scans_of_one_patient(logged_in, imported):
    a, b, other = imported
    page = _text(logged_in.get(f"/compare?a={b.scan_id}&b={a.scan_id}"))
    delta = 100 * (b.p_malignant - a.p_malignant)
    assert f"{delta:+.1f} points" in page
    assert "Lesion area" in page and page.count(NOTICE) >= 2
    mixed = logged_in.get(f"/compare?a={a.scan_id}&b={other.scan_id}")
    assert mixed.status_code == 400 and "different patients" in _alert(mixed)
    assert logged_in.get(f"/compare?a={a.scan_id}").status_code == 400


def test_reviews_are_kept_with_who_and_when(logged_in, imported, store):
    scan_id = imported[0].scan_id
    for verdict, dx, note in (("agree", "nv", "benign"), ("disagree", "mel", "asymmetric")):
        token = csrf(logged_in, f"/scans/{scan_id}")
        response = logged_in.post(
            f"/scans/{scan_id}/review",
            data={"csrf_token": token, "verdict": verdict, "diagnosis": dx, "note": note},
        )
        assert response.status_code == 302
    reviews = store.reviews(scan_id)
    assert [(r.reviewer, r.verdict, r.diagnosis, r.note) for r in reviews] == [
        ("alice", "agree", "nv", "benign"),
        ("alice", "disagree", "mel", "asymmetric"),
    ]
    page = _text(logged_in.get(f"/scans/{scan_id}"))
    assert page.count("by alice,") == 2 and "asymmetric" in page
    token = csrf(logged_in, f"/scans/{scan_id}")
    bad = logged_in.post(f"/scans/{scan_id}/review", data={"csrf_token": token, "verdict": "x"})
    assert bad.status_code == 400 and len(store.reviews(scan_id)) == 2


# --------------------------------------------------------------------------- uploads


def test_upload_runs_exactly_the_device_pipeline(tmp_path, logged_in, store, analysis):
    data = lesion_jpeg(5)
    response = upload(logged_in, data, patient_ref=PATIENT, body_site="left forearm")
    assert response.status_code == 302, _alert(response)
    scan_id = response.headers["Location"].rsplit("/", 1)[1]
    record = store.get_scan(scan_id)
    # An independent device analyzer on the same file gives the same numbers.
    path = tmp_path / "same.jpg"
    path.write_bytes(data)
    reference = Analyzer.from_path().analyze(read_image(path), explain=True)
    assert record.label == reference.label and record.risk_tier == reference.risk_tier
    assert record.p_malignant == pytest.approx(reference.p_malignant, abs=1e-6)
    assert record.bundle_id == analysis.bundle_id and record.operator == "alice"
    assert record.patient_ref == PATIENT and record.heatmap is not None
    gate = assess_quality(read_image(path), analysis.thresholds)
    assert record.quality == pytest.approx(gate.metrics())
    assert {"sharpness", "dark_fraction", "bright_fraction", "lesion_contrast"} <= set(
        record.quality
    )
    page = _text(logged_in.get(response.headers["Location"]))
    assert NOTICE in page and analysis.bundle_id in page and "clinic upload" in page
    assert f"{100 * analysis.referral_threshold:.1f}%" in page
    assert list(store.tmp_dir.iterdir()) == []


def test_a_photo_under_unusual_light_is_corrected_and_says_so(logged_in, store):
    from device.evaluation.shifts import shift_by_name
    from device.phantoms import make_phantom

    warm = shift_by_name("colour-3000K").apply(make_phantom(5, size=(450, 600)).image)
    response = upload(logged_in, encode(warm), patient_ref=PATIENT, body_site="back")
    assert response.status_code == 302, _alert(response)
    record = store.get_scan(response.headers["Location"].rsplit("/", 1)[1])
    assert record.extra["unusual_light"] == "1"
    page = _text(logged_in.get(response.headers["Location"]))
    # An upload came from no scanner: the advice is about the photo, not the LED ring.
    assert "Unusual light" in page and "dermoscope's own white light" in page
    assert "LED ring" not in page


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        (b"%PDF-1.4 not an image", "not a JPEG or PNG"),
        (lesion_jpeg(6)[:4000], "truncated JPEG"),
        (encode(np.full((300, 400, 3), 200, np.uint8), ".png")[:300], "cannot be decoded"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "damaged"),
        (encode(np.zeros((1500, 1500, 3), np.uint8), ".png"), "too large"),
        (encode(np.zeros((40, 40, 3), np.uint8), ".png"), "too small"),
    ],
    ids=["empty", "non-image", "truncated-jpeg", "truncated-png", "bad-header", "huge", "tiny"],
)
def test_bad_uploads_get_a_clear_page(logged_in, store, data, message):
    response = upload(logged_in, data)
    assert response.status_code == 400
    assert message in _alert(response)
    assert store.scan_count() == 0


def test_upload_over_the_size_limit_is_a_clear_page(logged_in, store):
    response = upload(logged_in, b"\xff\xd8\xff" + bytes(3 * 1024 * 1024))
    assert response.status_code == 413 and "limited to 2 MB" in _alert(response)
    assert store.scan_count() == 0


def test_a_frame_failing_the_quality_gate_gets_no_diagnosis(logged_in, store):
    import cv2

    blurred = cv2.GaussianBlur(read_phantom(), (0, 0), 12)
    for image, reason in (
        (np.full((450, 600, 3), (205, 160, 140), np.uint8), "no lesion in view"),  # bare skin
        (np.full((450, 600, 3), 5, np.uint8), "too dark"),
        (blurred, "blurred"),
    ):
        response = upload(logged_in, encode(image, ".png"), name="x.png")
        page = _text(response)
        assert response.status_code == 422, reason
        assert reason in _alert(response)
        assert "Refer to a clinician" not in page and "Top 3" not in page
    assert store.scan_count() == 0


@pytest.fixture(scope="module")
def huge_png() -> bytes:
    return png_of_size(30000, 30000)


def test_a_huge_image_is_refused_from_its_header(logged_in, store, huge_png):
    for data, name in ((huge_png, "huge.png"), (jpeg_claiming(30000, 30000), "huge.jpg")):
        response = upload(logged_in, data, name=name)
        alert = _alert(response)
        assert response.status_code == 400, alert
        assert "too large: 30000x30000 pixels (900 MP; at most 2 MP)" in alert
        assert "decompression" not in alert.lower() and "DOS attack" not in alert
    assert store.scan_count() == 0
    with pytest.raises(UploadError, match=r"\(900 MP; at most 40 MP\)"):
        sniff_upload(huge_png)


def test_a_refused_patient_reference_keeps_what_was_entered(logged_in, store):
    response = upload(logged_in, lesion_jpeg(), patient_ref="Jane Doe", body_site="left forearm")
    assert response.status_code == 400
    page, alert = _text(response), _alert(response)
    assert 'name="patient_ref" maxlength="64" value="Jane Doe"' in page
    assert 'name="body_site" maxlength="64" value="left forearm"' in page
    assert "Patient reference refused" in alert and "choose the image file again" in alert
    assert store.scan_count() == 0


def test_the_retake_page_of_an_upload_advises_on_the_photo_not_the_device(logged_in):
    import cv2

    dark = np.full((450, 600, 3), 5, np.uint8)
    blurred = cv2.GaussianBlur(read_phantom(), (0, 0), 12)
    for image, reason, advice in (
        (dark, "too dark", "better-lit"),
        (blurred, "blurred", "sharper"),
    ):
        response = upload(logged_in, encode(image, ".png"), name="x.png")
        page = _text(response)
        assert response.status_code == 422 and reason in _alert(response)
        assert advice in _alert(response)
        assert "LED ring" not in page and "hold still" not in page and "Retake" not in page


def test_a_bad_patient_reference_is_refused(logged_in, store):
    response = upload(logged_in, lesion_jpeg(), patient_ref="Jane Doe")
    assert response.status_code == 400 and "Patient reference refused" in _alert(response)
    assert store.scan_count() == 0


def read_phantom():
    from device.phantoms import make_phantom

    return make_phantom(7, size=(450, 600)).image


def test_a_record_altered_in_the_store_is_reported_not_shown(logged_in, store):
    record = make_record(8, size=32)
    store.add_scan(record)
    image_file = store.data_dir / "scans" / "images" / f"{record.scan_id}.image"
    blob = bytearray(image_file.read_bytes())
    blob[-1] ^= 0x01
    image_file.write_bytes(bytes(blob))
    for path in (f"/scans/{record.scan_id}", f"/scans/{record.scan_id}/photo.png"):
        response = logged_in.get(path)
        assert response.status_code == 409
        assert "integrity check" in _text(response) and b"PNG" not in response.data[:8]


def test_an_empty_form_is_not_said_to_be_kept(logged_in):
    alert = _alert(upload(logged_in, b"%PDF-1.4 not an image"))
    assert "not a JPEG or PNG" in alert and "entries are kept" not in alert
    alert = _alert(upload(logged_in, b"%PDF-1.4 not an image", body_site="back"))
    assert "entries are kept" in alert


def test_a_scanner_scan_under_unusual_light_asks_to_check_the_led_ring(logged_in, store):
    record = make_record(11, size=32, extra={"unusual_light": "1"})
    store.add_scan(record)
    page = _text(logged_in.get(f"/scans/{record.scan_id}"))
    assert "Unusual light" in page and "LED ring" in page
    assert "dermoscope's own white light" not in page
