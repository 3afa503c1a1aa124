"""The menu sub-flow: a list reached with a long hold of NEXT, and the USB work it starts.

====================  ==========================================================
menu                  next/toggle: down/up · capture/save: run the entry ·
                      back: close (back to where it was opened)
usb_busy              (waits for the task; the screen shows its progress)
usb_done              capture/back: back to the menu
====================  ==========================================================

The entries (:data:`device.app.menu_state.MENU_ITEMS`): Export to USB, Free space,
Update model, Roll back model. The script verbs of the same names (``export``,
``free-space``, ``update-model``, ``rollback-model``) run an entry directly, as a
tester would by opening the menu and choosing it.
"""

from __future__ import annotations

from dataclasses import replace

from device.app.events import Button, CheckUsb, Event, RunUsbTask, UsbChecked, UsbDone, UsbProgress
from device.app.history_flow import load_history
from device.app.menu_state import MENU_HELP, MENU_ITEMS, MENU_TASKS, MenuState, UsbOutcome
from device.app.state import AppState, enter_preview
from device.app.view_parts import make_hints
from device.ui.screens import MenuScreen, Screen, UsbBusyScreen, UsbResultScreen

MENU_EVENT = "menu"
MENU_MODES = ("menu", "usb_busy", "usb_done")
# Where the menu opens from: not while something is under way (analysing, reading a
# card) nor from a list that is itself being chosen from.
MENU_FROM = ("preview", "result", "retake", "history", "compare", "error")
TASK_TITLES: dict[str, str] = dict(MENU_ITEMS)
# More files than this (a large export's parts) are shown as the first and the last.
MAX_FILES_SHOWN = 3
BUSY_TEXT: dict[str, str] = {
    "export": "Exporting scans to the USB stick…",
    "free-space": "Reading the clinic's receipt and moving confirmed scans to the stick…",
    "update-model": "Checking the model on the stick…",
    "rollback-model": "Going back to the previous model…",
}


def opens_menu(state: AppState, event: Event) -> bool:
    """Whether ``event`` opens the menu or runs one of its entries from here."""
    return (
        isinstance(event, Button)
        and event.name in (MENU_EVENT, *MENU_TASKS)
        and state.mode in MENU_FROM
    )


def open_menu(state: AppState, name: str) -> AppState:
    """The menu opened (``name`` is "menu"), or its entry ``name`` started at once."""
    menu = MenuState(back_to=state.mode, sticks=state.menu.sticks)
    state = replace(state, mode="menu", menu=menu, commands=(CheckUsb(),))
    if name in MENU_TASKS:
        return start_task(state, name)
    return state


def start_task(state: AppState, task: str) -> AppState:
    """Run ``task``: the busy screen until the outcome arrives."""
    menu = replace(
        state.menu,
        index=MENU_TASKS.index(task),
        task=task,
        progress=(0, 0),
        progress_text=BUSY_TEXT[task],
        outcome=None,
    )
    return replace(state, mode="usb_busy", menu=menu, commands=(RunUsbTask(task),))


def close_menu(state: AppState) -> AppState:
    """Back to where the menu was opened (the live view when that is gone)."""
    back = state.menu.back_to
    state = replace(state, menu=replace(state.menu, task="", outcome=None))
    if back == "result" and state.result is not None:
        return replace(state, mode="result")
    if back == "error" and state.error is not None:
        if state.error.problem not in ("camera", "bundle"):
            return replace(state, mode="error")
        # A camera or bundle problem shows again only if it still stands.
        return enter_preview(replace(state, error=None))
    if back in ("history", "compare"):
        # Free space may have moved scans off the device: read the list again.
        return load_history(enter_preview(state))
    return enter_preview(state)


def usb_event(state: AppState, event: Event) -> AppState | None:
    """USB events handled the same way in every mode; None when not one of them."""
    if isinstance(event, UsbChecked):
        return replace(state, menu=replace(state.menu, sticks=event.sticks, checked=True))
    return None


def menu_step(state: AppState, event: Event) -> AppState:
    """The menu on screen: move, choose, close."""
    if not isinstance(event, Button):
        return state
    count = len(MENU_ITEMS)
    index = state.menu.index
    if event.name == "next":
        return replace(state, menu=replace(state.menu, index=(index + 1) % count))
    if event.name == "toggle":
        return replace(state, menu=replace(state.menu, index=(index - 1) % count))
    if event.name in ("capture", "save"):
        return start_task(state, MENU_TASKS[index])
    if event.name in MENU_TASKS:
        return start_task(state, event.name)
    if event.name == MENU_EVENT:
        return replace(state, commands=(CheckUsb(),))
    if event.name == "back":
        return close_menu(state)
    return state


def usb_busy_step(state: AppState, event: Event) -> AppState:
    """A task under way: progress, then its outcome. Buttons wait."""
    if isinstance(event, UsbProgress):
        menu = replace(state.menu, progress=(event.done, event.total), progress_text=event.text)
        return replace(state, menu=menu)
    if isinstance(event, UsbDone):
        menu = replace(state.menu, outcome=event.outcome, progress=(0, 0))
        return replace(state, mode="usb_done", menu=menu)
    return state


def usb_done_step(state: AppState, event: Event) -> AppState:
    """The outcome on screen: back to the menu (which looks for sticks again)."""
    if isinstance(event, Button):
        if event.name in ("capture", "back", "save"):
            menu = replace(state.menu, task="", outcome=None)
            return replace(state, mode="menu", menu=menu, commands=(CheckUsb(),))
        if event.name in MENU_TASKS:
            return start_task(state, event.name)
    return state


def stick_line(menu: MenuState) -> str:
    """The USB line of the menu."""
    if not menu.checked:
        return "Looking for a USB stick…"
    if not menu.sticks:
        return "No USB stick: plug one in"
    more = f" (and {len(menu.sticks) - 1} more)" if len(menu.sticks) > 1 else ""
    return f"USB stick: {menu.sticks[0]}{more}"


def menu_view(state: AppState) -> Screen:
    """The screen for the menu modes."""
    menu = state.menu
    if state.mode == "menu":
        task = MENU_TASKS[menu.index]
        return MenuScreen(
            items=tuple(label for _, label in MENU_ITEMS),
            index=menu.index,
            help=MENU_HELP[task],
            stick=stick_line(menu),
            stick_found=bool(menu.sticks),
            hints=make_hints(
                ("next", "Down"), ("toggle", "Up"), ("capture", "Choose"), ("back", "Close")
            ),
        )
    if state.mode == "usb_busy":
        done, total = menu.progress
        return UsbBusyScreen(
            title=TASK_TITLES.get(menu.task, "USB stick"),
            text=menu.progress_text,
            done=done,
            total=total,
        )
    outcome = menu.outcome or UsbOutcome(menu.task, False, "Nothing was done")
    files, lines = outcome.files, outcome.lines
    if len(files) > MAX_FILES_SHOWN:
        # A large export comes in parts: the first and the last name, and how many.
        lines = (*lines, f"{len(files)} files on the stick, parts of one export: keep them "
                 "together.")  # fmt: skip
        files = (files[0], files[-1])
    return UsbResultScreen(
        heading=TASK_TITLES.get(outcome.task, "USB stick"),
        ok=outcome.ok,
        title=outcome.title,
        lines=lines,
        files=files,
        next_step=outcome.next_step,
        removable=outcome.removable,
        task=outcome.task,
        hints=make_hints(("capture", "Back to menu")),
    )
