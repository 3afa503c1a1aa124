"""The clinic's casework pages for the docs, in headless chromium (``skinscan docs build``).

A fresh clinic store gets two sites, three scanners, 35 scans with confirmed diagnoses (one
confirmation superseded) and four unreviewed referrals, all synthetic records
(:func:`device.records.testing.make_record`: noise images, no patient data, no model
output). Chromium (Debian's ``/usr/bin/chromium`` through Playwright) logs in and writes
full-page PNGs to ``--out``: ``clinic-worklist``, ``clinic-confirmed-cases``,
``clinic-sites`` and ``clinic-scan-confirmed`` (a confirmed diagnosis recorded through the
form, with its history).

Run as ``python -m clinic.docs_casework --out DIR``. Exit code 3: no browser here.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from clinic.docs_screens import CHROMIUM, CHROMIUM_ARGS, NO_BROWSER

NORTH = ("dermoscope-north-1", "dermoscope-north-2")
SOUTH = "dermoscope-south-1"
VIEWPORT = {"width": 1280, "height": 900}


def _fill(store, users: Sequence[str]) -> str:
    """Sites, scanners, confirmed and unreviewed scans; returns a scan with a superseded
    confirmation."""
    from device.records.testing import make_record

    first_user, second_user = users
    store.add_site("clinic-north", first_user)
    store.add_site("clinic-south", first_user)
    for device_id in NORTH:
        store.assign_scanner(device_id, "clinic-north", first_user)
    diagnoses = ["mel"] * 10 + ["bcc"] * 3 + ["nv"] * 16 + ["bkl"] * 4 + ["other"] * 2
    bases = ["histopathology", "consensus", "follow-up"]
    for i, dx in enumerate(diagnoses):
        record = make_record(i, size=64, device_id=NORTH[i % 2], risk_tier="monitor")
        store.add_scan(record)
        store.add_confirmation(record.scan_id, first_user, dx, bases[i % 3])
    for i in range(4):
        tier = "refer" if i % 2 else "uncertain"
        store.add_scan(make_record(100 + i * 600, size=64, device_id=SOUTH, risk_tier=tier))
    first = store.confirmations()[0]
    store.add_confirmation(first.scan_id, second_user, "nv", "histopathology", "report H-2026/17")
    return first.scan_id


def shoot(out: Path) -> list[Path]:
    """Make the casework screenshots in ``out``; returns the PNGs written."""
    from playwright.sync_api import sync_playwright

    from clinic.app import ClinicSettings, create_app
    from clinic.auth import add_user
    from clinic.server import BackgroundServer
    from device.records.export import generate_clinic_keypair

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="skinscan-clinic-casework-") as tmp:
        work = Path(tmp)
        private, _ = generate_clinic_keypair(work / "keys")
        app = create_app(ClinicSettings(data_dir=work / "clinic", clinic_key=private))
        store = app.extensions["skinscan_clinic"].store
        password = secrets.token_urlsafe(12)
        for user in ("alice", "bob"):
            add_user(store, user, password)
        superseded = _fill(store, ("alice", "bob"))

        def snap(page, name: str) -> None:
            path = out / f"{name}.png"
            page.screenshot(path=str(path), full_page=True)
            written.append(path)

        try:
            with BackgroundServer(app, threads=2) as server, sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
                )
                page = browser.new_page(viewport=VIEWPORT)
                page.set_default_timeout(30_000)
                page.goto(server.url + "/login")
                page.fill("input[name=username]", "alice")
                page.fill("input[name=password]", password)
                page.click("button[type=submit]")
                page.click("nav >> text=Worklist")
                snap(page, "clinic-worklist")
                page.click("nav >> text=Confirmed cases")
                snap(page, "clinic-confirmed-cases")
                page.click("nav >> text=Sites")
                snap(page, "clinic-sites")
                page.goto(f"{server.url}/scans/{superseded}")
                page.select_option("#confirmed select[name=diagnosis]", "bkl")
                page.check("input[name=basis][value=follow-up]")
                page.click("text=Record confirmed diagnosis")
                page.wait_for_selector(".confirmed-now")
                page.locator("#confirmed").scroll_into_view_if_needed()
                snap(page, "clinic-scan-confirmed")
                browser.close()
        finally:
            store.close()
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m clinic.docs_casework", description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--bundle", type=Path, help="ignored: these pages show no model output")
    args = parser.parse_args(argv)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        print("clinic screenshots: Playwright is not installed (./setup.sh)", file=sys.stderr)
        return NO_BROWSER
    if not CHROMIUM.exists():
        print(f"clinic screenshots: no chromium at {CHROMIUM}", file=sys.stderr)
        return NO_BROWSER
    for path in shoot(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
