"""The button pin map: one source of truth (the config), docs generated from it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from device.config import load_config

ROOT = Path(__file__).resolve().parents[1]
WIRING_PY = ROOT / "hardware" / "wiring.py"


def _load_wiring():
    spec = importlib.util.spec_from_file_location("skinscan_hardware_wiring", WIRING_PY)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[spec.name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


wiring = _load_wiring()


def test_committed_pinmap_and_diagram_are_generated_from_the_current_config():
    for name, content in wiring.generate().items():
        committed = (ROOT / "hardware" / name).read_text()
        assert committed == content, f"hardware/{name} is stale: run python hardware/wiring.py"


def test_the_generator_reads_the_same_pins_as_the_app(tmp_path):
    app_pins = dict(load_config(None, environ={}, system_path=tmp_path / "none.toml").buttons.pins)
    assert wiring.load_pins() == app_pins
    assert len(app_pins) >= 4


def test_every_configured_button_is_on_the_page_and_the_diagram():
    pins = wiring.load_pins()
    files = wiring.generate()
    for name, bcm in pins.items():
        physical = wiring.BCM_TO_PHYSICAL[bcm]
        assert f"| {name} | GPIO{bcm} | {physical} |" in files["pinmap.md"]
        assert f">{name}</text>" in files["wiring.svg"]
        assert f"GPIO{bcm} = pin {physical};" in files["wiring.svg"]


def test_the_header_table_is_the_standard_40_pin_layout():
    assert sorted(wiring.HEADER) == list(range(1, 41))
    assert sorted(wiring.BCM_TO_PHYSICAL) == list(range(28))
    assert wiring.GROUND_PINS == (6, 9, 14, 20, 25, 30, 34, 39)
    # Spot checks against the Raspberry Pi pinout.
    assert wiring.BCM_TO_PHYSICAL[17] == 11
    assert wiring.BCM_TO_PHYSICAL[3] == 5
    assert wiring.BCM_TO_PHYSICAL[21] == 40


def test_each_button_gets_a_real_ground_pin():
    for button in wiring.build(wiring.load_pins()):
        assert wiring.HEADER[button.ground] == "GND"
        assert abs(button.ground - button.physical) <= 6


@pytest.mark.parametrize(
    ("pins", "message"),
    [
        ({"a": 17, "b": 17}, "both use GPIO17"),
        ({"a": 28}, "not on the header"),
        ({"a": 0}, "HAT ID EEPROM"),
        ({"a": "17"}, "expected a BCM GPIO number"),
        ({"a": True}, "expected a BCM GPIO number"),
    ],
)
def test_a_bad_pin_table_is_refused_with_the_key_named(pins, message):
    with pytest.raises(wiring.PinMapError, match=message):
        wiring.build(pins)


def test_check_mode_fails_on_a_stale_file_and_passes_after_regeneration(tmp_path):
    script = [sys.executable, str(WIRING_PY), "--out-dir", str(tmp_path)]
    stale = subprocess.run([*script, "--check"], capture_output=True, text=True)
    assert stale.returncode == 1
    assert "stale" in stale.stderr
    subprocess.run(script, check=True, capture_output=True)
    assert subprocess.run([*script, "--check"], capture_output=True).returncode == 0


def test_a_moved_button_changes_the_generated_docs(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("[buttons.pins]\ncapture = 5\npower = 3\n")
    files = wiring.generate(config)
    assert "| capture | GPIO5 | 29 |" in files["pinmap.md"]
    assert "GPIO17" not in files["pinmap.md"].split("| --- |")[-1].split("![")[0]
