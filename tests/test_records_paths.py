"""Where the records live: environment, then config, then the platform default."""

from __future__ import annotations

from pathlib import Path

from device.records.paths import (
    PI_DATA_DIR,
    is_raspberry_pi,
    resolve_clinic_public_key,
    resolve_data_dir,
    resolve_key_file,
)


def _model(tmp_path: Path, text: bytes | None) -> Path:
    path = tmp_path / "model"
    if text is not None:
        path.write_bytes(text)
    return path


def test_environment_beats_config(tmp_path):
    env = {"SKINSCAN_DATA_DIR": str(tmp_path / "env")}
    assert resolve_data_dir("/cfg", env=env, model_file=_model(tmp_path, None)) == tmp_path / "env"


def test_config_beats_the_platform_default(tmp_path):
    pi = _model(tmp_path, b"Raspberry Pi 5 Model B Rev 1.0\x00")
    assert resolve_data_dir("/srv/scans", env={}, model_file=pi) == Path("/srv/scans")


def test_pi_default(tmp_path):
    pi = _model(tmp_path, b"Raspberry Pi 4 Model B Rev 1.4\x00")
    assert is_raspberry_pi(pi)
    assert resolve_data_dir(None, env={}, model_file=pi) == PI_DATA_DIR
    assert resolve_data_dir("", env={"SKINSCAN_DATA_DIR": ""}, model_file=pi) == PI_DATA_DIR


def test_desktop_default_follows_xdg(tmp_path):
    other = _model(tmp_path, b"Some other board\x00")
    assert not is_raspberry_pi(other)
    assert not is_raspberry_pi(tmp_path / "absent")
    env = {"XDG_DATA_HOME": str(tmp_path / "xdg")}
    assert resolve_data_dir(None, env=env, model_file=other) == tmp_path / "xdg" / "skinscan"
    assert resolve_data_dir(None, env={}, model_file=other) == (
        Path.home() / ".local" / "share" / "skinscan"
    )


def test_key_and_clinic_key_locations(tmp_path):
    assert resolve_key_file(tmp_path, env={}) == tmp_path / "device.key"
    assert resolve_key_file(tmp_path, env={"SKINSCAN_KEY_FILE": "/k/dev.key"}) == Path("/k/dev.key")
    assert resolve_clinic_public_key(tmp_path, env={}) == tmp_path / "clinic.pub"
    env = {"SKINSCAN_CLINIC_PUBLIC_KEY": "/etc/skinscan/clinic.pub"}
    assert resolve_clinic_public_key(tmp_path, env=env) == Path("/etc/skinscan/clinic.pub")
