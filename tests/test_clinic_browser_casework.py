"""The casework pages in a real browser (Debian's chromium driven by Playwright).

A clinic store holds scans of three scanners, two of them in a site, with
confirmed diagnoses (one superseded) and unreviewed referrals. The browser logs
in, opens the worklist, the Confirmed cases page, the Sites page and a scan page
with its confirmation history, records a confirmed diagnosis through the form,
and checks that no page is wider than the window. Screenshots go to a temporary
folder (and to ``$SKINSCAN_CLINIC_SCREENSHOTS`` when set).

Skipped only when Playwright or ``/usr/bin/chromium`` is absent.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from clinic_support import PASSWORD, make_keys

from device.records.testing import make_record

pytest.importorskip("flask")
pytest.importorskip("waitress")
sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path(os.environ.get("SKINSCAN_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run"]
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no chromium at {CHROMIUM}")
NORTH = ("dermoscope-north-1", "dermoscope-north-2")
SOUTH = "dermoscope-south-1"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from clinic.analysis import AnalysisService
    from clinic.app import ClinicSettings, create_app
    from clinic.auth import add_user
    from clinic.server import BackgroundServer

    root = tmp_path_factory.mktemp("clinic")
    private, _ = make_keys(root / "keys")
    app = create_app(
        ClinicSettings(data_dir=root / "data", clinic_key=private),
        analysis=AnalysisService(max_pixels=2_000_000),
    )
    store = app.extensions["skinscan_clinic"].store
    add_user(store, "alice", PASSWORD)
    add_user(store, "bob", PASSWORD)
    store.add_site("clinic-north", "alice")
    store.add_site("clinic-south", "alice")
    for device_id in NORTH:
        store.assign_scanner(device_id, "clinic-north", "alice")
    diagnoses = ["mel"] * 10 + ["bcc"] * 3 + ["nv"] * 16 + ["bkl"] * 4 + ["other"] * 2
    bases = ["histopathology", "consensus", "follow-up"]
    for i, dx in enumerate(diagnoses):
        record = make_record(i, size=64, device_id=NORTH[i % 2], risk_tier="monitor")
        store.add_scan(record)
        store.add_confirmation(record.scan_id, "alice", dx, bases[i % 3])
    for i in range(4):
        tier = "refer" if i % 2 else "uncertain"
        record = make_record(100 + i * 600, size=64, device_id=SOUTH, risk_tier=tier)
        store.add_scan(record)
    first = store.confirmations()[0]
    store.add_confirmation(first.scan_id, "bob", "nv", "histopathology", "report H-2026/17")
    with BackgroundServer(app, threads=2) as running:
        yield running, first.scan_id
    store.close()


@pytest.fixture(scope="module")
def page(server):
    running, _ = server
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        tab = browser.new_page(viewport={"width": 1280, "height": 900})
        tab.goto(f"{running.url}/login")
        tab.fill("input[name=username]", "alice")
        tab.fill("input[name=password]", PASSWORD)
        tab.click("button[type=submit]")
        yield tab
        browser.close()


def _shot(tab, folder: Path, name: str) -> None:
    path = folder / f"{name}.png"
    tab.screenshot(path=str(path), full_page=True)
    extra = os.environ.get("SKINSCAN_CLINIC_SCREENSHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(extra) / path.name)
    assert path.stat().st_size > 5000


def _fits(tab) -> bool:
    """Nothing wider than the window, and no table wider than the page's column."""
    return bool(
        tab.evaluate(
            """() => document.documentElement.scrollWidth <= window.innerWidth &&
            [...document.querySelectorAll('main table')].every(
                t => t.getBoundingClientRect().right
                     <= document.querySelector('main').getBoundingClientRect().right + 1)"""
        )
    )


def test_the_casework_pages_render_and_fit_the_window(server, page, tmp_path):
    running, superseded_scan = server
    page.click("nav >> text=Worklist")
    assert page.locator("nav .count").inner_text() == "4"
    assert page.locator("table.worklist tbody tr").count() == 4
    assert _fits(page)
    _shot(page, tmp_path, "clinic-worklist")

    page.click("nav >> text=Confirmed cases")
    north = page.locator("table.counts").first.locator("tr", has_text="clinic-north")
    assert "enough to try adapting" in north.inner_text()
    south = page.locator("table.counts").first.locator("tr", has_text="clinic-south")
    assert "needs 10 more malignant cases" in south.inner_text()
    assert page.locator("pre").first.inner_text().startswith(".venv/bin/skinscan adapt")
    assert _fits(page)
    _shot(page, tmp_path, "clinic-confirmed-cases")

    page.click("nav >> text=Sites")
    assert page.locator("table.list").first.locator("tr", has_text=SOUTH).count() == 1
    assert _fits(page)
    _shot(page, tmp_path, "clinic-sites")

    page.goto(f"{running.url}/scans/{superseded_scan}")
    page.select_option("#confirmed select[name=diagnosis]", "bkl")
    page.check("input[name=basis][value=follow-up]")
    page.click("text=Record confirmed diagnosis")
    history = page.locator("ol.confirmations li")
    assert history.count() == 3
    assert history.nth(0).locator("del").count() >= 1
    assert history.nth(1).locator("del").count() >= 1
    assert "current" in history.nth(2).inner_text()
    assert "Benign keratosis" in page.locator(".confirmed-now").inner_text()
    page.locator("#confirmed").scroll_into_view_if_needed()
    _shot(page, tmp_path, "clinic-scan-confirmed")
