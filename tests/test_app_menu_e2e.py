"""The issue's target, as a field worker would do it, in the simulator: scan, save, export
to a stick from the menu, take the stick to the clinic, bring back its receipt, free space;
no keyboard and no shell on the scanner. ``--usb DIR`` stands for the stick."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from bundle_factory import make_bundle
from test_app_cli import ROOT, environment, skinscan


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundle") / "bundle")


def records(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "device.cli", "records", *args],
        cwd=ROOT, env=environment(tmp_path), capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def count(output: str) -> int:
    found = re.search(r"^(\d+) record\(s\)", output, re.MULTILINE)
    assert found, output
    return int(found.group(1))


# Each scan: capture, then SAVE (a second SAVE answers "Save anyway" when the scan has no
# patient, and does nothing to a scan already saved), then back to the live view.
SCAN = "capture, wait 1.5, save, wait 0.3, save, wait 0.3, back, wait 0.5"


def test_scan_export_receipt_and_free_space_with_the_buttons_only(tmp_path, bundle_dir):
    stick = tmp_path / "STICK"
    stick.mkdir()
    keys = tmp_path / "clinic-keys"
    assert records(tmp_path, "keygen", "--out", str(keys)).returncode == 0
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "clinic.pub").write_bytes((keys / "clinic.pub").read_bytes())
    shots = tmp_path / "shots"
    common = ("--backend", "sim", "--headless", "--bundle", str(bundle_dir), "--usb", str(stick))

    run = skinscan(tmp_path, *common, "--screenshots", str(shots),
                   "--script", f"{SCAN}, {SCAN}, export, wait 0.3")  # fmt: skip
    assert run.returncode == 0, run.stderr
    saved = count(records(tmp_path, "list").stdout)
    assert saved >= 1
    (export,) = stick.glob("skinscan-2*.sealed")
    assert any("usb-done-export-ok" in p.name for p in shots.glob("*.png"))

    # At the clinic: every exported scan opens with the clinic's key; its receipt goes on
    # the stick.
    receipt = stick / "skinscan-receipt-1.json"
    opened = records(tmp_path, "open", str(export), "--clinic-key", str(keys / "clinic.key"),
                     "--receipt", str(receipt))  # fmt: skip
    assert opened.returncode == 0, opened.stderr
    assert count(opened.stdout) == saved

    # Back at the scanner: Free space from the menu (open it, down once, choose).
    run = skinscan(tmp_path, *common, "--script", "menu, wait 0.2, next, capture, wait 0.3")
    assert run.returncode == 0, run.stderr
    assert count(records(tmp_path, "list").stdout) == 0
    (archive,) = stick.glob("skinscan-archive-*.sealed")
    opened = records(tmp_path, "open", str(archive), "--clinic-key", str(keys / "clinic.key"))
    assert opened.returncode == 0 and count(opened.stdout) == saved
