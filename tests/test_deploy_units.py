"""The systemd units: they verify, they are hardened, and the power-off path fits together."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from device.config import load_config

ROOT = Path(__file__).resolve().parents[1]
SYSTEMD = ROOT / "systemd"
UNITS = ("skinscan.service", "skinscan-poweroff.service", "skinscan-poweroff.path")
MAX_EXPOSURE = 2.0

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def directives(unit: str) -> dict[str, list[str]]:
    """Key -> every value it is given, in order (systemd allows repeats)."""
    values: dict[str, list[str]] = {}
    for line in (SYSTEMD / unit).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        values.setdefault(key.strip(), []).append(value.strip())
    return values


def one(unit: str, key: str) -> str:
    values = directives(unit).get(key)
    assert values is not None, f"{unit} lacks {key}="
    return values[-1]


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory) -> Path:
    """A root with the host's systemd units, the project's units and stand-in binaries."""
    root = tmp_path_factory.mktemp("root")
    host_units = Path("/usr/lib/systemd/system")
    if not host_units.is_dir():
        host_units = Path("/lib/systemd/system")
    shutil.copytree(host_units, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for unit in UNITS:
        shutil.copy(SYSTEMD / unit, root / "etc/systemd/system" / unit)
    for exe in ("opt/skinscan/venv/bin/skinscan", "usr/bin/rm", "usr/bin/systemctl"):
        path = root / exe
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    return root


@needs_systemd_analyze
def test_systemd_analyze_verify_is_silent(fake_root):
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"--root={fake_root}", *UNITS],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == "", "verify printed warnings:\n" + result.stderr


def exposure(unit: str) -> float:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(SYSTEMD / unit)],
        capture_output=True,
        text=True,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout + result.stderr)
    assert match, result.stdout + result.stderr
    return float(match.group(1))


@needs_systemd_analyze
@pytest.mark.parametrize("unit", ["skinscan.service", "skinscan-poweroff.service"])
def test_offline_security_exposure_is_at_most_2(unit):
    score = exposure(unit)
    print(f"systemd-analyze security --offline=yes {unit}: {score}")
    assert score <= MAX_EXPOSURE


def test_the_service_is_a_watched_notify_service_that_gives_up_on_a_crash_loop():
    assert one("skinscan.service", "Type") == "notify"
    assert int(one("skinscan.service", "WatchdogSec")) > 0
    assert one("skinscan.service", "Restart") == "on-failure"
    assert int(one("skinscan.service", "StartLimitBurst")) >= 1
    assert int(one("skinscan.service", "StartLimitIntervalSec")) > 0
    assert one("skinscan.service", "User") == "skinscan"


def test_the_service_has_the_hardening_the_issue_lists():
    expected = {
        "ProtectSystem": "strict",
        "ReadWritePaths": "/var/lib/skinscan",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "DevicePolicy": "closed",
        "RestrictAddressFamilies": "AF_UNIX",
    }
    for key, value in expected.items():
        assert one("skinscan.service", key) == value, key


def test_only_camera_gpio_screen_and_input_devices_are_allowed():
    allowed = {v.split()[0] for v in directives("skinscan.service")["DeviceAllow"]}
    # video4linux: /dev/video*; media: /dev/media*; dma_heap: /dev/dma_heap/*;
    # drm: /dev/dri/*; gpiochip: /dev/gpiochip*; input: /dev/input/*; i2c: /dev/i2c-* (the
    # UPS's battery fuel gauge).
    assert allowed == {
        "char-video4linux",
        "char-media",
        "char-dma_heap",
        "char-drm",
        "char-gpiochip",
        "char-input",
        "char-i2c",
    }


def test_the_power_off_request_file_is_the_same_in_every_part(tmp_path):
    request = one("skinscan-poweroff.path", "PathExists")
    assert one("skinscan-poweroff.path", "Unit") == "skinscan-poweroff.service"
    # The app may create it: it lives in the service's own runtime directory...
    runtime_dir = "/run/" + one("skinscan.service", "RuntimeDirectory")
    assert Path(request).parent == Path(runtime_dir)
    # ...the root unit consumes it before powering off...
    starts = directives("skinscan-poweroff.service")["ExecStart"]
    assert starts[0] == f"/usr/bin/rm -f {request}"
    assert "poweroff" in starts[-1]
    # ...and the config provision.sh writes makes the app's shutdown create it.
    rendered = subprocess.run(
        [
            str(ROOT / "hardware/pi/provision.sh"),
            "render-config",
            str(ROOT / "device/config/default.toml"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    config_file = tmp_path / "config.toml"
    config_file.write_text(rendered)
    config = load_config(config_file, environ={})
    assert tuple(config.system.shutdown_command) == ("/usr/bin/touch", request)


def test_the_unprivileged_service_never_runs_as_root_and_the_root_unit_is_confined():
    assert "User" not in directives("skinscan-poweroff.service")
    poweroff = directives("skinscan-poweroff.service")
    assert poweroff["ProtectSystem"] == ["strict"]
    assert poweroff["ReadWritePaths"] == ["/run/skinscan"]
    assert poweroff["CapabilityBoundingSet"] == ["CAP_DAC_OVERRIDE"]
