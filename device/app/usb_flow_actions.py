"""Carrying out the menu's commands: look for sticks, and run a task on one.

A task finds the stick, mounts it, does its work with its progress on screen,
and always releases the stick (unmount, power off) before the outcome says
whether it may be removed. The systemd watchdog is fed while the task runs (by its
progress, and by a helper thread for parts that report none, such as archiving).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from device.app.events import (
    Button,
    CheckUsb,
    Event,
    RunUsbTask,
    UsbChecked,
    UsbDone,
    UsbProgress,
)
from device.app.menu_state import UsbOutcome
from device.app.usb_flow_tasks import WRITE_PROTECT_STEP
from device.hw.usb import NoSticks, UsbError, UsbReadOnlyError

log = logging.getLogger(__name__)

NO_STICK_STEP = "Plug a USB stick into the scanner, then choose it again from the menu."
# How often the open menu looks for a stick being plugged in or pulled out.
POLL_S = 1.0
# A task runs in the main loop, so the loop's watchdog pings stop meanwhile. Parts of it
# report no progress (archiving reads, seals and checks every scan in one call), so a
# helper thread feeds the watchdog, for at most this long: a task hung longer is still
# caught.
TASK_WATCHDOG_LIMIT_S = 15 * 60
TASK_WATCHDOG_EVERY_S = 1.0
REMOVE_OK = "You may remove the stick."


class UsbActions:
    """The USB work behind the menu, for :class:`device.app.runner.App`.

    A mixin: the App sets ``usb`` (a :class:`device.hw.usb.UsbSticks`), ``store``,
    ``notifier`` and provides ``dispatch`` and ``present``.
    """

    usb: Any = None
    _usb_polled: float = 0.0

    def usb_execute(self, command: CheckUsb | RunUsbTask) -> Event:
        """Do one menu command; returns its outcome as an event."""
        if isinstance(command, CheckUsb):
            self._usb_polled = time.monotonic()
            return UsbChecked(tuple(stick.name for stick in self._sticks().find()))
        try:
            with self._watchdog_fed():
                outcome = self._usb_task(command.task)
        except Exception as exc:  # a task must end on a screen, never in a crash
            log.error("menu task %s failed: %s", command.task, exc, exc_info=True)
            outcome = UsbOutcome(
                command.task, False, "Something went wrong", (str(exc) or type(exc).__name__,),
                next_step="Nothing was deleted. Try again; if it fails again, tell your "
                "supervisor.",
            )  # fmt: skip
        log.info("menu task %s: %s", command.task, outcome.title)
        self._drop_presses_made_meanwhile()
        return UsbDone(outcome)

    @contextlib.contextmanager
    def _watchdog_fed(self) -> Iterator[None]:
        """Feed the systemd watchdog from a helper thread while the block runs (at most
        :data:`TASK_WATCHDOG_LIMIT_S`)."""
        done = threading.Event()
        started = time.monotonic()

        def feed() -> None:
            while not done.wait(TASK_WATCHDOG_EVERY_S):
                if time.monotonic() - started > TASK_WATCHDOG_LIMIT_S:
                    log.error("menu task still running after %d s", TASK_WATCHDOG_LIMIT_S)
                    return
                self.notifier.watchdog()

        thread = threading.Thread(target=feed, name="usb-task-watchdog", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def _drop_presses_made_meanwhile(self) -> None:
        """Forget the presses queued while the task ran (an impatient CAPTURE would
        otherwise dismiss the outcome before it was read). A script's steps are kept: they
        are meant to follow; so is a window being closed."""
        buttons = getattr(self, "buttons", None)
        for source in getattr(buttons, "sources", [buttons]):
            if source is None or hasattr(source, "finished"):
                continue
            dropped = source.poll()
            if "quit" in dropped:
                self.dispatch(Button("quit"))
            if dropped:
                log.info("ignored %d button press(es) made during the task", len(dropped))

    def poll_usb(self) -> None:
        """While the menu is open, notice a stick plugged in or pulled out (once a second)."""
        if self.state.mode != "menu":
            return
        now = time.monotonic()
        if now - self._usb_polled < POLL_S:
            return
        self._usb_polled = now
        found = tuple(stick.name for stick in self._sticks().find())
        if found != self.state.menu.sticks or not self.state.menu.checked:
            self.dispatch(UsbChecked(found))

    def _sticks(self) -> Any:
        return self.usb if self.usb is not None else NoSticks()

    def usb_progress(self, text: str, done: int = 0, total: int = 0) -> None:
        """Show how far the task is, and tell the watchdog the app is alive."""
        self.dispatch(UsbProgress(text, done, total))
        self.present()
        self.notifier.watchdog()

    def _usb_task(self, task: str) -> UsbOutcome:
        if task == "rollback-model":
            return self._model_task(task, None, "")
        sticks = self._sticks().find()
        if not sticks:
            return UsbOutcome(task, False, "No USB stick found", next_step=NO_STICK_STEP)
        stick = sticks[0]
        self.usb_progress(f"Opening the USB stick {stick.name}…")
        try:
            folder = self._sticks().mount(stick)
        except UsbReadOnlyError as exc:
            return self._released(
                stick,
                UsbOutcome(
                    task, False, "The USB stick cannot be written", (str(exc),),
                    next_step=WRITE_PROTECT_STEP,
                    stick=stick.name,
                ),
            )  # fmt: skip
        except UsbError as exc:
            return UsbOutcome(
                task, False, "The USB stick cannot be opened", (str(exc),),
                next_step="Take the stick out, plug it in again and retry, or use another "
                "stick.", stick=stick.name,
            )  # fmt: skip
        try:
            outcome = self._stick_task(task, folder, stick.name)
        except Exception:
            self._release(stick)
            raise
        return self._released(stick, outcome)

    def _stick_task(self, task: str, folder: Path, name: str) -> UsbOutcome:
        from device.app.usb_flow_tasks import export_to, free_space_to

        if task == "export":
            return export_to(self.store, folder, self.usb_progress, name)
        if task == "free-space":
            return free_space_to(self.store, folder, self.usb_progress, name)
        if task == "update-model":
            return self._model_task(task, folder, name)
        raise ValueError(f"unknown menu task {task!r}")

    def _model_task(self, task: str, folder: Path | None, name: str) -> UsbOutcome:
        from device.app.usb_flow_model import model_task

        outcome, now_current = model_task(self, task, folder, name)
        if now_current is None:
            return outcome
        self.usb_progress("Loading the model…")
        event = self._load_bundle()
        if event is not None:
            self.dispatch(event)
        running = getattr(getattr(self.analyzer, "bundle", None), "bundle_id", None)
        if running != now_current:
            # e.g. started with --bundle DIR, which always runs that folder's bundle.
            note = (
                f"The scanner still runs {running or 'no model'}: {now_current} runs from "
                "the next start."
            )
            outcome = replace(outcome, lines=(*outcome.lines, note))
        return outcome

    def _release(self, stick: Any) -> str:
        """Release ``stick``; returns "" when it may be removed, else why not."""
        self.usb_progress(f"Closing the USB stick {stick.name}…")
        try:
            self._sticks().release(stick)
        except UsbError as exc:
            log.error("USB stick not released: %s", exc)
            return str(exc)
        return ""

    def _released(self, stick: Any, outcome: UsbOutcome) -> UsbOutcome:
        """``outcome`` once the stick is released, saying whether it may be removed."""
        problem = self._release(stick)
        if problem:
            note = f"Do NOT remove the stick yet: {problem}. Power the scanner off first."
            return replace(outcome, lines=(*outcome.lines, note), removable=False)
        return replace(outcome, removable=True)
