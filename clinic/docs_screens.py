"""The clinic app's screenshots for the docs, in headless chromium (``skinscan docs build``).

A scripted simulator session saves two scans with the given bundle, ``skinscan records
export`` seals them to a fresh clinic key, and the app runs under waitress on 127.0.0.1.
Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright; nothing is downloaded)
logs in, imports the export, opens the first scan and uploads a photo. Each page is
written to ``--out`` as a PNG of its first 1200x1000 pixels: ``import``, ``scan-page``,
``upload-result``, and one per ``--page NAME=/path``.

Run as ``python -m clinic.docs_screens --out DIR [--bundle DIR] [--ham10000 DIR --image
ID ...] [--page NAME=/path ...]``. Exit code 3: no browser here (nothing written).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

CHROMIUM = Path(os.environ.get("SKINSCAN_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run"]
NO_BROWSER = 3
VIEWPORT = {"width": 1200, "height": 1000}
# SAVE twice: the first asks once about the missing patient reference, the second saves.
DEVICE_SCRIPT = (
    "wait 0.3, capture, wait 1.5, save, save, back, wait 0.3, capture, wait 1.5, save, save, back"
)


def _skinscan(args: Sequence[str], env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "device.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"skinscan {' '.join(args[:2])} failed: {done.stderr[-800:]}")


def _photos(ham10000: Path | None, ids: Sequence[str], folder: Path) -> list[Path]:
    """Copies of the named HAM10000 photos; without any, one phantom JPEG."""
    folder.mkdir(parents=True)
    if ham10000 is not None and ids:
        out = []
        for number, image_id in enumerate(ids):
            source = ham10000 / "images" / f"{image_id}.jpg"
            if not source.is_file():
                raise SystemExit(f"no HAM10000 image {source}")
            out.append(Path(shutil.copy(source, folder / f"{number:02d}-{image_id}.jpg")))
        return out
    import cv2

    from device.phantoms import make_phantom

    phantom = folder / "phantom.jpg"
    cv2.imwrite(str(phantom), make_phantom(5, size=(450, 600)).image[..., ::-1])
    return [phantom]


def _export(work: Path, bundle: Path, camera: Path | None, public: Path) -> Path:
    env = {**os.environ, "SKINSCAN_DATA_DIR": str(work / "device-data"), "SDL_VIDEODRIVER": "dummy"}
    env.pop("SKINSCAN_KEY_FILE", None)
    run = [
        "run",
        "--headless",
        "--backend",
        "sim",
        "--bundle",
        str(bundle),
        "--script",
        DEVICE_SCRIPT,
    ]
    if camera is not None:
        run += ["--images", str(camera)]
    _skinscan(run, env)
    _skinscan(["records", "export", "--to", str(work / "usb"), "--clinic-key", str(public)], env)
    sealed = sorted((work / "usb").glob("*.sealed"))
    if not sealed:
        raise SystemExit("the simulator's export wrote no sealed file")
    return sealed[0]


def shoot(
    out: Path,
    bundle: Path,
    ham10000: Path | None = None,
    image_ids: Sequence[str] = (),
    pages: Sequence[str] = (),
) -> list[Path]:
    """Make the clinic screenshots in ``out``; returns the PNGs written."""
    from playwright.sync_api import sync_playwright

    from clinic.app import ClinicSettings, create_app
    from clinic.auth import add_user
    from clinic.server import BackgroundServer
    from device.records.export import generate_clinic_keypair

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="skinscan-clinic-docs-") as tmp:
        work = Path(tmp)
        photos = _photos(ham10000, image_ids, work / "photos")
        camera = work / "photos" if ham10000 is not None and image_ids else None
        private, public = generate_clinic_keypair(work / "keys")
        sealed = _export(work, bundle, camera, public)
        password = secrets.token_urlsafe(12)
        app = create_app(
            ClinicSettings(data_dir=work / "clinic", clinic_key=private, bundle_dir=bundle)
        )
        store = app.extensions["skinscan_clinic"].store
        add_user(store, "alice", password)

        def snap(page, name: str) -> None:
            path = out / f"{name}.png"
            page.screenshot(path=str(path))  # the first screenful, as a reader sees it
            written.append(path)

        try:
            with BackgroundServer(app, threads=4) as server, sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
                )
                page = browser.new_context(viewport=VIEWPORT).new_page()
                page.set_default_timeout(30_000)
                page.goto(server.url + "/login")
                page.fill("input[name=username]", "alice")
                page.fill("input[name=password]", password)
                page.click("button[type=submit]")
                page.click("text=Import export")
                page.set_input_files("input[name=export]", str(sealed))
                page.click("button:has-text('Import')")
                page.wait_for_selector("[role=status]")
                snap(page, "import")
                page.click("text=Patients")
                page.click("text=Scans without a patient reference")
                page.locator("table.list a[href^='/scans/']").first.click()
                page.wait_for_selector("img.overlay")
                snap(page, "scan-page")
                page.click("text=Upload image")
                page.set_input_files("input[name=image]", str(photos[-1]))
                page.fill("input[name=body_site]", "left forearm")
                page.click("button:has-text('Analyse')")
                page.wait_for_url("**/scans/*")
                snap(page, "upload-result")
                for spec in pages:
                    name, _, path = spec.partition("=")
                    page.goto(server.url + path)
                    snap(page, name)
                browser.close()
        finally:
            store.close()
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m clinic.docs_screens", description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--bundle", type=Path, default=Path("device/models/default"))
    parser.add_argument("--ham10000", type=Path)
    parser.add_argument("--image", action="append", default=[], help="a HAM10000 image id")
    parser.add_argument("--page", action="append", default=[], help="NAME=/path: one more page")
    args = parser.parse_args(argv)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        print("clinic screenshots: Playwright is not installed (./setup.sh)", file=sys.stderr)
        return NO_BROWSER
    if not CHROMIUM.exists():
        print(f"clinic screenshots: no chromium at {CHROMIUM}", file=sys.stderr)
        return NO_BROWSER
    for path in shoot(args.out, args.bundle, args.ham10000, args.image, args.page):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
