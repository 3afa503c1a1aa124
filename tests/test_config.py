"""Device config: shipped defaults, one override file, env/CLI backend, precise errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from device.config import (
    DEFAULT_CONFIG_PATH,
    load_config,
    read_toml,
    resolve_backend,
    validate,
)
from device.errors import ConfigError

NO_SYSTEM = Path("/nonexistent/skinscan/config.toml")


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load(path=None, **kw):
    kw.setdefault("environ", {})
    kw.setdefault("system_path", NO_SYSTEM)
    return load_config(path, **kw)


def test_shipped_defaults_are_valid_and_match_the_models():
    config = load()
    assert config.backend == "auto"
    assert config.buttons.pins.capture == 5
    assert config.buttons.pins.power == 3
    # The TOML file is the source of truth for pins: every button in it, nothing else.
    pins = read_toml(DEFAULT_CONFIG_PATH)["buttons"]["pins"]
    assert pins == dict(config.buttons.pins.items())
    assert len(set(pins.values())) == len(pins)


def test_override_file_merges_key_by_key(tmp_path):
    path = write(tmp_path, "[camera]\nretry_s = 5\n[buttons.pins]\ncapture = 5\n")
    config = load(path)
    assert config.camera.retry_s == 5
    assert config.camera.preview_size == (640, 480)  # untouched default
    assert config.buttons.pins.capture == 5
    assert config.buttons.pins.toggle == 27


def test_system_file_is_used_when_no_config_flag(tmp_path):
    system = write(tmp_path, 'backend = "usb"\n', "system.toml")
    assert load(system_path=system).backend == "usb"
    flag = write(tmp_path, 'backend = "sim"\n', "flag.toml")
    assert load(flag, system_path=system).backend == "sim"


def test_unknown_key_names_its_dotted_path_and_line(tmp_path):
    path = write(tmp_path, "[camera]\nretry_s = 1\npreveiw_size = [640, 480]\n")
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert "unknown key 'camera.preveiw_size'" in message
    assert "line 3" in message


def test_unknown_button_is_an_unknown_key(tmp_path):
    path = write(tmp_path, "[buttons.pins]\nzoom = 5\n")
    with pytest.raises(ConfigError, match=r"unknown key 'buttons\.pins\.zoom'"):
        load(path)


def test_invalid_value_names_key_and_allowed_range(tmp_path):
    path = write(tmp_path, "[camera]\nretry_s = 100\n")
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert "'camera.retry_s' = 100" in message
    assert "≥ 0.1" in message and "≤ 60" in message


def test_pin_out_of_range_names_the_pin(tmp_path):
    path = write(tmp_path, "[buttons.pins]\nsave = 40\n")
    with pytest.raises(ConfigError, match=r"buttons\.pins\.save.*≤ 27"):
        load(path)


def test_two_buttons_on_one_pin_is_an_error(tmp_path):
    path = write(tmp_path, "[buttons.pins]\nsave = 5\n")
    with pytest.raises(ConfigError, match="capture and save share BCM pin 5"):
        load(path)


def test_choice_lists_the_allowed_values(tmp_path):
    path = write(tmp_path, '[display]\nfullscreen = "maybe"\n')
    with pytest.raises(ConfigError, match=r"display\.fullscreen.*'auto', 'yes' or 'no'"):
        load(path)


def test_display_size_must_be_legible(tmp_path):
    path = write(tmp_path, "[display]\nsize = [100, 80]\n")
    with pytest.raises(ConfigError, match=r"display\.size.*between 240 and 4096"):
        load(path)


def test_environment_overrides_backend_and_flag_overrides_environment(tmp_path):
    path = write(tmp_path, 'backend = "usb"\n')
    assert load(path, environ={"SKINSCAN_BACKEND": "sim"}).backend == "sim"
    assert load(path, environ={"SKINSCAN_BACKEND": "sim"}, backend="pi").backend == "pi"


def test_bad_environment_backend_is_named():
    with pytest.raises(ConfigError, match="SKINSCAN_BACKEND='laptop'"):
        load(environ={"SKINSCAN_BACKEND": "laptop"})


def test_missing_and_malformed_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(write(tmp_path, "[camera\nretry_s = 1\n"))


def test_shutdown_command_must_not_be_empty():
    with pytest.raises(ConfigError, match=r"system\.shutdown_command"):
        validate({"system": {"shutdown_command": []}})


def test_auto_backend_resolves_by_machine():
    config = load()
    assert resolve_backend(config, on_pi=True) == "pi"
    assert resolve_backend(config, on_pi=False) == "sim"
    assert resolve_backend(load(backend="usb"), on_pi=True) == "usb"


def test_quality_section_becomes_thresholds(tmp_path):
    path = write(tmp_path, "[quality]\nmin_sharpness = 0.3\nmin_colourfulness = 2.5\n")
    thresholds = load(path).quality_thresholds()
    assert thresholds.min_sharpness == 0.3
    assert thresholds.min_colourfulness == 2.5
    assert thresholds.max_dark_fraction == 0.35


def test_fixed_white_balance_gains_are_read_and_checked(tmp_path):
    assert load().camera.colour_gains is None  # auto white balance unless set
    config = load(write(tmp_path, "[camera]\ncolour_gains = [1.9, 1.7]\n"))
    assert config.camera.colour_gains == (1.9, 1.7)
    for bad in ("[0.0, 1.7]", "[1.9]", "[1.9, 40.0]"):
        with pytest.raises(ConfigError, match=r"camera\.colour_gains"):
            load(write(tmp_path, f"[camera]\ncolour_gains = {bad}\n", "bad.toml"))


@pytest.mark.parametrize(
    "section, key, value",
    [
        ("display", "max_fps", "true"),
        ("display", "max_fps", "30.0"),
        ("display", "size", "[800, true]"),
        ("camera", "usb_index", '"0"'),
        ("camera", "retry_s", "false"),
        ("display", "heatmap_alpha", '"0.5"'),
        ("buttons.pins", "capture", "true"),
    ],
)
def test_values_of_the_wrong_type_are_refused_not_coerced(tmp_path, section, key, value):
    path = write(tmp_path, f"[{section}]\n{key} = {value}\n")
    with pytest.raises(ConfigError, match=rf"{section}\.{key}.*(line 2)"):
        load(path)


def test_whole_numbers_are_still_fine_for_decimal_settings(tmp_path):
    config = load(write(tmp_path, "[camera]\nretry_s = 5\ncolour_gains = [2, 1.5]\n"))
    assert config.camera.retry_s == 5.0
    assert config.camera.colour_gains == (2.0, 1.5)


@pytest.mark.parametrize("bad", ["[1.9]", "[1.9, 1.7, 1.0]", "1.9", '["a", "b"]', "[true, 1.0]"])
def test_colour_gains_of_the_wrong_shape_say_what_is_needed(tmp_path, bad):
    path = write(tmp_path, f"[camera]\ncolour_gains = {bad}\n")
    with pytest.raises(ConfigError) as caught:
        load(path)
    message = str(caught.value)
    assert "camera.colour_gains needs two numbers [red, blue]" in message
    assert "Field required" not in message
