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
    CameraNotice,
    CameraReady,
    Capture,
    CardRead,
    CardRefused,
    Exit,
    Failed,
    Frame,
    HistoryLoaded,
    InjectFault,
    LoadHistory,
    Notice,
    PowerOff,
    QualityFailed,
    ReadCard,
    ReloadBundle,
    Save,
    Saved,
)
from device.app.patient import BODY_SITES
from device.ui.screens import (
    AnalyzingScreen,
    CardScreen,
    CompareScreen,
    ErrorScreen,
    HistoryScreen,
    PreviewScreen,
    ResultScreen,
    RetakeScreen,
    ShutdownScreen,
    SiteScreen,
)

REF = "SKS-000142-7F3Q"


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
    # No patient card was read: SAVE asks first, and SAVE again saves.
    state, screen = step(state, Button("save"))
    assert state.commands == () and isinstance(screen, ErrorScreen)
    assert screen.title == "No patient card read — save without a patient?"
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
    state, screen = run(state, Button("save"), Button("save"), Failed("disk_full", "no space"))
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
    buttons = {"capture", "toggle", "next", "save", "back", "shutdown", "patient", "menu"}
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


# ---- the patient card, body site and follow-up ----------------------------------------------


def saved_item(
    key: str,
    created_at: str,
    site: str | None,
    ref: str | None = REF,
    p=0.1,
    lesion: str | None = "1",
    side: str | None = None,
):
    """A history entry as result_from_record makes it."""
    return replace(
        sample_result(key, p_malignant=p),
        saved_id=f"{key}-id",
        created_at=created_at,
        patient_ref=ref,
        body_site=site,
        body_side=side,
        lesion=lesion if site else None,
    )


def with_patient(site: str | None = None, lesion: str = "1") -> AppState:
    state, _ = run(initial_state(), frame(), Button("patient"), Button("capture"), CardRead(REF))
    if site is not None:
        state = replace(state, body_site=site, lesion=replace(state.lesion, lesion=lesion))
    return state


def test_patient_button_opens_the_card_screen_and_capture_reads_the_card():
    state, screen = run(initial_state(), frame(), Button("patient"))
    assert state.mode == "card" and isinstance(screen, CardScreen)
    assert screen.frame is not None and screen.problem == ""
    assert {h.button for h in screen.hints} == {"capture", "back"}  # nothing to clear yet
    state, screen = step(state, Button("capture"))
    assert state.commands == (ReadCard(),)
    assert isinstance(screen, AnalyzingScreen) and screen.title == "Patient card"
    state, screen = step(state, CardRead(REF))
    assert isinstance(screen, PreviewScreen)
    assert state.patient_ref == REF and state.body_site is None
    assert screen.patient == f"Patient {REF} · site not chosen"
    assert "Patient card read" in screen.message


def test_a_refused_card_stays_on_the_card_screen_with_the_reason():
    state, screen = run(
        initial_state(), frame(), Button("patient"), Button("capture"),
        CardRefused("this looks like a name, not a card reference"),
    )  # fmt: skip
    assert isinstance(screen, CardScreen) and "looks like a name" in screen.problem
    assert state.patient_ref is None
    state, screen = step(state, Button("back"))
    assert isinstance(screen, PreviewScreen) and screen.patient == ""


def test_the_patient_is_on_every_screen_until_cleared():
    state = with_patient("back")
    line = f"Patient {REF} · back, lesion 1"
    screens = [
        view(state),
        run(state, Button("capture"))[1],
        run(state, Button("capture"), Analyzed(sample_result()))[1],
        run(state, Button("capture"), QualityFailed(("blurred — hold still",)))[1],
        run(state, Button("next"), HistoryLoaded((), REF))[1],
        run(state, Button("toggle"))[1],
        run(state, Button("shutdown"))[1],
        run(state, Failed("camera", "unplugged"))[1],
    ]
    for screen in screens:
        assert screen.patient == line, screen.kind
    # "Next patient": the card screen clears the patient and the site.
    state, screen = run(state, Button("patient"))
    assert ("toggle", "Next patient") in [(h.button, h.action) for h in screen.hints]
    state, screen = step(state, Button("toggle"))
    assert state.patient_ref is None and state.body_site is None
    assert isinstance(screen, PreviewScreen) and screen.patient == ""
    assert "next patient" in screen.message


def test_body_site_is_chosen_from_the_list_with_the_buttons():
    state = with_patient()
    state, screen = step(state, Button("toggle"))
    assert isinstance(screen, SiteScreen) and screen.sites == BODY_SITES
    assert screen.index == 0
    state, screen = run(state, Button("next"), Button("next"), Button("next"), Button("next"))
    assert screen.sites[screen.index] == "back"
    state, screen = run(state, Button("toggle"), Button("next"))  # up, then down again
    state, screen = step(state, Button("capture"))  # back has no sides: which lesion?
    assert isinstance(screen, SiteScreen) and screen.title == "back: which lesion?"
    assert screen.sites[:3] == ("1", "2", "3") and screen.index == 0
    state, screen = run(state, Button("next"), Button("capture"))
    assert state.body_site == "back" and isinstance(screen, PreviewScreen)
    assert screen.patient == f"Patient {REF} · back, lesion 2"
    # Reopening the list starts at the chosen site; back cancels without a change.
    state, screen = run(state, Button("toggle"), Button("next"), Button("back"))
    assert state.body_site == "back"


def test_a_scan_made_while_a_patient_is_set_carries_the_reference_and_site():
    state = with_patient("forearm")
    state, _ = run(state, Button("capture"), Analyzed(sample_result()), Button("save"))
    (command,) = state.commands
    assert isinstance(command, Save)
    assert command.result.patient_ref == REF and command.result.body_site == "forearm"
    # Without a patient nothing is attached.
    state, _ = run(at_result(), Button("save"), Button("save"))
    assert state.commands[0].result.patient_ref is None


def test_reading_the_same_card_again_keeps_the_site_another_card_resets_it():
    state = with_patient("back")
    state, _ = run(state, Button("patient"), Button("capture"), CardRead(REF))
    assert state.body_site == "back"
    state, _ = run(state, Button("patient"), Button("capture"), CardRead("K7-2291-55"))
    assert state.patient_ref == "K7-2291-55" and state.body_site is None


def test_history_is_this_patients_and_save_switches_to_everyone():
    state = with_patient("back")
    state, _ = step(state, Button("next"))
    assert state.commands == (LoadHistory(REF),)
    items = (saved_item("s2", "2026-03-01T10:00:00+00:00", "back"),)
    state, screen = step(state, HistoryLoaded(items, REF))
    assert screen.scope == f"Patient {REF}"
    assert ("save", "All") in [(h.button, h.action) for h in screen.hints]
    state, _ = step(state, Button("save"))
    assert state.commands == (LoadHistory(None),)
    state, screen = step(state, HistoryLoaded(items, None))
    assert screen.scope == "All patients"
    state, _ = step(state, Button("save"))
    assert state.commands == (LoadHistory(REF),)
    # Without a patient, history is everyone's and SAVE does nothing there.
    state, _ = run(initial_state(), frame(), Button("next"))
    assert state.commands == (LoadHistory(None),)


def test_earlier_scans_of_the_same_site_are_offered_side_by_side():
    items = (
        saved_item("s4", "2026-04-10T09:00:00+00:00", "back", p=0.30),
        saved_item("s3", "2026-03-20T09:00:00+00:00", "forearm"),
        saved_item("s2", "2026-03-01T09:00:00+00:00", "back", p=0.12),
        saved_item("s1", "2026-01-01T09:00:00+00:00", "back", ref="K7-2291-55"),
        saved_item("s0", "2025-12-01T09:00:00+00:00", "back", p=0.05),
    )
    state, screen = run(with_patient("back"), Button("next"), HistoryLoaded(items, None))
    assert screen.earlier == 2  # s2 and s0: not the forearm, not the other patient
    assert ("capture", "Compare") in [(h.button, h.action) for h in screen.hints]
    state, screen = step(state, Button("capture"))
    assert isinstance(screen, CompareScreen)
    assert screen.later.when == "2026-04-10 09:00 UTC"
    assert screen.earlier.when == "2026-03-01 09:00 UTC"
    assert screen.site == "back, lesion 1"
    assert screen.change == "40 days later · P(malignant) 12% → 30%"
    assert screen.position == "1 of 2"
    state, screen = step(state, Button("next"))
    assert screen.earlier.when == "2025-12-01 09:00 UTC"
    state, screen = step(state, Button("next"))
    assert screen.earlier.when == "2026-03-01 09:00 UTC"  # round again
    state, screen = step(state, Button("back"))
    assert isinstance(screen, HistoryScreen) and screen.index == 0
    # The forearm scan has nothing to compare with: CAPTURE goes to the live view.
    state, screen = step(state, Button("next"))
    assert screen.earlier == 0 and "capture" not in [h.button for h in screen.hints]
    state, screen = step(state, Button("capture"))
    assert isinstance(screen, PreviewScreen)


def test_a_scan_without_a_patient_or_site_has_no_follow_up():
    items = (
        saved_item("s2", "2026-03-01T09:00:00+00:00", None),
        saved_item("s1", "2026-01-01T09:00:00+00:00", None),
    )
    _state, screen = run(initial_state(), frame(), Button("next"), HistoryLoaded(items))
    assert screen.earlier == 0


# ---- issue 22 section 4: screens ---------------------------------------------------------------


def test_starting_screen_is_not_titled_analysing():
    screen = view(initial_state())
    assert isinstance(screen, AnalyzingScreen) and screen.text == "Starting camera…"
    assert screen.title != "Analysing"
    assert screen.snapshot_key == "starting"


def test_history_keeps_the_heatmap_as_the_user_left_it():
    state, _ = run(at_result(), Button("toggle"))
    assert not state.show_heatmap
    item = saved_item("s1", "2026-03-01T09:00:00+00:00", None)
    state, screen = run(state, Button("next"), HistoryLoaded((item,)))
    assert not state.show_heatmap and not screen.result.show_heatmap


def test_the_only_saved_scan_offers_no_older_one():
    item = saved_item("s1", "2026-03-01T09:00:00+00:00", None)
    state, screen = run(initial_state(), frame(), Button("next"), HistoryLoaded((item,)))
    assert "next" not in [h.button for h in screen.hints]
    state, screen = step(state, Button("next"))
    assert state.history_index == 0
    two = (item, saved_item("s0", "2026-02-01T09:00:00+00:00", None))
    state, screen = run(initial_state(), frame(), Button("next"), HistoryLoaded(two))
    assert ("next", "Older") in [(h.button, h.action) for h in screen.hints]
    state, screen = step(state, Button("next"))
    assert ("next", "Newest") in [(h.button, h.action) for h in screen.hints]


def test_history_times_say_utc():
    item = saved_item("s1", "2026-03-01T09:05:31+00:00", None)
    _state, screen = run(initial_state(), frame(), Button("next"), HistoryLoaded((item,)))
    assert screen.created_at == "2026-03-01 09:05 UTC"


def test_camera_notice_is_shown_on_the_live_view_until_the_next_scan():
    state, screen = run(
        initial_state(), frame(), CameraNotice("unreadable image file a.jpg: empty file; skipped")
    )
    assert isinstance(screen, PreviewScreen) and "a.jpg" in screen.warning
    state, screen = run(state, frame())
    assert "a.jpg" in screen.warning
    state, screen = run(state, Button("capture"), QualityFailed(("x",)), Button("capture"))
    assert isinstance(screen, PreviewScreen) and screen.warning is None


# ---- issue 22 section 2 on the screen: damaged records, a moved database, a full disk ----------

OLD_DB = "/var/lib/skinscan/corrupt-20260301T101500Z/scans.db"


def test_history_shows_the_readable_scans_and_counts_the_unreadable_ones():
    items = (sample_result("a"), sample_result("b"))
    _, screen = run(initial_state(), frame(), Button("next"), HistoryLoaded(items, unreadable=1))
    assert isinstance(screen, HistoryScreen)
    assert screen.total == 2 and screen.unreadable == 1
    # Every saved scan unreadable: an empty history that still says why.
    _, screen = run(initial_state(), frame(), Button("next"), HistoryLoaded((), unreadable=3))
    assert screen.result is None and screen.unreadable == 3


def test_a_moved_database_names_the_old_file_and_stays_until_acknowledged():
    notice = Notice("The scan database was damaged", kind="corrupt_db_moved", path=OLD_DB)
    state, screen = run(initial_state(), frame(), notice)
    assert isinstance(screen, ErrorScreen)
    assert "damaged" in screen.title and screen.path == OLD_DB
    assert "moved" in screen.action and "nothing was deleted" in screen.action
    for event in (frame(), Button("next"), Button("toggle"), Button("save"), Button("patient")):
        state, screen = step(state, event)
        assert isinstance(screen, ErrorScreen) and screen.path == OLD_DB, event
    state, screen = step(state, Button("capture"))
    assert isinstance(screen, PreviewScreen)


def test_notices_at_start_are_shown_one_after_another():
    state, screen = run(
        initial_state(),
        frame(),
        Notice("moved", kind="corrupt_db_moved", path=OLD_DB),
        Notice("The data folder /data is read-only", kind="read_only"),
    )
    assert screen.path == OLD_DB  # the first is not replaced by the second
    state, screen = step(state, Button("capture"))
    assert isinstance(screen, ErrorScreen) and "read-only" in screen.detail
    state, screen = step(state, Button("back"))
    assert isinstance(screen, PreviewScreen)


def test_a_read_only_data_folder_is_named_in_the_title_not_a_generic_one():
    _state, screen = run(
        initial_state(),
        frame(),
        Notice("The data folder /data is read-only", kind="read_only", path="/data"),
    )
    assert isinstance(screen, ErrorScreen)
    assert screen.title == "Scans can NOT be saved"
    assert "by hand" in screen.action and screen.path == "/data"


def test_storage_full_says_how_to_free_space_in_order():
    _state, screen = run(
        at_result(), Button("save"), Button("save"), Failed("disk_full", "1.0 MiB free")
    )
    text = " ".join((screen.action, *screen.steps))
    marks = [text.find(s) for s in ("USB", "Export to USB", "clinic", "receipt", "Free space")]
    assert -1 not in marks and marks == sorted(marks), text
    assert screen.detail == "1.0 MiB free"


def test_a_missing_bundle_points_to_the_deployment_guide():
    _state, screen = run(initial_state(), frame(), Failed("bundle", "no model.tflite"))
    assert isinstance(screen, ErrorScreen) and screen.problem == "bundle"
    assert "docs/deployment.md" in screen.action and "README" not in screen.action


def test_storage_full_at_start_says_how_to_free_space_like_the_storage_full_screen():
    from device.app.controller import ERROR_TEXT, FREE_SPACE_STEPS

    notice = Notice(
        "The storage is full (1.0 MiB free): saved scans can be viewed and exported, but new "
        "scans can NOT be saved.",
        kind="storage_full",
        path="/var/lib/skinscan",
    )
    state, screen = run(initial_state(), frame(), notice)
    assert isinstance(screen, ErrorScreen) and screen.problem == "notice"
    assert screen.title.startswith("Storage full") and screen.title != ERROR_TEXT["notice"][0]
    assert screen.steps == FREE_SPACE_STEPS
    assert "viewed and exported" in screen.action
    for event in (frame(), Button("next"), Button("toggle"), Button("save")):
        state, screen = step(state, event)
        assert isinstance(screen, ErrorScreen) and screen.steps == FREE_SPACE_STEPS, event
    state, screen = step(state, Button("capture"))
    assert isinstance(screen, PreviewScreen)
