"""End-to-end in simulation: scripted headless sessions on phantoms and real HAM10000 images.

Each test runs the real App (real controller, renderer, quality gate, LiteRT
analyzer on the tiny test bundle) with the simulated camera, scripted buttons
and the headless display, then checks the Screens it showed, the PNGs it wrote
and the records it saved.
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import cv2
import numpy as np
import pytest
from app_fakes import FillableStore, kinds, make_app
from bundle_factory import make_bundle

from device.app.systemd import Notifier
from device.labels import CLASS_CODES
from device.ui.render import TIER_COLOURS
from device.ui.screens import ErrorScreen, HistoryScreen, ResultScreen, RetakeScreen


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundle") / "bundle")


@pytest.fixture(scope="module")
def calibration(bundle_dir) -> dict:
    return json.loads((bundle_dir / "manifest.json").read_text())["calibration"]


def screens_of(app, cls):
    return [s for s in app.screens_shown if isinstance(s, cls)]


def check_result(screen: ResultScreen, calibration: dict) -> None:
    codes = [r.code for r in screen.top3]
    assert len(codes) == 3 and set(codes) <= set(CLASS_CODES)
    probabilities = [r.probability for r in screen.top3]
    assert all(0.0 <= p <= 1.0 for p in probabilities)
    assert sum(probabilities) <= 1.0 + 1e-6
    assert probabilities == sorted(probabilities, reverse=True)
    assert 0.0 <= screen.p_malignant <= 1.0 + 1e-6
    assert screen.referral_threshold == pytest.approx(calibration["referral_threshold"])
    if screen.p_malignant >= calibration["referral_threshold"]:
        expected = "refer"
    elif probabilities[0] < calibration["uncertainty_threshold"]:
        expected = "uncertain"
    else:
        expected = "monitor"
    assert screen.risk_tier == expected
    assert screen.action in ("Refer to a clinician", "Monitor", "Uncertain — retake or refer")
    assert screen.notice == "Screening aid — not a diagnosis"


def png(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    assert image is not None, path
    return image[..., ::-1]


def test_scripted_session_on_phantoms(tmp_path, bundle_dir, calibration):
    store = FillableStore()
    app = make_app(
        tmp_path, "wait 0.2, capture, toggle, save, next, back", bundle_dir=bundle_dir, store=store
    )
    assert app.run() == 0
    expected = ["analyzing", "preview", "analyzing", "result", "history"]
    assert kinds(app.screens_shown)[:5] == expected

    results = screens_of(app, ResultScreen)
    check_result(results[0], calibration)
    assert results[0].show_heatmap and results[0].overlay is not None
    assert any(not r.show_heatmap for r in results)
    assert results[-1].is_saved

    # The record in the store is the scan on screen.
    records = store.history()
    assert len(records) == 1
    assert records[0].label == results[0].top3[0].code
    assert records[0].risk_tier == results[0].risk_tier
    assert records[0].p_malignant == pytest.approx(results[0].p_malignant)
    history = screens_of(app, HistoryScreen)[-1]
    assert history.total == 1 and history.result.top3[0].code == records[0].label

    # PNG screenshots: one per new screen, at the display size, heatmap toggle visible.
    shots = sorted((tmp_path / "screens").glob("*.png"))
    names = [p.name for p in shots]
    assert any("result-scan1-heatmap" in n for n in names)
    heat = png(next(p for p in shots if "result-scan1-heatmap" in p.name))
    photo = png(next(p for p in shots if "result-scan1-photo" in p.name))
    assert heat.shape == (320, 480, 3)
    # Only the photo area changes when the heatmap is toggled.
    changed = np.any(heat != photo, axis=2)
    _ys, xs = np.nonzero(changed)
    assert changed.sum() > 500
    assert xs.max() < 480 // 2 + 20
    # The risk banner is drawn in the tier's colour.
    banner_colour = TIER_COLOURS[results[0].risk_tier][0]
    distance = np.abs(heat[30:80, 260:470].astype(int) - banner_colour).sum(axis=2)
    assert (distance < 30).mean() > 0.3
    assert any("history" in n for n in names)

    timing = app.timings[0]
    assert timing.outcome == "result"
    assert 0 < timing.inference < timing.total
    assert timing.render > 0


def test_session_on_real_ham10000_images(tmp_path, bundle_dir, calibration, ham_dir):
    folder = tmp_path / "images"
    folder.mkdir()
    for path in sorted((ham_dir / "images").glob("*.jpg"))[:3]:
        shutil.copy(path, folder / path.name)
    store = FillableStore()
    script = "capture, save, back, capture, save, back, capture, save, toggle, next"
    app = make_app(tmp_path, script, bundle_dir=bundle_dir, source=folder, store=store)
    assert app.run() == 0
    results = screens_of(app, ResultScreen)
    retakes = screens_of(app, RetakeScreen)
    assert results, f"no image passed the quality gate: {[r.reasons for r in retakes]}"
    for screen in results:
        check_result(screen, calibration)
    saved = store.history()
    assert 1 <= len(saved) <= 3
    assert all(r.image.shape == (352, 352, 3) for r in saved)
    assert all(r.heatmap is not None and r.heatmap.shape == r.image.shape for r in saved)
    assert screens_of(app, HistoryScreen)[-1].total == len(saved)


@pytest.mark.parametrize(
    ("fault", "reason"), [("blur", "blurred"), ("black", "too dark")], ids=["blur", "black"]
)
def test_bad_frame_gives_retake_not_a_diagnosis(tmp_path, bundle_dir, fault, reason):
    store = FillableStore()
    app = make_app(tmp_path, f"fault {fault}, capture, save", bundle_dir=bundle_dir, store=store)
    app.run()
    assert not screens_of(app, ResultScreen)
    retake = screens_of(app, RetakeScreen)[-1]
    assert any(reason in r for r in retake.reasons)
    assert store.history() == []
    assert any("retake" in p.name for p in (tmp_path / "screens").glob("*.png"))


def test_camera_exception_shows_error_then_recovers(tmp_path, bundle_dir):
    app = make_app(tmp_path, "wait 0.2, fault exception, wait 0.6, capture", bundle_dir=bundle_dir)
    app.run()
    sequence = kinds(app.screens_shown)
    assert "error" in sequence
    error = screens_of(app, ErrorScreen)[0]
    assert error.problem == "camera" and error.retrying
    after = sequence[sequence.index("error") + 1 :]
    assert after[:1] == ["preview"]
    assert "result" in after


def test_disconnected_camera_waits_for_reconnect(tmp_path, bundle_dir):
    script = "wait 0.2, fault disconnect, wait 0.5, capture, fault reconnect, wait 0.5"
    app = make_app(tmp_path, script, bundle_dir=bundle_dir)
    app.run()
    sequence = kinds(app.screens_shown)
    assert sequence[-2:] == ["error", "preview"]
    assert not screens_of(app, ResultScreen)  # capture did nothing while disconnected


def test_invalid_bundle_shows_error_and_keeps_running(tmp_path, bundle_dir):
    broken = tmp_path / "broken"
    shutil.copytree(bundle_dir, broken)
    data = bytearray((broken / "model.tflite").read_bytes())
    data[-100] ^= 0xFF
    (broken / "model.tflite").write_bytes(bytes(data))
    app = make_app(tmp_path, "capture, wait 0.3, capture", bundle_dir=broken)
    assert app.run() == 0
    errors = screens_of(app, ErrorScreen)
    assert errors and all(e.problem == "bundle" for e in errors)
    assert "model.tflite" in errors[0].detail
    assert not screens_of(app, ResultScreen)
    assert app.frames > 3  # the loop kept running
    assert any("error-bundle" in p.name for p in (tmp_path / "screens").glob("*.png"))


def test_missing_bundle_or_crashing_loader_is_an_error_screen(tmp_path):
    app = make_app(tmp_path, "capture", bundle_dir=tmp_path / "absent")
    assert app.run() == 0
    assert screens_of(app, ErrorScreen)[0].problem == "bundle"

    def explode():
        raise RuntimeError("interpreter exploded")

    app = make_app(tmp_path / "2", "capture", bundle_dir=None, load_analyzer=explode)
    assert app.run() == 0
    assert "interpreter exploded" in screens_of(app, ErrorScreen)[0].detail


def test_bundle_fixed_while_running_is_picked_up_on_retry(tmp_path, bundle_dir):
    target = tmp_path / "bundle"
    app = make_app(tmp_path, "wait 0.2, capture, wait 0.2, capture", bundle_dir=target)
    # Install the bundle after start-up, as a maintainer would, and retry with Capture.
    original = app.load_analyzer
    calls = []

    def load():
        calls.append(1)
        if len(calls) == 2:
            shutil.copytree(bundle_dir, target)
        return original()

    app.load_analyzer = load
    app.run()
    sequence = kinds(app.screens_shown)
    assert sequence[sequence.index("error") + 1 :][:1] == ["preview"]
    assert "result" in sequence


def test_disk_full_shows_error_and_result_survives(tmp_path, bundle_dir):
    store = FillableStore()
    store.fill_disk()
    app = make_app(tmp_path, "capture, save, back", bundle_dir=bundle_dir, store=store)
    app.run()
    error = screens_of(app, ErrorScreen)[-1]
    assert error.problem == "disk_full" and "NOT saved" in error.title
    last = app.screens_shown[-1]
    assert isinstance(last, ResultScreen) and not last.is_saved
    assert store.history() == []


def test_store_notice_is_shown_at_start(tmp_path, bundle_dir):
    store = FillableStore()

    class Note:
        message = "Scans can NOT be saved: /var/lib/skinscan is read-only"

    store.notices = [Note()]
    app = make_app(tmp_path, "capture", bundle_dir=bundle_dir, store=store)
    app.run()
    assert any("read-only" in e.detail for e in screens_of(app, ErrorScreen))


def test_confirmed_shutdown_closes_everything_then_powers_off(tmp_path, bundle_dir):
    order: list[str] = []
    store = FillableStore()
    app = make_app(tmp_path, "shutdown, capture", bundle_dir=bundle_dir, store=store)
    app.state = type(app.state)(poweroff=True)
    original_close = app.display.close

    def close_display():
        order.append("display closed")
        original_close()

    app.display.close = close_display

    def run_command(command, check=False):
        order.append(" ".join(command))

        class Done:
            returncode = 0

        return Done()

    app.run_command = run_command
    assert app.run() == 0
    assert order == ["display closed", "systemctl poweroff"]
    assert store.closed and not app.camera.is_open


def test_failed_poweroff_command_exits_non_zero(tmp_path, bundle_dir):
    app = make_app(tmp_path, "shutdown, shutdown", bundle_dir=bundle_dir)
    app.state = type(app.state)(poweroff=True)
    app.shutdown_command = ("/nonexistent/poweroff",)
    assert app.run() == 1


def test_systemd_ready_watchdog_and_stopping(tmp_path, bundle_dir):
    path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(2)
    try:
        ticks = iter(range(0, 10_000, 10))  # each look at the clock is 10 s later
        notifier = Notifier(
            environ={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "30000000"},
            clock=lambda: float(next(ticks)),
        )
        app = make_app(tmp_path, "capture, back", bundle_dir=bundle_dir, notifier=notifier)
        app.run()
        messages = []
        server.setblocking(False)
        while True:
            try:
                messages.append(server.recv(4096).decode())
            except BlockingIOError:
                break
    finally:
        server.close()
    assert messages[0].startswith("READY=1")
    # WatchdogSec=30 -> a ping is due every 15 s; the clock moved 10 s per turn.
    assert messages.count("WATCHDOG=1") == (app.frames + 1) // 2
    assert app.frames >= 3
    assert messages[-1] == "STOPPING=1"


def test_history_shows_the_saved_heatmap_with_its_legend(tmp_path, bundle_dir):
    app = make_app(tmp_path, "capture, save, next", bundle_dir=bundle_dir)
    app.run()
    shown = screens_of(app, HistoryScreen)[-1].result
    assert shown.show_heatmap and shown.overlay is not None
    assert shown.legend is not None and len(shown.legend) > 10
