"""The app as a pure state machine: ``step(state, event) -> (new state, Screen)``.

The controller decides what happens and what is shown; it never touches
hardware, files or the model. Work it wants done (capture and analyse, save,
load history, power off) is listed in ``AppState.commands``; the main loop does
it and reports the outcome as the next event.

Modes and buttons (``shutdown`` = long hold of POWER works everywhere):

===========  ===============================================================
preview      capture: analyse · toggle: body site · next/history: saved scans
analyzing    (waits for the outcome)
result       toggle: heatmap · save (without a patient: asks first) ·
             capture/back: new scan · next: history
confirm_save "No patient card read — save without a patient?": save: save anyway ·
             capture: read the card, then save with it · back: cancel
retake       capture/back: back to the live view
history      next: older scan · toggle: heatmap · capture: compare with an
             earlier scan of the same lesion, or give a patient to a scan saved
             without one (else live view) · save: this patient's scans / all
             scans · back: live view
compare      next: an even earlier scan · toggle: heatmap · back/capture: history
card         capture: read the card · toggle: next patient (clear) · back: cancel
reading      (waits for the card's outcome)
site         next/toggle: down/up the list · capture/save: choose (the site, then
             the side of a paired site, then the lesion label) · back: one step
             back (from the sites: cancel)
error        camera: retries by itself · bundle: capture retries ·
             disk full/storage: back/capture returns to the result
shutdown     capture or shutdown again: confirm · anything else: cancel
exit         final
===========  ===============================================================

``patient`` (a long hold of BACK) opens the card screen from the live view, a
result, a retake, history or the body-site list. The patient and body site stay
set, and are shown on every screen, until another card is read or the patient
is cleared; every scan analysed meanwhile carries them.

``menu`` (a long hold of NEXT) opens the menu (Export to USB, Free space, Update
model, Roll back model) from the live view, a result, a retake, history, compare or
a problem on screen; see :mod:`device.app.menu_flow`.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from device.app.error_flow import (
    ERROR_STEPS,
    ERROR_TEXT,
    FREE_SPACE_STEPS,
    NOTICE_TEXT,
    error_step,
    error_view,
    showing_notice,
)
from device.app.events import (
    Analyzed,
    BundleReady,
    Button,
    CameraNotice,
    CameraReady,
    Capture,
    ErrorInfo,
    Event,
    Exit,
    Failed,
    Frame,
    HistoryLoaded,
    InjectFault,
    Notice,
    PowerOff,
    PowerStatus,
    QualityFailed,
    Save,
    Saved,
)
from device.app.history_flow import (
    compare_step,
    compare_view,
    history_step,
    history_view,
    load_history,
)
from device.app.menu_flow import (
    MENU_MODES,
    menu_step,
    menu_view,
    open_menu,
    opens_menu,
    usb_busy_step,
    usb_done_step,
    usb_event,
)
from device.app.patient import patient_line
from device.app.patient_flow import (
    ask_save,
    ask_save_step,
    ask_save_view,
    asks_before_saving,
    card_step,
    card_view,
    open_sites,
    reading_step,
    reading_view,
    site_step,
    site_view,
)
from device.app.power_flow import power_step
from device.app.state import (
    LIVE_MODES,
    MODES,
    PATIENT_FROM,
    AppState,
    enter_preview,
    initial_state,
    show_error,
)
from device.app.view_parts import make_hints, power_label
from device.app.view_parts import result_screen as _result_screen
from device.hw.buttons import FAULT_PREFIX
from device.ui.screens import (
    AnalyzingScreen,
    PreviewScreen,
    RetakeScreen,
    Screen,
    ShutdownScreen,
)

# Names other modules and the tests import from here.
__all__ = [
    "ERROR_STEPS",
    "ERROR_TEXT",
    "FREE_SPACE_STEPS",
    "LIVE_MODES",
    "MODES",
    "NOTICE_TEXT",
    "PATIENT_FROM",
    "AppState",
    "_result_screen",
    "initial_state",
    "step",
    "view",
]

log = logging.getLogger(__name__)


def _common(state: AppState, event: Event) -> AppState | None:
    """Events handled the same way in every mode; None when not one of them."""
    if isinstance(event, PowerStatus):
        return power_step(state, event)
    if isinstance(event, Button):
        if event.name == "quit":
            return replace(state, mode="exit", commands=(Exit(),))
        if event.name.startswith(FAULT_PREFIX):
            return replace(state, commands=(InjectFault(event.name[len(FAULT_PREFIX) :]),))
        if event.name == "shutdown" and state.mode != "shutdown":
            return replace(state, mode="shutdown", back_to=state.mode)
        if event.name == "patient" and state.mode in PATIENT_FROM:
            # The card read now is for the live view's patient, whatever a card read
            # that was cut short (a camera failure) had been for.
            choice = replace(state.lesion, card_for="", assign_scan=None)
            return replace(state, mode="card", card_problem="", message="", lesion=choice)
        if opens_menu(state, event):
            return open_menu(state, event.name)
        return None
    usb = usb_event(state, event)
    if usb is not None:
        return usb
    if isinstance(event, CameraNotice):
        return replace(state, warning=event.detail)
    if isinstance(event, Failed) and event.problem == "camera":
        state = replace(state, camera_ok=False, camera_detail=event.detail)
        if state.mode in LIVE_MODES or (
            state.mode == "error" and state.error is not None and state.error.problem == "camera"
        ):
            return show_error(state, "camera", event.detail)
        return state
    if isinstance(event, CameraReady):
        state = replace(state, camera_ok=True, camera_detail="")
        if state.mode == "error" and state.error is not None and state.error.problem == "camera":
            return enter_preview(state)
        return state
    if isinstance(event, Failed) and event.problem == "bundle":
        state = replace(state, bundle_ok=False, bundle_detail=event.detail)
        if state.mode in ("preview", "analyzing", "error"):
            return show_error(state, "bundle", event.detail)
        return state
    if isinstance(event, BundleReady):
        state = replace(state, bundle_ok=True, bundle_detail="")
        if state.mode == "error" and state.error is not None and state.error.problem == "bundle":
            return enter_preview(state)
        return state
    if isinstance(event, HistoryLoaded):
        # The heatmap stays as the health worker left it.
        return replace(
            state,
            mode="history",
            history=event.items,
            history_index=0,
            history_patient=event.patient_ref,
            history_unreadable=event.unreadable,
        )
    if isinstance(event, Notice):
        info = ErrorInfo("notice", event.detail, event.kind, event.path)
        if showing_notice(state):
            # Each notice stays until acknowledged: a second one waits its turn.
            return replace(state, pending_notices=(*state.pending_notices, info))
        return replace(state, mode="error", error=info, back_to=state.mode)
    return None


def _preview(state: AppState, event: Event) -> AppState:
    if isinstance(event, Frame):
        return replace(state, frame=event)
    if isinstance(event, Button):
        if event.name == "capture":
            if not state.bundle_ok:
                return show_error(state, "bundle", state.bundle_detail)
            return replace(state, mode="analyzing", commands=(Capture(),), message="", warning="")
        if event.name == "toggle":
            return open_sites(state)
        if event.name in ("next", "history"):
            return load_history(state)
    return state


def _analyzing(state: AppState, event: Event) -> AppState:
    if isinstance(event, Analyzed):
        # The scan belongs to the patient and site set when it was made.
        result = replace(
            event.result,
            patient_ref=state.patient_ref,
            body_site=state.body_site,
            body_side=state.lesion.side if state.body_site else None,
            lesion=state.lesion.lesion if state.body_site else None,
        )
        return replace(state, mode="result", result=result)
    if isinstance(event, QualityFailed):
        return replace(state, mode="retake", retake=event.reasons, retake_image=event.image)
    if isinstance(event, Failed):
        return show_error(state, event.problem, event.detail)
    return state


def _result(state: AppState, event: Event) -> AppState:
    result = state.result
    assert result is not None
    if isinstance(event, Button):
        if event.name == "toggle":
            return replace(state, show_heatmap=not state.show_heatmap)
        if event.name == "save":
            if result.saved_id is not None:
                return state
            if asks_before_saving(state):
                return ask_save(state)
            return replace(state, commands=(Save(result),))
        if event.name in ("capture", "back"):
            return enter_preview(state)
        if event.name in ("next", "history"):
            return load_history(state)
    if isinstance(event, Saved):
        saved = replace(result, saved_id=event.scan_id, created_at=event.created_at)
        return replace(state, result=saved)
    if isinstance(event, Failed):
        return show_error(state, event.problem, event.detail, back_to="result")
    return state


def _retake(state: AppState, event: Event) -> AppState:
    if isinstance(event, Button) and event.name in ("capture", "back"):
        return enter_preview(state)
    return state


def _shutdown(state: AppState, event: Event) -> AppState:
    if not isinstance(event, Button):
        return state
    if event.name in ("capture", "shutdown"):
        return replace(state, mode="exit", commands=(PowerOff() if state.poweroff else Exit(),))
    if event.name in ("back", "power", "toggle", "next", "save", "patient"):
        if state.back_to in ("analyzing", "reading"):
            return enter_preview(state)
        return replace(state, mode=state.back_to)
    return state


_MODE_STEPS = {
    "preview": _preview,
    "analyzing": _analyzing,
    "result": _result,
    "history": history_step,
    "compare": compare_step,
    "card": card_step,
    "reading": reading_step,
    "site": site_step,
    "confirm_save": ask_save_step,
    "retake": _retake,
    "error": error_step,
    "shutdown": _shutdown,
    "menu": menu_step,
    "usb_busy": usb_busy_step,
    "usb_done": usb_done_step,
}


def step(state: AppState, event: Event) -> tuple[AppState, Screen]:
    """Apply one event. Returns the new state (with any commands) and what to show."""
    state = replace(state, commands=())
    if state.mode == "exit":
        return state, view(state)
    new_state = _common(state, event)
    if new_state is None:
        new_state = _MODE_STEPS[state.mode](state, event)
    if new_state.mode != state.mode:
        log.debug("%s -> %s on %s", state.mode, new_state.mode, type(event).__name__)
    return new_state, view(new_state)


# ---- state -> screen --------------------------------------------------------------------------


def _screen(state: AppState) -> Screen:
    """The screen for ``state``, without the patient line."""
    mode = state.mode
    if mode == "preview":
        frame = state.frame
        hints = make_hints(
            ("capture", "Scan"),
            ("toggle", "Site"),
            ("next", "History"),
            ("patient", "Patient"),
            ("menu", "Menu"),
            ("shutdown", power_label(state)),
        )
        if frame is None:
            return AnalyzingScreen(
                frame=None, text="Starting camera…", title="Starting", hints=hints
            )
        return PreviewScreen(
            frame=frame.image,
            lesion_box=frame.lesion_box,
            quality_ok=frame.quality_ok,
            reason=frame.reason,
            fps=frame.fps,
            message=state.message or None,
            warning=state.warning or None,
            hints=hints,
            status=state.device_status,
        )
    if mode == "analyzing":
        return AnalyzingScreen(frame=state.frame.image if state.frame else None)
    if mode == "card":
        return card_view(state)
    if mode == "reading":
        return reading_view(state)
    if mode == "site":
        return site_view(state)
    if mode == "confirm_save":
        return ask_save_view(state)
    if mode == "result":
        assert state.result is not None
        hints = make_hints(
            ("capture", "New scan"), ("toggle", "Heatmap"), ("save", "Save"), ("next", "History")
        )
        if state.result.saved_id:
            hints = make_hints(("capture", "New scan"), ("toggle", "Heatmap"), ("next", "History"))
        return _result_screen(state.result, state.show_heatmap, "Result", hints)
    if mode == "retake":
        return RetakeScreen(
            frame=state.retake_image,  # type: ignore[arg-type]
            reasons=state.retake,
            hints=make_hints(("capture", "Try again")),
        )
    if mode == "history":
        return history_view(state)
    if mode == "compare":
        return compare_view(state)
    if mode == "error":
        return error_view(state)
    if mode in MENU_MODES:
        return menu_view(state)
    if mode == "shutdown":
        return ShutdownScreen(
            confirmed=False,
            poweroff=state.poweroff,
            hints=make_hints(
                ("capture", "Power off" if state.poweroff else "Quit"), ("back", "Cancel")
            ),
        )
    return ShutdownScreen(confirmed=True, poweroff=state.poweroff, reason=state.shutdown_reason)


def view(state: AppState) -> Screen:
    """What the screen shows for ``state``: every screen carries the patient line."""
    screen = _screen(state)
    line = patient_line(state.patient_ref, state.body_site, state.lesion.side, state.lesion.lesion)
    return replace(screen, patient=line) if line else screen
