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
from app_fakes import FillableStore, kinds, make_app, screen_lines
from bundle_factory import make_bundle

from device.app.systemd import Notifier
from device.labels import CLASS_CODES
from device.ui.render import TIER_COLOURS
from device.ui.screens import (
    CardScreen,
    CompareScreen,
    ErrorScreen,
    HistoryScreen,
    PreviewScreen,
    ResultScreen,
    RetakeScreen,
)


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
        tmp_path,
        "wait 0.2, capture, toggle, save, save, next, back",
        bundle_dir=bundle_dir,
        store=store,
    )
    assert app.run() == 0
    # SAVE without a patient asks first (an "error"-kind notice screen); SAVE again saves.
    expected = ["analyzing", "preview", "analyzing", "result", "error", "result", "history"]
    assert kinds(app.screens_shown)[:7] == expected
    question = screens_of(app, ErrorScreen)[0]
    assert question.title == "No patient card read — save without a patient?"

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
    script = (
        "capture, save, save, back, capture, save, save, back, capture, save, save, toggle, next"
    )
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
    app = make_app(tmp_path, "capture, save, save, back", bundle_dir=bundle_dir, store=store)
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
    app = make_app(tmp_path, "capture, save, save, next", bundle_dir=bundle_dir)
    app.run()
    shown = screens_of(app, HistoryScreen)[-1].result
    assert shown.show_heatmap and shown.overlay is not None
    assert shown.legend is not None and len(shown.legend) > 10


# ---- issue 22: the patient card, and frames and files that fooled the device ------------------

REF = "SKS-000142-7F3Q"


def _lesions(ham_dir: Path, count: int) -> list[Path]:
    return sorted((ham_dir / "images").glob("*.jpg"))[:count]


def test_patient_card_site_scan_save_history_and_follow_up(tmp_path, bundle_dir, ham_dir):
    from qr_cards import photographed_card, rendered_card, write_rgb

    folder = tmp_path / "images"
    folder.mkdir()
    lesion_a, lesion_b = _lesions(ham_dir, 2)
    skin = cv2.imread(str(lesion_a))[..., ::-1]
    write_rgb(folder / "00-name-card.png", rendered_card("JOHN SMITH 1970"))
    shutil.copy(lesion_b, folder / "01-not-a-card.jpg")  # a lesion photo, no QR code
    write_rgb(folder / "02-card.jpg", photographed_card(REF, skin))
    shutil.copy(lesion_a, folder / "03-lesion.jpg")
    shutil.copy(lesion_b, folder / "04-lesion.jpg")
    store = FillableStore()
    script = (
        "patient, wait 0.2, capture, wait 0.2, capture, wait 0.2, capture, wait 0.2, "
        "toggle, next, next, next, next, capture, capture, wait 0.2, "  # back, lesion 1
        "capture, wait 0.3, save, wait 0.2, capture, wait 0.2, capture, wait 0.3, save, "
        "next, wait 0.2, capture, wait 0.2, back, wait 0.1"
    )
    app = make_app(tmp_path, script, bundle_dir=bundle_dir, source=folder, store=store)
    assert app.run() == 0

    cards = screens_of(app, CardScreen)
    problems = [c.problem for c in cards if c.problem]
    assert "looks like a name" in problems[0] and "JOHN" not in problems[0]
    assert "No QR code found" in problems[1]

    # Two scans saved for the patient at the back, in the records themselves.
    records = store.history()
    assert [(r.patient_ref, r.body_site) for r in records] == [(REF, "back"), (REF, "back")]
    assert store.history(patient_ref=REF, body_site="back") == records

    # Every screen after the card showed the patient.
    after = list(app.screens_shown)[next(i for i, s in enumerate(app.screens_shown) if s.patient) :]
    assert all(s.patient.startswith(f"Patient {REF}") for s in after)
    assert any(s.patient == f"Patient {REF} · back, lesion 1" for s in after)

    # History was this patient's, and the two scans of the back were side by side.
    history = screens_of(app, HistoryScreen)[-1]
    assert history.scope == f"Patient {REF}" and history.total == 2 and history.earlier == 1
    (compare,) = {s.snapshot_key: s for s in screens_of(app, CompareScreen)}.values()
    assert compare.site == "back, lesion 1"
    # Newest on the right: the scans as saved, in order.
    assert compare.later.p_malignant == pytest.approx(records[0].p_malignant)
    assert compare.earlier.p_malignant == pytest.approx(records[1].p_malignant)
    assert compare.change.startswith("same day · P(malignant)")
    names = [p.name for p in sorted((tmp_path / "screens").glob("*.png"))]
    assert any(n.split("-", 1)[1].startswith("card") for n in names)
    assert any("compare" in n for n in names)


@pytest.mark.parametrize("size", [(20, 15), (1, 1)], ids=["20x15", "1x1"])
def test_a_tiny_frame_is_a_retake_never_an_exit(tmp_path, bundle_dir, size):
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "a-tiny.png"), np.full((size[1], size[0], 3), 128, np.uint8))
    app = make_app(tmp_path, "wait 0.2, capture, wait 0.3", bundle_dir=bundle_dir, source=folder)
    assert app.run() == 0
    (retake,) = {s.snapshot_key: s for s in screens_of(app, RetakeScreen)}.values()
    assert f"{size[0]}x{size[1]} is too small" in retake.reasons[0]
    assert app.stop_reason == "script finished"


def test_unreadable_image_files_are_skipped_with_a_notice(tmp_path, bundle_dir, ham_dir):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a-notes.jpg").write_text("not a photo")
    (folder / "b-empty.jpg").write_bytes(b"")
    data = (_lesions(ham_dir, 1)[0]).read_bytes()
    (folder / "c-truncated.jpg").write_bytes(data[: len(data) // 2])
    shutil.copy(_lesions(ham_dir, 1)[0], folder / "d-lesion.jpg")
    app = make_app(tmp_path, "wait 0.3, capture, wait 0.3", bundle_dir=bundle_dir, source=folder)
    assert app.run() == 0
    assert not [s for s in screens_of(app, ErrorScreen) if s.problem == "camera"]
    warnings = [s.warning for s in screens_of(app, PreviewScreen) if s.warning]
    for name in ("a-notes.jpg", "b-empty.jpg", "c-truncated.jpg"):
        assert f"unreadable image file {name}" in warnings[0]
    assert screens_of(app, ResultScreen)  # the next readable image was analysed


# ---- issue 22 section 2 on the screen: a damaged record, a full disk --------------------------

SMALL_TO_LARGE = [(320, 240), (480, 320), (800, 480)]


def _flip_a_bit_in_one_row(data: Path, marker: str) -> None:
    """Damage one record as tests/test_records_damage.py does: one bit of its sealed row."""
    from device.records.paths import DB_NAME

    db = data / DB_NAME
    blob = bytearray(db.read_bytes())
    at = blob.find(marker.encode())
    assert at > 0
    blob[at + 7] ^= 0x02
    db.write_bytes(bytes(blob))


def _store_with_one_damaged_record(data: Path, others: tuple[int, ...]) -> str:
    from device.records.store import SqliteScanStore
    from device.records.testing import make_record

    victim = make_record(2, size=48, bundle_id="bundle-AAAA-victim")
    with SqliteScanStore(data, min_free_bytes=0) as store:
        for seed in others:
            store.save(make_record(seed, size=48))
        store.save(victim)
    _flip_a_bit_in_one_row(data, "bundle-AAAA-victim")
    return victim.scan_id


def test_history_shows_the_other_scans_and_says_one_could_not_be_read(tmp_path, bundle_dir):
    from device.records.store import SqliteScanStore

    data = tmp_path / "data"
    victim = _store_with_one_damaged_record(data, others=(1, 3, 4))
    store = SqliteScanStore(data)
    app = make_app(tmp_path, "next, wait 0.2, next, wait 0.2", bundle_dir=bundle_dir, store=store)
    app.run()
    shown = screens_of(app, HistoryScreen)
    assert len(shown) == 2  # the newest, then an older one: the three readable scans are browsed
    assert {s.total for s in shown} == {3} and {s.unreadable for s in shown} == {1}
    assert victim[:8] not in {s.result.scan_key for s in shown}
    for size in SMALL_TO_LARGE:
        text = " ".join(screen_lines(shown[0], size))
        assert "1 saved scan could not be read — run 'skinscan records verify'" in text, size
        assert "Saved scan 1/3" in text
    assert list(store.damaged) == [victim]  # still there for whoever asks the store


def test_history_of_only_damaged_scans_says_so_instead_of_no_saved_scans(tmp_path, bundle_dir):
    from device.records.store import SqliteScanStore

    data = tmp_path / "data"
    _store_with_one_damaged_record(data, others=())
    app = make_app(tmp_path, "next, wait 0.2", bundle_dir=bundle_dir, store=SqliteScanStore(data))
    app.run()
    (screen,) = screens_of(app, HistoryScreen)
    assert screen.total == 0 and screen.unreadable == 1
    text = " ".join(screen_lines(screen, (320, 240)))
    assert "1 saved scan could not be read" in text and "No saved scans yet" not in text


def test_storage_full_says_how_much_is_reserved_why_and_how_to_free_space(tmp_path, bundle_dir):
    from device.records.space import MIB, free_bytes, human_bytes
    from device.records.store import SqliteScanStore

    store = SqliteScanStore(tmp_path / "data")
    # The real reserve check: keep more free than there is, so the save is refused.
    store.min_free_bytes = (free_bytes(store.data_dir) or 0) + 64 * MIB
    reserve = human_bytes(store.reserve_bytes)
    app = make_app(
        tmp_path, "capture, wait 1, save, save, wait 0.2", bundle_dir=bundle_dir, store=store
    )
    app.run()
    error = screens_of(app, ErrorScreen)[-1]
    assert error.problem == "disk_full" and "NOT saved" in error.title
    assert f"{reserve} is kept in reserve" in error.detail
    for size in SMALL_TO_LARGE:
        lines = screen_lines(error, size)
        text = " ".join(lines)
        for needed in (
            "Storage full — scan NOT saved",
            "Export to USB",
            "clinic",
            "receipt",
            "Free space",
            f"{reserve} is kept in reserve so that saved scans can always be opened",
        ):
            assert needed in text, (size, needed)
        assert not any(line.endswith("…") for line in lines), (size, lines)
    with SqliteScanStore(store.data_dir) as reopened:
        assert len(reopened) == 0  # nothing partial was kept


def test_storage_full_at_start_lists_the_three_steps_and_the_reserve(tmp_path, bundle_dir):
    """The store opened on a full disk: its notice reads like the Storage-full screen."""
    from device.app.controller import FREE_SPACE_STEPS
    from device.records.api import StoreNotice
    from device.records.space import MIB

    store = FillableStore()
    store.data_dir = tmp_path
    store.reserve_bytes = 16 * MIB
    store.notices = [
        StoreNotice(
            "storage_full",
            "The storage is full (0.9 MiB free): saved scans can be viewed and exported, but "
            "new scans can NOT be saved. Export the records, then archive the ones the clinic "
            "has acknowledged to free space.",
            str(tmp_path),
        )
    ]
    app = make_app(
        tmp_path, "wait 0.3, next, wait 0.2, capture, wait 0.2", bundle_dir=bundle_dir, store=store
    )
    app.run()
    (notice,) = [s for s in screens_of(app, ErrorScreen) if s.problem == "notice"]
    assert notice.title.startswith("Storage full")
    assert notice.steps == FREE_SPACE_STEPS
    assert "16.0 MiB is kept in reserve" in notice.detail
    assert app.screens_shown[-1].kind == "preview"  # CAPTURE dismissed it, NEXT did not
    for size in SMALL_TO_LARGE:
        lines = screen_lines(notice, size)
        text = " ".join(lines)
        for needed in (
            "Storage full",
            "Export to USB",
            "Free space",
            "16.0 MiB is kept in reserve",
        ):
            assert needed in text, (size, needed)
        assert not any(line.endswith("…") for line in lines), (size, lines)
