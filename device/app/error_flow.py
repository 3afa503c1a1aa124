"""The error and notice sub-flow: what each problem says, and how the health worker
gets past it (a notice stays until acknowledged; several are shown in turn).
"""

from __future__ import annotations

from dataclasses import replace

from device.app.events import Button, ErrorInfo, Event, LoadHistory, ReloadBundle
from device.app.state import AppState, enter_preview
from device.app.view_parts import make_hints, power_label
from device.ui.screens import ErrorScreen, Hint, Screen

ERROR_TEXT: dict[str, tuple[str, str]] = {
    # problem -> (title, what to do)
    "camera": (
        "Camera not found",
        "Check that the camera cable is plugged in firmly. The device keeps trying to "
        "reconnect and continues by itself.",
    ),
    "bundle": (
        "Model bundle missing or invalid",
        "Scans cannot be analysed. Reinstall the model bundle (see docs/deployment.md), then "
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
# Space is freed only by archiving scans the clinic has confirmed it has (docs/records.md),
# all from the menu (a long hold of NEXT, device.app.menu_flow): no keyboard, no shell.
FREE_SPACE_STEPS: tuple[str, ...] = (
    "1. Plug in a USB stick. Menu (hold NEXT): Export to USB.",
    "2. Take the stick to the clinic; it puts its receipt on it.",
    "3. Plug the stick in again. Menu: Free space.",
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
    "read_only": (
        "Scans can NOT be saved",
        "The scanner cannot write to its data folder. Saved scans can still be viewed. "
        "Write results down by hand and tell your supervisor.",
        "The data folder is:",
    ),
    "bundle_fallback": (
        "Model: running an earlier bundle",
        "The installed model bundle failed its check at start-up, so the scanner runs the "
        "one named below. Scans are analysed and saved as usual, and each records which "
        "bundle made it. Tell your supervisor.",
        "",
    ),
    "storage_full": (
        "Storage full — new scans NOT saved",
        "Saved scans can still be viewed and exported. To free space:",
        "",
    ),
}
# Store notices that come with steps: the storage full at start-up is freed as on the
# Storage-full screen.
NOTICE_STEPS: dict[str, tuple[str, ...]] = {"storage_full": FREE_SPACE_STEPS}


def showing_notice(state: AppState) -> bool:
    """A notice is on screen (a new one waits its turn)."""
    return state.mode == "error" and state.error is not None and state.error.problem == "notice"


def error_step(state: AppState, event: Event) -> AppState:
    """A problem on screen: retry, continue, or go back."""
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
        return enter_preview(replace(state, error=None))
    elif problem == "analysis" and event.name in ("capture", "back"):
        return enter_preview(replace(state, error=None))
    return state


def error_view(state: AppState) -> Screen:
    """The problem or notice on screen: what happened and what to do."""
    error = state.error or ErrorInfo("analysis", "unknown problem")
    title, action = ERROR_TEXT.get(error.problem, ERROR_TEXT["analysis"])
    detail, path_label = error.detail, ""
    steps = ERROR_STEPS.get(error.problem, ())
    if error.problem == "notice" and error.cause in NOTICE_TEXT:
        # The title and action say it in plain words; the path below says where.
        title, action, path_label = NOTICE_TEXT[error.cause]
        steps = NOTICE_STEPS.get(error.cause, ())
        if not steps:  # steps follow an action that ends "To free space:"
            action += " Press Capture when you have read this."
    hints: tuple[Hint, ...]
    if error.problem == "bundle":
        hints = make_hints(
            ("capture", "Retry"), ("next", "History"), ("shutdown", power_label(state))
        )
    elif error.problem == "disk_full":
        hints = make_hints(
            ("back", "Back to result"), ("menu", "Menu"), ("shutdown", power_label(state))
        )
    elif error.problem == "storage":
        hints = make_hints(("back", "Back to result"), ("shutdown", power_label(state)))
    elif error.problem == "notice" and steps:
        hints = make_hints(
            ("capture", "Continue"), ("menu", "Menu"), ("shutdown", power_label(state))
        )
    elif error.problem in ("analysis", "notice"):
        hints = make_hints(("capture", "Continue"), ("shutdown", power_label(state)))
    else:
        hints = make_hints(("shutdown", power_label(state)))
    return ErrorScreen(
        problem=error.problem,
        title=title,
        detail=detail,
        action=action,
        retrying=error.problem == "camera",
        hints=hints,
        steps=steps,
        path=error.path if path_label else "",
        path_label=path_label,
        cause=error.cause,
    )
