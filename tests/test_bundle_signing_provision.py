"""``setup.sh --bundle-key``: the scanner trusts a signing key, never an export key.

Runs provision.sh's ``install_bundle_keys`` against a scratch folder standing for
/etc/skinscan (it needs root to hand the files to root, as on a Pi).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from device.bundles import generate_signing_keypair, key_id, load_trusted_keys
from device.bundles.keys import load_verify_key
from device.records.export import generate_clinic_keypair

ROOT = Path(__file__).resolve().parents[1]
PROVISION = ROOT / "hardware" / "pi" / "provision.sh"
VENV = ROOT / ".venv"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not (VENV / "bin" / "python").exists(),
    reason="needs root (files go to root, as on a Pi) and the project's .venv",
)


def install_bundle_keys(etc: Path, *keys: Path) -> subprocess.CompletedProcess[str]:
    """provision.sh's install_bundle_keys with ETC_DIR=etc (the script minus its main call)."""
    script = PROVISION.read_text().rsplit('main "$@"', 1)[0]
    code = f'{script}\nETC_DIR="$1"; VENV="$2"; shift 2; install_bundle_keys "$@"\n'
    return subprocess.run(
        ["bash", "-c", code, "provision", str(etc), str(VENV), *map(str, keys)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def test_a_signing_key_is_installed_under_its_id_and_trusted_by_the_default_config(tmp_path):
    _, public = generate_signing_keypair(tmp_path / "k")
    etc = tmp_path / "etc"
    done = install_bundle_keys(etc, public)
    assert done.returncode == 0, done.stderr
    kid = key_id(load_verify_key(public))
    installed = etc / "bundle-keys" / f"{kid}.pub"
    assert installed.read_bytes() == public.read_bytes()
    assert (installed.stat().st_mode & 0o777, installed.stat().st_uid) == (0o644, 0)
    assert list(load_trusted_keys([etc / "bundle-keys"])) == [kid]
    assert f"trusts the bundle signing key {kid}" in done.stdout
    # Idempotent: a second run changes nothing.
    assert install_bundle_keys(etc, public).returncode == 0
    assert [p.name for p in (etc / "bundle-keys").iterdir()] == [f"{kid}.pub"]


def test_an_export_key_is_refused_and_nothing_is_trusted(tmp_path):
    _, export_public = generate_clinic_keypair(tmp_path / "export")
    etc = tmp_path / "etc"
    done = install_bundle_keys(etc, export_public)
    assert done.returncode != 0
    assert "not a bundle signing public key" in done.stderr
    assert "EXPORT key" in done.stderr
    assert not (etc / "bundle-keys").exists()


def test_without_a_key_it_warns_that_bundles_cannot_be_installed(tmp_path):
    done = install_bundle_keys(tmp_path / "etc")
    assert done.returncode == 0
    assert "cannot be installed from USB" in done.stderr
