"""The app as a pure state machine: ``step(state, event) -> (new state, Screen)``.

The controller decides what happens and what is shown; it never touches
hardware, files or the model. Work it wants done (capture and analyse, save,
load history, power off) is listed in ``AppState.commands``; the main loop does
it and reports the outcome as the next event.

Modes and buttons (``shutdown`` = long hold of POWER works everywhere):

===========  ===============================================================
preview      capture: analyse · toggle: body site · next/history: saved scans
analyzing    (waits for the outcome)
result       toggle: heatmap · save · capture/back: new scan · next: history
retake       capture/back: back to the live view
history      next: older scan · toggle: heatmap · capture: compare with an
             earlier scan of the same site (else live view) · save: this
             patient's scans / all scans · back: live view
compare      next: an even earlier scan · toggle: heatmap · back/capture: history
card         capture: read the card · toggle: next patient (clear) · back: cancel
reading      (waits for the card's outcome)
site         next/toggle: down/up the list · capture/save: choose · back: cancel
error        camera: retries by itself · bundle: capture retries ·
             disk full/storage: back/capture returns to the result
shutdown     capture or shutdown again: confirm · anything else: cancel
exit         final
===========  ===============================================================

``patient`` (a long hold of BACK) opens the card screen from the live view, a
result, a retake, history or the body-site list. The patient and body site stay
set, and are shown on every screen, until another card is read or the patient
is cleared; every scan analysed meanwhile carries them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from device.app.events import (
    Analyzed,
    BundleReady,
    Button,
    CameraNotice,
    CameraReady,
    Capture,
    CardRead,
    CardRefused,
    Command,
    ErrorInfo,
    Event,
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
    ResultView,
    Save,
    Saved,
)
from device.app.patient import (
    BODY_SITES,
    change_line,
    earlier_same_site,
    patient_line,
    when_text,
)
from device.hw.buttons import FAULT_PREFIX
from device.ui.screens import (
    AnalyzingScreen,
    CardScreen,
    CompareScreen,
    CompareSide,
    ErrorScreen,
    Hint,
    HistoryScreen,
    PreviewScreen,
    ResultScreen,
    RetakeScreen,
    Screen,
    ShutdownScreen,
    SiteScreen,
)

log = logging.getLogger(__name__)

MODES = (
    "preview",
    "analyzing",
    "result",
    "retake",
    "history",
    "compare",
    "card",
    "reading",
    "site",
    "error",
    "shutdown",
    "exit",
)
# Where the patient button opens the card screen (not while something is under way).
PATIENT_FROM = ("preview", "result", "retake", "history", "compare", "site")
# Modes that show the live camera and so fall to the camera error when it goes.
LIVE_MODES = ("preview", "analyzing", "card", "reading")

ERROR_TEXT: dict[str, tuple[str, str]] = {
    # problem -> (title, what to do)
    "camera": (
        "Camera not found",
        "Check that the camera cable is plugged in firmly. The device keeps trying to "
        "reconnect and continues by itself.",
    ),
    "bundle": (
        "Model bundle missing or invalid",
        "Scans cannot be analysed. Reinstall the model bundle (see the README), then "
        "press Capture to try again.",
    ),
    "disk_full": (
        "Storage full — scan NOT saved",
        "The result is still on screen (Back). Earlier scans are safe. To free space:",
    ),
    "storage": (
        "Scan NOT saved",
        "The record store refused the scan. Note the result by hand and tell your "
        "supervisor. Press Back to return to the result.",
    ),
    "analysis": (
        "Analysis failed",
        "Press Capture to go back to the live view and try again.",
    ),
    "notice": (
        "Scan records",
        "Press Capture to continue.",
    ),
}
# Space is freed only by archiving scans the clinic has confirmed it has (docs/records.md).
# Each command on a line of its own, so that it is read (and typed) whole.
FREE_SPACE_STEPS: tuple[str, ...] = (
    "1. Export to USB:\nskinscan records export --to /media/usb",
    "2. The clinic opens it and sends a receipt; record it:\nskinscan records ack RECEIPT",
    "3. Move the scans the clinic acknowledged off the device:\n"
    "skinscan records archive --to /media/usb",
)
ERROR_STEPS: dict[str, tuple[str, ...]] = {"disk_full": FREE_SPACE_STEPS}
NOTICE_TEXT: dict[str, tuple[str, str, str]] = {
    # store notice kind -> (title, what happened and what to do, the line above the path)
    "corrupt_db_moved": (
        "Scan database was damaged",
        "It was moved aside and a new one started: new scans are saved as usual. Earlier "
        "scans are not shown, but nothing was deleted. Tell your supervisor.",
        "The old database is now at:",
    ),
    "orphaned_images_moved": (
        "Scan database was missing",
        "A new one was started. The earlier image files were moved aside; nothing was "
        "deleted. Tell your supervisor.",
        "The earlier image files are now in:",
    ),
}


@dataclass(frozen=True, eq=False)
class AppState:
    """Everything the controller knows.

    Attributes:
        mode: one of :data:`MODES`.
        frame: the latest live-view frame.
        result: the result on screen (or the one a save error returns to).
        show_heatmap: heatmap overlay on (result and history).
        retake: reasons the last still failed the quality gate.
        retake_image: that still.
        error: the problem on screen in "error" mode.
        back_to: the mode that "back" or "cancel" returns to from error/shutdown.
        history: saved scans, newest first; history_index: the one shown.
        camera_ok: the camera is open; camera_detail: why not.
        bundle_ok: the model bundle is loaded; bundle_detail: why not.
        poweroff: confirming shutdown powers the device off (else just exits).
        patient_ref: the patient set from their card, or None.
        body_site: the body site chosen, or None.
        site_index: the highlighted entry of the body-site list.
        card_problem: why the last card could not be read ("" when none).
        message: a status line for the live view ("Patient card read").
        warning: a camera notice for the live view (a skipped image file).
        history_patient: whose scans the loaded history holds (None: everyone's).
        history_unreadable: saved scans left out of the loaded history as unreadable.
        pending_notices: notices waiting behind the one on screen, shown in turn.
        compare_index: the history index of the earlier scan being compared.
        commands: work requested by the last step, for the main loop.
    """

    mode: str = "preview"
    frame: Frame | None = None
    result: ResultView | None = None
    show_heatmap: bool = True
    retake: tuple[str, ...] = ()
    retake_image: object = None
    error: ErrorInfo | None = None
    back_to: str = "preview"
    history: tuple[ResultView, ...] = ()
    history_index: int = 0
    camera_ok: bool = True
    camera_detail: str = ""
    bundle_ok: bool = True
    bundle_detail: str = ""
    poweroff: bool = False
    patient_ref: str | None = None
    body_site: str | None = None
    site_index: int = 0
    card_problem: str = ""
    message: str = ""
    warning: str = ""
    history_patient: str | None = None
    history_unreadable: int = 0
    pending_notices: tuple[ErrorInfo, ...] = ()
    compare_index: int = 0
    commands: tuple[Command, ...] = ()


def initial_state(*, poweroff: bool = False) -> AppState:
    """The state at start: the live view, waiting for the first frame."""
    return AppState(poweroff=poweroff)


def _error(state: AppState, problem: str, detail: str, back_to: str = "preview") -> AppState:
    return replace(state, mode="error", error=ErrorInfo(problem, detail), back_to=back_to)


def _enter_preview(state: AppState) -> AppState:
    """Back to the live view, unless a standing problem must be shown instead."""
    if not state.bundle_ok:
        return _error(state, "bundle", state.bundle_detail)
    if not state.camera_ok:
        return _error(state, "camera", state.camera_detail or "camera missing")
    return replace(state, mode="preview", error=None, retake=(), retake_image=None)


def _common(state: AppState, event: Event) -> AppState | None:
    """Events handled the same way in every mode; None when not one of them."""
    if isinstance(event, Button):
        if event.name == "quit":
            return replace(state, mode="exit", commands=(Exit(),))
        if event.name.startswith(FAULT_PREFIX):
            return replace(state, commands=(InjectFault(event.name[len(FAULT_PREFIX) :]),))
        if event.name == "shutdown" and state.mode != "shutdown":
            return replace(state, mode="shutdown", back_to=state.mode)
        if event.name == "patient" and state.mode in PATIENT_FROM:
            return replace(state, mode="card", card_problem="", message="")
        return None
    if isinstance(event, CameraNotice):
        return replace(state, warning=event.detail)
    if isinstance(event, Failed) and event.problem == "camera":
        state = replace(state, camera_ok=False, camera_detail=event.detail)
        if state.mode in LIVE_MODES or (
            state.mode == "error" and state.error is not None and state.error.problem == "camera"
        ):
            return _error(state, "camera", event.detail)
        return state
    if isinstance(event, CameraReady):
        state = replace(state, camera_ok=True, camera_detail="")
        if state.mode == "error" and state.error is not None and state.error.problem == "camera":
            return _enter_preview(state)
        return state
    if isinstance(event, Failed) and event.problem == "bundle":
        state = replace(state, bundle_ok=False, bundle_detail=event.detail)
        if state.mode in ("preview", "analyzing", "error"):
            return _error(state, "bundle", event.detail)
        return state
    if isinstance(event, BundleReady):
        state = replace(state, bundle_ok=True, bundle_detail="")
        if state.mode == "error" and state.error is not None and state.error.problem == "bundle":
            return _enter_preview(state)
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
        if _showing_notice(state):
            # Each notice stays until acknowledged: a second one waits its turn.
            return replace(state, pending_notices=(*state.pending_notices, info))
        return replace(state, mode="error", error=info, back_to=state.mode)
    return None


def _showing_notice(state: AppState) -> bool:
    return state.mode == "error" and state.error is not None and state.error.problem == "notice"


def _load_history(state: AppState) -> AppState:
    """Ask for saved scans: this patient's while one is set."""
    return replace(state, commands=(LoadHistory(state.patient_ref),))


def _preview(state: AppState, event: Event) -> AppState:
    if isinstance(event, Frame):
        return replace(state, frame=event)
    if isinstance(event, Button):
        if event.name == "capture":
            if not state.bundle_ok:
                return _error(state, "bundle", state.bundle_detail)
            return replace(state, mode="analyzing", commands=(Capture(),), message="", warning="")
        if event.name == "toggle":
            index = BODY_SITES.index(state.body_site) if state.body_site in BODY_SITES else 0
            return replace(state, mode="site", site_index=index)
        if event.name in ("next", "history"):
            return _load_history(state)
    return state


def _card(state: AppState, event: Event) -> AppState:
    if isinstance(event, Frame):
        return replace(state, frame=event)
    if isinstance(event, Button):
        if event.name == "capture":
            return replace(state, mode="reading", commands=(ReadCard(),), warning="")
        if event.name == "toggle" and state.patient_ref:
            cleared = replace(
                state,
                patient_ref=None,
                body_site=None,
                message="Patient cleared: scan the next patient's card",
            )
            return _enter_preview(cleared)
        if event.name == "back":
            return _enter_preview(state)
    return state


def _reading(state: AppState, event: Event) -> AppState:
    if isinstance(event, CardRead):
        same = event.patient_ref == state.patient_ref
        site = state.body_site if same else None  # a new patient starts without a site
        read = replace(
            state,
            patient_ref=event.patient_ref,
            body_site=site,
            card_problem="",
            message="Patient card read" + ("" if site else ": choose the body site"),
        )
        return _enter_preview(read)
    if isinstance(event, CardRefused):
        return replace(state, mode="card", card_problem=event.reason)
    if isinstance(event, Failed):
        return replace(state, mode="card", card_problem=event.detail)
    return state


def _site(state: AppState, event: Event) -> AppState:
    if not isinstance(event, Button):
        return state
    count = len(BODY_SITES)
    if event.name == "next":
        return replace(state, site_index=(state.site_index + 1) % count)
    if event.name == "toggle":
        return replace(state, site_index=(state.site_index - 1) % count)
    if event.name in ("capture", "save"):
        site = BODY_SITES[state.site_index]
        return _enter_preview(replace(state, body_site=site, message=f"Body site: {site}"))
    if event.name == "back":
        return _enter_preview(state)
    return state


def _analyzing(state: AppState, event: Event) -> AppState:
    if isinstance(event, Analyzed):
        # The scan belongs to the patient and site set when it was made.
        result = replace(event.result, patient_ref=state.patient_ref, body_site=state.body_site)
        return replace(state, mode="result", result=result)
    if isinstance(event, QualityFailed):
        return replace(state, mode="retake", retake=event.reasons, retake_image=event.image)
    if isinstance(event, Failed):
        return _error(state, event.problem, event.detail)
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
            return replace(state, commands=(Save(result),))
        if event.name in ("capture", "back"):
            return _enter_preview(state)
        if event.name in ("next", "history"):
            return _load_history(state)
    if isinstance(event, Saved):
        saved = replace(result, saved_id=event.scan_id, created_at=event.created_at)
        return replace(state, result=saved)
    if isinstance(event, Failed):
        return _error(state, event.problem, event.detail, back_to="result")
    return state


def _history(state: AppState, event: Event) -> AppState:
    if isinstance(event, Button):
        if event.name == "next" and len(state.history) > 1:
            return replace(state, history_index=(state.history_index + 1) % len(state.history))
        if event.name == "toggle":
            return replace(state, show_heatmap=not state.show_heatmap)
        if event.name == "save" and state.patient_ref:
            scope = None if state.history_patient else state.patient_ref
            return replace(state, commands=(LoadHistory(scope),))
        if event.name == "capture" and state.history:
            earlier = earlier_same_site(state.history, state.history_index)
            if earlier:
                return replace(state, mode="compare", compare_index=earlier[0])
        if event.name in ("back", "capture"):
            return _enter_preview(state)
    return state


def _compare(state: AppState, event: Event) -> AppState:
    if isinstance(event, Button):
        if event.name == "next":
            earlier = earlier_same_site(state.history, state.history_index)
            position = earlier.index(state.compare_index) if state.compare_index in earlier else -1
            return replace(state, compare_index=earlier[(position + 1) % len(earlier)])
        if event.name == "toggle":
            return replace(state, show_heatmap=not state.show_heatmap)
        if event.name in ("back", "capture"):
            return replace(state, mode="history")
    return state


def _retake(state: AppState, event: Event) -> AppState:
    if isinstance(event, Button) and event.name in ("capture", "back"):
        return _enter_preview(state)
    return state


def _error_mode(state: AppState, event: Event) -> AppState:
    problem = state.error.problem if state.error else ""
    if not isinstance(event, Button):
        return state
    if problem == "bundle":
        if event.name == "capture":
            return replace(state, commands=(ReloadBundle(),))
        if event.name in ("next", "history"):
            return replace(state, commands=(LoadHistory(),))
    elif problem in ("disk_full", "storage", "notice") and event.name in ("back", "capture"):
        if problem == "notice" and state.pending_notices:
            following, *rest = state.pending_notices
            return replace(state, error=following, pending_notices=tuple(rest))
        if state.back_to == "result" and state.result is not None:
            return replace(state, mode="result", error=None)
        return _enter_preview(replace(state, error=None))
    elif problem == "analysis" and event.name in ("capture", "back"):
        return _enter_preview(replace(state, error=None))
    return state


def _shutdown(state: AppState, event: Event) -> AppState:
    if not isinstance(event, Button):
        return state
    if event.name in ("capture", "shutdown"):
        return replace(state, mode="exit", commands=(PowerOff() if state.poweroff else Exit(),))
    if event.name in ("back", "power", "toggle", "next", "save", "patient"):
        if state.back_to in ("analyzing", "reading"):
            return _enter_preview(state)
        return replace(state, mode=state.back_to)
    return state


_MODE_STEPS = {
    "preview": _preview,
    "analyzing": _analyzing,
    "result": _result,
    "history": _history,
    "compare": _compare,
    "card": _card,
    "reading": _reading,
    "site": _site,
    "retake": _retake,
    "error": _error_mode,
    "shutdown": _shutdown,
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


def _off(state: AppState) -> str:
    """What the shutdown button does here: power off a Pi, quit the simulator."""
    return "Power off" if state.poweroff else "Quit"


def _hints(*pairs: tuple[str, str]) -> tuple[Hint, ...]:
    return tuple(Hint(button, action) for button, action in pairs)


def _result_screen(result: ResultView, show_heatmap: bool, title: str, hints) -> ResultScreen:
    return ResultScreen(
        image=result.image,
        overlay=result.overlay,
        show_heatmap=show_heatmap,
        top3=result.top3,
        p_malignant=result.p_malignant,
        referral_threshold=result.referral_threshold,
        risk_tier=result.risk_tier,
        unfamiliar=result.unfamiliar,
        unusual_light=result.unusual_light,
        legend=result.legend,
        saved="Saved" if result.saved_id else "Not saved yet",
        is_saved=result.saved_id is not None,
        title=title,
        scan_key=result.scan_key,
        hints=hints,
    )


def _compare_side(item: ResultView) -> CompareSide:
    return CompareSide(
        image=item.image,
        overlay=item.overlay,
        when=when_text(item.created_at),
        risk_tier=item.risk_tier,
        p_malignant=item.p_malignant,
        label=item.top3[0].name if item.top3 else item.label,
        unfamiliar=item.unfamiliar,
    )


def _history_view(state: AppState) -> Screen:
    if not state.history:
        scope = "Patient " + state.history_patient if state.history_patient else ""
        hints = [("back", "Back")]
        if state.patient_ref:
            hints.insert(0, ("save", "This patient" if not state.history_patient else "All"))
        return HistoryScreen(
            index=0,
            total=0,
            result=None,
            scope=scope,
            hints=_hints(*hints),
            unreadable=state.history_unreadable,
        )
    index, total = state.history_index, len(state.history)
    item = state.history[index]
    earlier = earlier_same_site(state.history, index)
    pairs: list[tuple[str, str]] = []
    if total > 1:
        pairs.append(("next", "Newest" if index == total - 1 else "Older"))
    pairs.append(("toggle", "Heatmap"))
    if earlier:
        pairs.append(("capture", "Compare"))
    if state.patient_ref:
        pairs.append(("save", "All" if state.history_patient else "This patient"))
    pairs.append(("back", "Live view"))
    if state.history_patient:
        scope = f"Patient {state.history_patient}"
    else:
        scope = "All patients" if state.patient_ref else ""
    # Within one patient's history the site says enough; among everyone's, name the patient.
    who = None if state.history_patient else item.patient_ref
    subject = " · ".join(x for x in (who, item.body_site) if x)
    title = f"Saved scan {index + 1} of {total}"
    return HistoryScreen(
        index=index,
        total=total,
        result=_result_screen(item, state.show_heatmap, title, ()),
        created_at=when_text(item.created_at),
        hints=_hints(*pairs),
        scope=scope,
        subject=subject,
        earlier=len(earlier),
        unreadable=state.history_unreadable,
    )


def _compare_view(state: AppState) -> Screen:
    later = state.history[state.history_index]
    earlier = state.history[state.compare_index]
    older = earlier_same_site(state.history, state.history_index)
    position = older.index(state.compare_index) + 1 if state.compare_index in older else 1
    pairs = [("toggle", "Heatmap"), ("back", "History")]
    if len(older) > 1:
        pairs.insert(0, ("next", "Earlier"))
    return CompareScreen(
        earlier=_compare_side(earlier),
        later=_compare_side(later),
        show_heatmap=state.show_heatmap,
        site=later.body_site or "",
        change=change_line(earlier, later),
        position=f"{position} of {len(older)}",
        hints=_hints(*pairs),
    )


def _screen(state: AppState) -> Screen:
    """The screen for ``state``, without the patient line."""
    mode = state.mode
    if mode == "preview":
        frame = state.frame
        hints = _hints(
            ("capture", "Scan"),
            ("toggle", "Site"),
            ("next", "History"),
            ("patient", "Patient"),
            ("shutdown", _off(state)),
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
        )
    if mode == "analyzing":
        return AnalyzingScreen(frame=state.frame.image if state.frame else None)
    if mode == "card":
        pairs = [("capture", "Read card")]
        if state.patient_ref:
            pairs.append(("toggle", "Next patient"))
        pairs.append(("back", "Cancel"))
        return CardScreen(
            frame=state.frame.image if state.frame else None,
            problem=state.card_problem,
            current=state.patient_ref or "",
            hints=_hints(*pairs),
        )
    if mode == "reading":
        return AnalyzingScreen(
            frame=state.frame.image if state.frame else None,
            text="Reading card…",
            title="Patient card",
        )
    if mode == "site":
        return SiteScreen(
            sites=BODY_SITES,
            index=state.site_index,
            current=state.body_site or "",
            hints=_hints(
                ("capture", "Choose"), ("next", "Down"), ("toggle", "Up"), ("back", "Cancel")
            ),
        )
    if mode == "result":
        assert state.result is not None
        hints = _hints(
            ("capture", "New scan"), ("toggle", "Heatmap"), ("save", "Save"), ("next", "History")
        )
        if state.result.saved_id:
            hints = _hints(("capture", "New scan"), ("toggle", "Heatmap"), ("next", "History"))
        return _result_screen(state.result, state.show_heatmap, "Result", hints)
    if mode == "retake":
        return RetakeScreen(
            frame=state.retake_image,  # type: ignore[arg-type]
            reasons=state.retake,
            hints=_hints(("capture", "Try again")),
        )
    if mode == "history":
        return _history_view(state)
    if mode == "compare":
        return _compare_view(state)
    if mode == "error":
        error = state.error or ErrorInfo("analysis", "unknown problem")
        title, action = ERROR_TEXT.get(error.problem, ERROR_TEXT["analysis"])
        detail, path_label = error.detail, ""
        if error.problem == "notice" and error.cause in NOTICE_TEXT:
            # The title and action say it in plain words; the path below says where.
            title, action, path_label = NOTICE_TEXT[error.cause]
            action += " Press Capture when you have read this."
        hints: tuple[Hint, ...]
        if error.problem == "bundle":
            hints = _hints(("capture", "Retry"), ("next", "History"), ("shutdown", _off(state)))
        elif error.problem in ("disk_full", "storage"):
            hints = _hints(("back", "Back to result"), ("shutdown", _off(state)))
        elif error.problem in ("analysis", "notice"):
            hints = _hints(("capture", "Continue"), ("shutdown", _off(state)))
        else:
            hints = _hints(("shutdown", _off(state)))
        return ErrorScreen(
            problem=error.problem,
            title=title,
            detail=detail,
            action=action,
            retrying=error.problem == "camera",
            hints=hints,
            steps=ERROR_STEPS.get(error.problem, ()),
            path=error.path if path_label else "",
            path_label=path_label,
            cause=error.cause,
        )
    if mode == "shutdown":
        return ShutdownScreen(
            confirmed=False,
            poweroff=state.poweroff,
            hints=_hints(
                ("capture", "Power off" if state.poweroff else "Quit"), ("back", "Cancel")
            ),
        )
    return ShutdownScreen(confirmed=True, poweroff=state.poweroff)


def view(state: AppState) -> Screen:
    """What the screen shows for ``state``: every screen carries the patient line."""
    screen = _screen(state)
    line = patient_line(state.patient_ref, state.body_site)
    return replace(screen, patient=line) if line else screen
