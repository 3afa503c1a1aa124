"""The controller is a pure state machine: (state, event) -> (new state, Screen)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from app_fakes import sample_result

from device.app.controller import AppState, initial_state, step, view
from device.app.events import (
    Analyzed,
    BundleReady,
    Button,
    CameraReady,
    Capture,
    Exit,
    Failed,
    Frame,
    HistoryLoaded,
    InjectFault,
    LoadHistory,
    Notice,
    PowerOff,
    QualityFailed,
    ReloadBundle,
    Save,
    Saved,
)
from device.ui.screens import (
    AnalyzingScreen,
    ErrorScreen,
    HistoryScreen,
    PreviewScreen,
    ResultScreen,
    RetakeScreen,
    ShutdownScreen,
)


def run(state: AppState, *events):
    screen = None
    for event in events:
        state, screen = step(state, event)
    return state, screen


def frame(ok: bool = True) -> Frame:
    return Frame(
        np.zeros((48, 64, 3), np.uint8), (10, 10, 30, 30), ok, None if ok else "blurred", 30
    )


def at_result(**kw) -> AppState:
    state, _ = run(initial_state(**kw), frame(), Button("capture"), Analyzed(sample_result()))
    return state


def test_start_shows_waiting_screen_then_live_view():
    state = initial_state()
    assert isinstance(view(state), AnalyzingScreen)
    state, screen = step(state, frame())
    assert isinstance(screen, PreviewScreen)
    assert screen.lesion_box == (10, 10, 30, 30)
    assert screen.quality_ok


def test_capture_asks_for_a_capture_and_shows_analysing():
    state, screen = run(initial_state(), frame(), Button("capture"))
    assert state.mode == "analyzing"
    assert state.commands == (Capture(),)
    assert isinstance(screen, AnalyzingScreen)


def test_commands_last_only_one_step():
    state, _ = run(initial_state(), frame(), Button("capture"), frame())
    assert state.commands == ()


def test_analysis_shows_result_with_heatmap_on():
    state = at_result()
    screen = view(state)
    assert isinstance(screen, ResultScreen)
    assert screen.show_heatmap
    assert screen.top3[0].code == "nv"
    assert screen.action == "Monitor"
    assert screen.notice == "Screening aid — not a diagnosis"


def test_toggle_flips_heatmap_and_back():
    state = at_result()
    state, screen = step(state, Button("toggle"))
    assert not screen.show_heatmap
    state, screen = step(state, Button("toggle"))
    assert screen.show_heatmap


def test_save_requests_store_and_saved_marks_result():
    state = at_result()
    state, _ = step(state, Button("save"))
    assert len(state.commands) == 1 and isinstance(state.commands[0], Save)
    assert state.commands[0].result is state.result
    state, screen = step(state, Saved("abc", "2025-01-01T00:00:00+00:00"))
    assert screen.is_saved and screen.saved == "Saved"
    # A second save of the same scan does nothing.
    state, _ = step(state, Button("save"))
    assert state.commands == ()


def test_quality_failure_gives_retake_without_diagnosis():
    state, screen = run(
        initial_state(), frame(), Button("capture"), QualityFailed(("blurred — hold still",))
    )
    assert isinstance(screen, RetakeScreen)
    assert screen.reasons == ("blurred — hold still",)
    assert state.result is None
    state, screen = step(state, Button("capture"))
    assert isinstance(screen, PreviewScreen)


def test_camera_failure_shows_error_and_recovers_to_live_view():
    state, screen = run(initial_state(), frame(), Failed("camera", "unplugged"))
    assert isinstance(screen, ErrorScreen)
    assert screen.problem == "camera" and screen.retrying
    assert "unplugged" in screen.detail
    # Buttons do not leave the camera error...
    state, screen = step(state, Button("capture"))
    assert state.mode == "error" and state.commands == ()
    # ...the camera coming back does.
    state, screen = step(state, CameraReady())
    assert state.mode == "preview"


def test_camera_failure_during_analysis_gives_error():
    _state, screen = run(initial_state(), frame(), Button("capture"), Failed("camera", "gone"))
    assert isinstance(screen, ErrorScreen) and screen.problem == "camera"


def test_camera_lost_while_viewing_result_shows_on_return():
    state = at_result()
    state, screen = step(state, Failed("camera", "gone"))
    assert isinstance(screen, ResultScreen)
    state, screen = step(state, Button("back"))
    assert isinstance(screen, ErrorScreen) and screen.problem == "camera"


def test_invalid_bundle_blocks_capture_and_retry_reloads():
    state, screen = run(initial_state(), Failed("bundle", "model.tflite: sha256 mismatch"))
    assert isinstance(screen, ErrorScreen) and screen.problem == "bundle"
    assert "sha256" in screen.detail
    state, _ = step(state, Button("capture"))
    assert state.commands == (ReloadBundle(),)
    state, screen = step(state, Failed("bundle", "still bad"))
    assert screen.problem == "bundle" and screen.detail == "still bad"
    state, screen = step(state, BundleReady())
    assert state.mode == "preview"


def test_bundle_error_is_not_overwritten_by_camera_error_detail():
    state, _ = run(initial_state(), Failed("bundle", "bad manifest"), Failed("camera", "gone"))
    screen = view(state)
    assert screen.problem == "bundle"
    # Once the bundle loads, the standing camera problem shows.
    state, screen = step(state, BundleReady())
    assert screen.problem == "camera" and screen.detail == "gone"


def test_disk_full_shows_error_then_back_returns_to_unsaved_result():
    state = at_result()
    state, screen = run(state, Button("save"), Failed("disk_full", "no space left"))
    assert isinstance(screen, ErrorScreen) and screen.problem == "disk_full"
    assert "NOT saved" in screen.title
    state, screen = step(state, Button("back"))
    assert isinstance(screen, ResultScreen) and not screen.is_saved


def test_analysis_failure_shows_error_and_capture_continues():
    state, screen = run(initial_state(), frame(), Button("capture"), Failed("analysis", "boom"))
    assert screen.problem == "analysis"
    state, screen = step(state, Button("capture"))
    assert isinstance(screen, PreviewScreen)


@pytest.mark.parametrize("button", ["next", "history"])
def test_history_is_loaded_then_browsed(button):
    state, _ = run(initial_state(), frame(), Button(button))
    assert state.commands == (LoadHistory(),)
    items = (sample_result("a"), sample_result("b"), sample_result("c"))
    state, screen = step(state, HistoryLoaded(items))
    assert isinstance(screen, HistoryScreen)
    assert (screen.index, screen.total) == (0, 3)
    assert screen.result.scan_key == "a"
    state, screen = run(state, Button("next"), Button("next"))
    assert screen.result.scan_key == "c"
    state, screen = step(state, Button("next"))
    assert screen.index == 0  # wraps round
    state, screen = step(state, Button("toggle"))
    assert not screen.result.show_heatmap
    state, screen = step(state, Button("back"))
    assert isinstance(screen, PreviewScreen)


def test_empty_history_says_so():
    _state, screen = run(initial_state(), frame(), Button("next"), HistoryLoaded(()))
    assert isinstance(screen, HistoryScreen) and screen.total == 0 and screen.result is None


def test_shutdown_needs_confirmation_and_cancel_returns():
    state = at_result(poweroff=True)
    state, screen = step(state, Button("shutdown"))
    assert isinstance(screen, ShutdownScreen) and not screen.confirmed
    assert state.commands == ()
    state, screen = step(state, Button("back"))
    assert isinstance(screen, ResultScreen)
    state, _ = step(state, Button("shutdown"))
    state, screen = step(state, Button("capture"))
    assert state.mode == "exit" and state.commands == (PowerOff(),)
    assert screen.confirmed and screen.poweroff


def test_shutdown_on_a_laptop_exits_without_poweroff():
    state, _ = run(initial_state(poweroff=False), frame(), Button("shutdown"))
    state, screen = step(state, Button("shutdown"))  # a second long hold confirms
    assert state.commands == (Exit(),)
    assert not screen.poweroff


def test_quit_exits_from_anywhere_and_exit_is_final():
    state, _ = run(initial_state(), Failed("camera", "x"), Button("quit"))
    assert state.mode == "exit" and state.commands == (Exit(),)
    state, _ = step(state, Button("capture"))
    assert state.mode == "exit" and state.commands == ()


def test_fault_buttons_become_inject_commands():
    state, _ = run(initial_state(), frame(), Button("fault:blur"))
    assert state.commands == (InjectFault("blur"),)
    assert state.mode == "preview"


def test_notice_is_shown_then_dismissed():
    state, screen = run(initial_state(), frame(), Notice("Scans can NOT be saved: read-only"))
    assert isinstance(screen, ErrorScreen) and "read-only" in screen.detail
    state, screen = step(state, Button("capture"))
    assert isinstance(screen, PreviewScreen)


def test_frames_are_ignored_outside_the_live_view():
    state = at_result()
    new_state, screen = step(state, frame(ok=False))
    assert isinstance(screen, ResultScreen)
    assert new_state.frame is state.frame


def test_every_screen_has_hints_naming_real_buttons():
    buttons = {"capture", "toggle", "next", "save", "back", "shutdown"}
    states = [
        replace(initial_state(), frame=frame()),
        at_result(),
        run(initial_state(), Failed("bundle", "x"))[0],
        run(initial_state(), Failed("camera", "x"))[0],
        run(initial_state(), frame(), Button("shutdown"))[0],
    ]
    for state in states:
        screen = view(state)
        assert screen.hints, screen.kind
        assert {h.button for h in screen.hints} <= buttons
