"""What the controller knows (:class:`AppState`), its modes, and the two moves every
flow makes: show a problem, or go back to the live view.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from device.app.events import Command, ErrorInfo, Frame, ResultView
from device.app.lesion_state import LesionChoice
from device.app.menu_state import MenuState
from device.ui.screens import DeviceStatus

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
    "confirm_save",
    "error",
    "shutdown",
    "menu",
    "usb_busy",
    "usb_done",
    "exit",
)
# Where the patient button opens the card screen (not while something is under way).

# Where the patient button opens the card screen (not while something is under way).
PATIENT_FROM = ("preview", "result", "retake", "history", "compare", "site")
# Modes that show the live camera and so fall to the camera error when it goes.

# Modes that show the live camera and so fall to the camera error when it goes.
LIVE_MODES = ("preview", "analyzing", "card", "reading")


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
        lesion: the side and lesion label chosen with the body site, where a card read
            leads, and the body-site list's progress (:mod:`device.app.lesion_state`).
        menu: the menu's highlighted entry, the sticks found and the USB task's progress
            and outcome (:mod:`device.app.menu_flow`).
        device_status: the battery and free storage last read (shown on the live view).
        shutdown_reason: "battery" when the device shut itself down, else "".
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
    menu: MenuState = field(default_factory=MenuState)
    lesion: LesionChoice = field(default_factory=LesionChoice)
    device_status: DeviceStatus | None = None
    shutdown_reason: str = ""
    commands: tuple[Command, ...] = ()


def initial_state(*, poweroff: bool = False) -> AppState:
    """The state at start: the live view, waiting for the first frame."""
    return AppState(poweroff=poweroff)


def show_error(state: AppState, problem: str, detail: str, back_to: str = "preview") -> AppState:
    """``state`` showing ``problem`` (back goes to ``back_to``)."""
    return replace(state, mode="error", error=ErrorInfo(problem, detail), back_to=back_to)


def enter_preview(state: AppState) -> AppState:
    """Back to the live view, unless a standing problem must be shown instead."""
    if not state.bundle_ok:
        return show_error(state, "bundle", state.bundle_detail)
    if not state.camera_ok:
        return show_error(state, "camera", state.camera_detail or "camera missing")
    return replace(state, mode="preview", error=None, retake=(), retake_image=None)
