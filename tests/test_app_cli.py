"""`skinscan run` as a process: scripted runs, clean stops on SIGTERM/Ctrl-C, one-line errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from bundle_factory import make_bundle

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundle") / "bundle")


def environment(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(
        SKINSCAN_DATA_DIR=str(tmp_path / "data"),
        SKINSCAN_BACKEND="",
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    return env


def skinscan(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "device.cli", "run", *args],
        cwd=ROOT,
        env=environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start(tmp_path: Path, argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        argv,
        cwd=ROOT,
        env=environment(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_line(process: subprocess.Popen, text: str, timeout: float = 90) -> list[str]:
    """Read the process output until a line contains ``text``; returns the lines read."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return lines
    process.kill()
    raise AssertionError(f"{text!r} never appeared:\n{''.join(lines)}")


def test_scripted_headless_run_saves_screens_and_records(tmp_path, bundle_dir):
    shots = tmp_path / "shots"
    result = skinscan(
        tmp_path,
        "--backend", "sim",
        "--headless",
        "--bundle", str(bundle_dir),
        "--screenshots", str(shots),
        "--script", "capture, toggle, save, save, next",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in shots.glob("*.png"))
    assert any("result" in n and "heatmap" in n for n in names)
    assert any("result" in n and "photo" in n for n in names)
    assert any("saved" in n for n in names)
    assert any("history" in n for n in names)
    assert f"screens saved to {shots}" in result.stdout
    # The record went to the SQLite store in SKINSCAN_DATA_DIR.
    assert (tmp_path / "data" / "scans.db").is_file()


def test_without_a_display_it_runs_headless_and_says_so(tmp_path, bundle_dir):
    result = skinscan(tmp_path, "--bundle", str(bundle_dir), "--frames", "3")
    assert result.returncode == 0, result.stderr
    assert "no display found" in result.stderr
    assert "running headless" in result.stderr


@pytest.mark.parametrize("screenshots", [False, True], ids=["no-screenshots", "screenshots"])
def test_headless_without_a_script_says_how_to_stop_it_and_where_screens_go(
    tmp_path, bundle_dir, screenshots
):
    """Issue 23: with no display and no script the app shows nothing; it says so, once."""
    shots = tmp_path / "shots"
    argv = [sys.executable, "-m", "device.cli", "run", "--backend", "sim", "--bundle",
            str(bundle_dir), *(["--screenshots", str(shots)] if screenshots else [])]  # fmt: skip
    process = start(tmp_path, argv)
    lines = wait_for_line(process, "SkinScan ready")
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    text = "".join(lines) + output
    assert "running headless" in text
    hints = [line for line in text.splitlines() if "Ctrl-C or SIGTERM" in line]
    assert len(hints) == 1, text
    if screenshots:
        assert str(shots) in hints[0] and "add --screenshots" not in hints[0]
        assert list(shots.glob("*.png")), "no screen was saved"
    else:
        assert "add --screenshots DIR" in hints[0]


def test_a_scripted_headless_run_needs_no_stop_hint(tmp_path, bundle_dir):
    result = skinscan(
        tmp_path,
        "--backend",
        "sim",
        "--headless",
        "--bundle",
        str(bundle_dir),
        "--script",
        "wait 0.1",
    )
    assert result.returncode == 0, result.stderr
    assert "Ctrl-C or SIGTERM" not in result.stdout + result.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_closes_camera_and_screen_cleanly(tmp_path, bundle_dir, sig):
    process = start(
        tmp_path,
        [sys.executable, "-m", "device.cli", "run", "--headless", "--backend", "sim",
         "--bundle", str(bundle_dir)],
    )  # fmt: skip
    wait_for_line(process, "SkinScan ready")
    time.sleep(0.3)
    process.send_signal(sig)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert f"stopping: {sig.name}" in output
    assert "simulated camera closed" in output
    assert "display closed" in output
    assert "SkinScan closed" in output
    assert "Traceback" not in output


def test_sigterm_releases_the_gpio_pins(tmp_path, bundle_dir):
    """The GPIO path under MockFactory, with the same signal handling as `skinscan run`."""
    driver = tmp_path / "driver.py"
    driver.write_text(
        textwrap.dedent(
            f"""
            import logging, sys
            sys.path.insert(0, {str(ROOT / "tests")!r})
            logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
            from gpiozero.pins.mock import MockFactory
            from app_fakes import FillableStore, analyzer_loader
            from device.app.cli import run_with_signals
            from device.app.runner import App
            from device.config import load_config
            from device.hw.buttons_gpio import GpioButtons
            from device.hw.camera_sim import SimCamera
            from device.hw.display import PygameDisplay

            pins = dict(load_config(environ={{}}).buttons.pins.items())
            factory = MockFactory()
            app = App(
                camera=SimCamera(),
                buttons=GpioButtons(pins, pin_factory=factory),
                display=PygameDisplay("headless", (480, 320)),
                store=FillableStore(),
                load_analyzer=analyzer_loader({str(bundle_dir)!r}),
            )
            code = run_with_signals(app)
            # Every pin is free again: claiming them all anew must succeed.
            GpioButtons(pins, pin_factory=factory).close()
            print("pins free", flush=True)
            sys.exit(code)
            """
        )
    )
    process = start(tmp_path, [sys.executable, str(driver)])
    wait_for_line(process, "SkinScan ready")
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "GPIO buttons closed" in output
    assert "pins free" in output


def test_config_error_is_one_clear_line(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[camera]\nretry_s = 1\nbogus = 2\n")
    result = skinscan(tmp_path, "--config", str(config), "--headless", "--frames", "1")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("skinscan run: error: config: unknown key 'camera.bogus'")
    assert "Traceback" not in result.stderr


def test_images_need_the_sim_backend(tmp_path):
    result = skinscan(tmp_path, "--backend", "usb", "--images", str(tmp_path), "--headless")
    assert result.returncode == 2
    assert "--images needs the sim backend" in result.stderr


def test_bad_script_is_reported(tmp_path):
    result = skinscan(tmp_path, "--headless", "--script", "capture, jump")
    assert result.returncode == 2
    assert "script step 2 'jump' is unknown" in result.stderr


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("", "the script is empty"),
        ("session-1.txt", "script file not found: session-1.txt"),
    ],
    ids=["empty", "missing-file"],
)
def test_an_empty_or_missing_script_is_refused_at_once(tmp_path, script, message):
    started = time.monotonic()
    result = skinscan(tmp_path, "--backend", "sim", "--headless", "--script", script, timeout=60)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 50  # refused, not run until the timeout


def test_help_lists_every_script_verb():
    result = subprocess.run(
        [sys.executable, "-m", "device.cli", "run", "--help"],
        cwd=ROOT, env=environment(ROOT / "unused"), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    from device.hw.buttons import BUTTON_EVENTS

    for verb in (*BUTTON_EVENTS, "wait SECONDS", "fault KIND"):
        assert f"\n  {verb} " in result.stdout, verb
    assert "powers off a Pi" in result.stdout
    assert "Scan patient card" in result.stdout


def test_the_patient_card_session_from_the_issue(tmp_path, ham_dir):
    """Issue 22, section 1, exactly: the card, a lesion, save; records list shows the reference.

    The shipped bundle (no --bundle), the sim camera on a folder holding a rendered QR
    card and a HAM10000 image, and the script as the issue writes it.
    """
    from qr_cards import rendered_card, write_rgb

    cards = tmp_path / "cards"
    cards.mkdir()
    write_rgb(cards / "00-card.png", rendered_card("SKS-000142-7F3Q"))
    lesion = sorted((ham_dir / "images").glob("*.jpg"))[0]
    (cards / "01-lesion.jpg").write_bytes(lesion.read_bytes())
    result = skinscan(
        tmp_path, "--backend", "sim", "--headless", "--images", str(cards),
        "--script", "patient, wait 0.5, capture, wait 1, capture, wait 1.5, save, wait 0.5",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "patient card read" in result.stderr
    assert "SKS-000142-7F3Q" not in result.stderr  # the reference stays out of the log
    listed = subprocess.run(
        [sys.executable, "-m", "device.cli", "records", "list"],
        cwd=ROOT, env=environment(tmp_path), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    (row,) = [line for line in listed.stdout.splitlines() if line[:4].isdigit()]
    assert "patient SKS-000142-7F3Q" in row
    assert "1 record(s)" in listed.stdout


def test_a_damaged_database_is_moved_aside_and_the_screen_says_where_until_acknowledged(
    tmp_path, bundle_dir, monkeypatch
):
    """Issue 22 section 2: `truncate -s 10000 scans.db`, then `skinscan run`.

    The app (and only the app, or `records repair`) moves the database aside. The
    screen says so with the old file's full path, and stays until CAPTURE.
    """
    import cv2
    import numpy as np
    from app_fakes import screen_lines

    import device.app.runner as runner_mod
    from device.cli import main
    from device.records.store import SqliteScanStore
    from device.records.testing import make_record
    from device.ui.render import Renderer

    data = tmp_path / "data"
    with SqliteScanStore(data, min_free_bytes=0) as store:
        for seed in range(4):
            store.save(make_record(seed, size=64))
    with open(data / "scans.db", "r+b") as fh:
        fh.truncate(10000)

    apps: list = []

    class KeepingApp(runner_mod.App):
        def __init__(self, **kwargs) -> None:
            super().__init__(**kwargs, keep_screens=1000)
            apps.append(self)

    monkeypatch.setattr(runner_mod, "App", KeepingApp)
    for name, value in environment(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    shots = tmp_path / "shots"
    code = main(
        [
            "run", "--backend", "sim", "--headless", "--bundle", str(bundle_dir),
            "--screenshots", str(shots),
            "--script", "wait 0.5, next, wait 0.3, toggle, wait 0.3, capture, wait 0.3",
        ]
    )  # fmt: skip
    assert code == 0
    (app,) = apps
    screens = list(app.screens_shown)
    notices = [i for i, s in enumerate(screens) if s.kind == "error" and s.problem == "notice"]
    assert len(notices) == 1, [s.kind for s in screens]
    notice = screens[notices[0]]
    old = Path(notice.path)
    assert old.is_file() and old.stat().st_size == 10000  # the old file is where it says
    assert old.name == "scans.db" and old.parent.parent == data
    assert old.parent.name.startswith("corrupt-")
    assert "damaged" in notice.title
    # NEXT and TOGGLE did not dismiss it; CAPTURE did, to the live view.
    assert [s.kind for s in screens[notices[0] + 1 :]][:1] == ["preview"]
    # What the screenshot shows: the whole path, on every screen size.
    for size in [(320, 240), (480, 320), (800, 480)]:
        lines = screen_lines(notice, size)
        assert str(old) in "".join(lines), (size, lines)
        assert "Scan database was damaged" in " ".join(lines)
    (png,) = shots.glob("*notice*.png")
    renderer = Renderer(app.display.size, app.buttons.labels)
    from device.ui.render import surface_to_array

    expected = surface_to_array(renderer.render(notice))
    assert np.array_equal(cv2.imread(str(png))[..., ::-1], expected)
    # A new, empty database was started, and it works.
    with SqliteScanStore(data) as store:
        assert len(store) == 0


def test_the_top_level_help_names_every_records_action():
    import argparse
    import re

    from device.cli import SUBCOMMANDS
    from device.records import cli as records_cli

    parser = argparse.ArgumentParser()
    records_cli.configure(parser)
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    help_line = SUBCOMMANDS["records"][1]
    assert len(sub.choices) >= 8
    for action in sub.choices:
        assert re.search(rf"\b{action}\b", help_line), action
