"""The clinic web app in a real browser: Debian's chromium driven by Playwright.

A scripted simulator session (``skinscan run --headless --script``) saves two
scans, ``skinscan records export`` seals them to a clinic key, and the app is
served by waitress on 127.0.0.1. The browser logs in, imports the export,
downloads its receipt (which ``skinscan records ack`` accepts on the simulator's
store), opens a scan, toggles the heatmap, and uploads an image. Screenshots go to a
temporary folder (and to ``$SKINSCAN_CLINIC_SCREENSHOTS`` when set).

Skipped only when Playwright or ``/usr/bin/chromium`` is absent; ``setup.sh``
installs both, so CI runs it. No browser is ever downloaded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from clinic_support import PASSWORD, encode, lesion_jpeg, make_export, png_of_size

from clinic.app import ClinicSettings, create_app
from clinic.auth import add_user
from clinic.server import BackgroundServer
from device.records.export import generate_clinic_keypair
from device.ui.screens import TIER_ACTIONS, UNFAMILIAR_ACTION

pytest.importorskip("flask")
pytest.importorskip("waitress")
sync_api = pytest.importorskip("playwright.sync_api")


CHROMIUM = Path(os.environ.get("SKINSCAN_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",  # as root in CI
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
NOTICE = "Screening aid — not a diagnosis"
ACTIONS = (*TIER_ACTIONS.values(), UNFAMILIAR_ACTION)

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no chromium at {CHROMIUM}")


def _skinscan(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "device.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def export_from_simulator(tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    """(the clinic private key, the sealed export of a scripted simulator session, its env)."""
    root = tmp_path_factory.mktemp("field")
    private, public = generate_clinic_keypair(root / "keys")
    env = {**os.environ, "SKINSCAN_DATA_DIR": str(root / "device-data")}
    env.pop("SKINSCAN_KEY_FILE", None)
    script = (
        "wait 0.3, capture, wait 0.5, save, save, back, wait 0.3, capture, wait 0.5, save, save, "
        "back"
    )
    _skinscan("run", "--headless", "--backend", "sim", "--script", script, env=env)
    _skinscan("records", "export", "--to", str(root / "usb"), "--clinic-key", str(public), env=env)
    (sealed,) = sorted((root / "usb").glob("*.sealed"))
    return private, sealed, env


@pytest.fixture(scope="module")
def server(tmp_path_factory, export_from_simulator):
    private, _, _ = export_from_simulator
    app = create_app(
        ClinicSettings(data_dir=tmp_path_factory.mktemp("clinic") / "data", clinic_key=private)
    )
    store = app.extensions["skinscan_clinic"].store
    add_user(store, "alice", PASSWORD)
    with BackgroundServer(app, threads=4) as running:
        yield running
    store.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def _shot(page, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    extra = os.environ.get("SKINSCAN_CLINIC_SCREENSHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(extra) / path.name)
    assert path.stat().st_size > 5000
    return path


def _loaded(image) -> bool:
    return bool(image.evaluate("img => img.complete && img.naturalWidth > 0"))


def test_a_clinician_imports_reviews_and_uploads_in_a_browser(
    server, browser, export_from_simulator, shots, tmp_path
):
    _, sealed, device_env = export_from_simulator
    context = browser.new_context(viewport={"width": 1200, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    expect = sync_api.expect

    # Nothing without a login: the start page lands on the login form.
    page.goto(server.url + "/")
    expect(page.locator("h1")).to_have_text("Log in")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Patients")
    cookie = next(c for c in context.cookies() if c["name"] == "skinscan_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    # Import the simulator's export, twice: the second time adds nothing.
    for expected in ("2 new scan(s)", "0 new scan(s)"):
        page.click("text=Import export")
        page.set_input_files("input[name=export]", str(sealed))
        page.click("button:has-text('Import')")
        expect(page.locator("[role=status]")).to_contain_text(expected)
    expect(page.locator(".receipt")).to_contain_text("skinscan records ack")
    _shot(page, shots, "import")

    # Its receipt, downloaded by the browser, is accepted by the scanner that exported.
    with page.expect_download() as download:
        page.click("text=Download the receipt")
    receipt = tmp_path / download.value.suggested_filename
    download.value.save_as(receipt)
    assert receipt.name.startswith("skinscan-receipt-") and receipt.name in page.content()
    acked = _skinscan("records", "ack", str(receipt), env=device_env)
    assert "the clinic has 2 scan(s)" in acked, acked

    # The scans (no patient reference from the simulator), then one scan's page.
    page.click("text=Patients")
    page.click("text=Scans without a patient reference")
    links = page.locator("table.list a[href^='/scans/']")
    expect(links).to_have_count(2)
    links.first.click()
    expect(page.locator(".banner")).to_be_visible()
    assert page.locator(".banner").inner_text() in ACTIONS
    expect(page.locator(".notice")).to_contain_text(NOTICE)
    expect(page.locator("table.top3 tr")).to_have_count(3)
    photo, overlay = page.locator("img.photo"), page.locator("img.overlay")
    expect(overlay).to_be_visible()
    expect(photo).to_be_hidden()
    assert _loaded(overlay)
    heat_shot = _shot(page, shots, "scan-heatmap")

    # Toggle the heatmap off: the photo shows instead.
    page.click("label.toggle-label")
    expect(photo).to_be_visible()
    expect(overlay).to_be_hidden()
    assert _loaded(photo)
    photo_shot = _shot(page, shots, "scan-photo")
    assert heat_shot.read_bytes() != photo_shot.read_bytes()
    page.click("label.toggle-label")
    expect(overlay).to_be_visible()

    # Review it.
    page.check("input[value=agree]")
    page.select_option("select[name=diagnosis]", "nv")
    page.fill("textarea[name=note]", "dermoscopy consistent with a naevus")
    page.click("button:has-text('Add review')")
    expect(page.locator("ol.reviews li")).to_contain_text("by alice")

    # Upload an image: the same result page.
    image = tmp_path / "lesion.jpg"
    image.write_bytes(lesion_jpeg(5))
    page.click("text=Upload image")
    page.set_input_files("input[name=image]", str(image))
    page.fill("input[name=body_site]", "left forearm")
    page.click("button:has-text('Analyse')")
    page.wait_for_url("**/scans/*")
    expect(page.locator(".notice")).to_contain_text(NOTICE)
    expect(page.locator(".meta").first).to_contain_text("left forearm")
    expect(page.locator("table.kv")).to_contain_text("clinic upload")
    assert _loaded(page.locator("img.overlay"))
    _shot(page, shots, "upload-result")

    # A file that is not an image: a clear page, not a server error.
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    page.click("text=Upload image")
    page.set_input_files("input[name=image]", str(bad))
    page.click("button:has-text('Analyse')")
    expect(page.locator("[role=alert]")).to_contain_text("not a JPEG or PNG")
    _shot(page, shots, "upload-refused")
    context.close()


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory):
    """A clinic app with one account and no imports (no simulator needed)."""
    root = tmp_path_factory.mktemp("clinic-errors")
    private, _ = generate_clinic_keypair(root / "keys")
    app = create_app(ClinicSettings(data_dir=root / "data", clinic_key=private))
    store = app.extensions["skinscan_clinic"].store
    add_user(store, "alice", PASSWORD)
    with BackgroundServer(app, threads=2) as running:
        yield running
    store.close()


def test_what_a_clinician_sees_when_something_is_refused(plain_server, browser, shots, tmp_path):
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    page.set_default_timeout(20_000)
    expect = sync_api.expect
    alert = page.locator("[role=alert]")

    # Five wrong passwords lock that account only; a colleague still logs in.
    page.goto(plain_server.url + "/login")
    for _ in range(6):
        page.fill("input[name=username]", "carol")
        page.fill("input[name=password]", "a wrong guess")
        page.click("button[type=submit]")
    expect(alert).to_contain_text("Too many failed logins")
    _shot(page, shots, "login-locked")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Patients")

    # A refused patient reference: the form keeps what was typed.
    image = tmp_path / "lesion.jpg"
    image.write_bytes(lesion_jpeg(5))
    page.click("text=Upload image")
    page.set_input_files("input[name=image]", str(image))
    page.fill("input[name=patient_ref]", "Jane Doe")
    page.fill("input[name=body_site]", "left forearm")
    page.click("button:has-text('Analyse')")
    expect(alert).to_contain_text("choose the image file again")
    expect(page.locator("input[name=patient_ref]")).to_have_value("Jane Doe")
    expect(page.locator("input[name=body_site]")).to_have_value("left forearm")
    _shot(page, shots, "upload-reference-refused")

    # A 30000x30000 PNG: too large, in plain words.
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_of_size(30000, 30000))
    page.set_input_files("input[name=image]", str(huge))
    page.fill("input[name=patient_ref]", "")
    page.click("button:has-text('Analyse')")
    expect(alert).to_contain_text("(900 MP; at most 40 MP)")
    expect(page.locator("input[name=body_site]")).to_have_value("left forearm")
    _shot(page, shots, "upload-too-large")

    # A dark photo: advice for a photo, not for the scanner.
    dark = tmp_path / "dark.png"
    dark.write_bytes(encode(np.full((450, 600, 3), 5, np.uint8), ".png"))
    page.set_input_files("input[name=image]", str(dark))
    page.click("button:has-text('Analyse')")
    expect(alert).to_contain_text("too dark — upload a better-lit photo")
    assert "LED ring" not in page.content()
    _shot(page, shots, "upload-retake")

    # An export sealed to another clinic: the message names the user's file.
    _, other_public = generate_clinic_keypair(tmp_path / "other-keys")
    (part,) = make_export(tmp_path / "usb", other_public)
    named = tmp_path / "visit-2024-05.sealed"
    named.write_bytes(part.read_bytes())
    page.click("text=Import export")
    page.set_input_files("input[name=export]", str(named))
    page.click("button:has-text('Import')")
    expect(alert).to_contain_text("visit-2024-05.sealed cannot be opened with this clinic key")
    assert "part-0" not in alert.inner_text()
    _shot(page, shots, "import-refused")
    context.close()
