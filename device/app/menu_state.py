"""What the menu and its USB work keep in the app's state, and what a finished task says.

Kept apart from :mod:`device.app.state` so that the menu's fields live in one value
(``AppState.menu``) and the flows that use them import nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

# Menu entries: (task, label). The task names are also the script verbs that run them.
MENU_ITEMS: tuple[tuple[str, str], ...] = (
    ("export", "Export to USB"),
    ("free-space", "Free space"),
    ("update-model", "Update model"),
    ("rollback-model", "Roll back model"),
)
MENU_TASKS: tuple[str, ...] = tuple(task for task, _ in MENU_ITEMS)
# One line under each entry: what it does.
MENU_HELP: dict[str, str] = {
    "export": "Copy every saved scan to the stick, sealed for the clinic",
    "free-space": "Use the clinic's receipt on the stick; move confirmed scans onto it",
    "update-model": "Install a model the clinic signed, from the stick",
    "rollback-model": "Go back to the model used before the last update",
}


@dataclass(frozen=True)
class UsbOutcome:
    """What a USB task did, as the result screen says it.

    Attributes:
        task: one of :data:`MENU_TASKS`.
        ok: it did what was asked (or there was nothing to do).
        title: the headline, e.g. "Exported 12 scans" or "No USB stick".
        lines: what happened, one fact a line (how many, what was left out).
        files: file names written on the stick, shown whole.
        next_step: what the health worker does next.
        removable: the stick was released: "You may remove the stick" is shown.
        stick: the stick's name ("" when none was used).
    """

    task: str
    ok: bool
    title: str
    lines: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    next_step: str = ""
    removable: bool = False
    stick: str = ""


@dataclass(frozen=True)
class MenuState:
    """The menu's part of the app state.

    Attributes:
        index: the highlighted entry of :data:`MENU_ITEMS`.
        back_to: the mode the menu returns to when closed.
        sticks: names of the USB sticks plugged in, as last checked.
        checked: the sticks have been looked for at least once since the menu opened.
        task: the task under way or last done ("" when none).
        progress: (done, total) of the task under way; total 0 when unknown.
        progress_text: what is under way, e.g. "Exporting scan 3 of 12".
        outcome: the last task's outcome, shown in "usb_done".
    """

    index: int = 0
    back_to: str = "preview"
    sticks: tuple[str, ...] = ()
    checked: bool = False
    task: str = ""
    progress: tuple[int, int] = (0, 0)
    progress_text: str = ""
    outcome: UsbOutcome | None = None
