"""The main loop: hardware and model on one side, the pure controller on the other.

Each turn of the loop drains the buttons, reopens a lost camera when due, grabs
a live-view frame (in the live view only), feeds every event to the
controller, carries out the commands it asks for, draws the screen, and pings
the systemd watchdog. Nothing in the loop raises to the top: every failure
becomes an event and an error screen.

Start-up, the bundle and the camera are in :mod:`device.app.startup`; the work
behind each command in :mod:`device.app.actions`; the store's answers in
:mod:`device.app.store_events`.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from device.app.actions import HISTORY_LIMIT, Actions, CaptureTimings
from device.app.controller import AppState, initial_state, step
from device.app.events import Button, Event, Frame
from device.app.power import PowerLimits, PowerMonitor
from device.app.preview import PreviewAnalyzer
from device.app.startup import Startup
from device.app.store_events import notice_event, read_history, space_detail
from device.app.systemd import Notifier
from device.errors import CameraError, ImageError
from device.hw.buttons import BUTTON_EVENTS, button_labels
from device.imaging.quality import QualityThresholds
from device.ui.render import Renderer
from device.ui.screens import Screen

# Names other modules and the tests import from here.
__all__ = [
    "HISTORY_LIMIT",
    "App",
    "CaptureTimings",
    "NoButtons",
    "notice_event",
    "read_history",
    "space_detail",
]

log = logging.getLogger(__name__)


class NoButtons:
    """No input at all (headless with no script): the app runs until stopped."""

    labels: ClassVar[dict[str, str]] = button_labels(BUTTON_EVENTS)

    def poll(self) -> list[str]:
        """Nothing ever arrives."""
        return []

    def close(self) -> None:
        """Nothing to release."""


class App(Startup, Actions):
    """The device application.

    Args:
        camera: the camera seam (not yet opened).
        buttons: the buttons seam.
        display: the display seam (not yet opened).
        store: the scan store (:class:`device.records.api.ScanStore`).
        load_analyzer: returns a ready ``Analyzer``; raises on an invalid bundle.
        thresholds: the capture quality gate.
        heatmap_alpha: heatmap opacity on the result screen.
        field_width_mm: the width in mm the full still covers (0: unknown): the saved
            photos' scale, for lesion areas in follow-up.
        max_fps: live-view frame-rate cap; 0 for no cap (benchmarks).
        camera_retry_s: seconds between attempts to reopen the camera.
        poweroff: confirming shutdown powers off (a Pi) rather than exiting.
        shutdown_command: the power-off command line.
        device_id: written into every record; None = the store's id.
        notifier: systemd notifications (default: from the environment).
        run_command: runs the shutdown command (tests replace it).
        battery: the battery seam (:mod:`device.hw.battery`), or None when none is read.
        power_limits: when to warn about the battery and storage, and when to shut down.
        power_poll_s: seconds between readings of the battery and the free storage.
        keep_screens: how many distinct screens to keep in :attr:`screens_shown`
            (tests and tools read them; 0 keeps none, so a long run holds no frames).
        usb: the USB-stick seam (:mod:`device.hw.usb`) the menu exports to; None: none.
        open_bundle_store: opens the scanner's bundle store for the menu's Update
            model and Roll back (:func:`device.bundles.settings.open_bundle_store`); None:
            the menu says updates are not set up.
    """

    def __init__(
        self,
        *,
        camera: Any,
        buttons: Any,
        display: Any,
        store: Any,
        load_analyzer: Callable[[], Any],
        thresholds: QualityThresholds | None = None,
        heatmap_alpha: float = 0.5,
        field_width_mm: float = 0.0,
        max_fps: int = 30,
        camera_retry_s: float = 2.0,
        poweroff: bool = False,
        shutdown_command: Sequence[str] = ("systemctl", "poweroff"),
        device_id: str | None = None,
        notifier: Notifier | None = None,
        run_command: Callable[..., Any] = subprocess.run,
        battery: Any = None,
        power_limits: PowerLimits | None = None,
        power_poll_s: float = 10.0,
        keep_screens: int = 0,
        usb: Any = None,
        open_bundle_store: Callable[[], Any] | None = None,
    ) -> None:
        self.camera = camera
        self.buttons = buttons
        self.display = display
        self.store = store
        self.load_analyzer = load_analyzer
        self.thresholds = thresholds or QualityThresholds()
        self.heatmap_alpha = heatmap_alpha
        self.field_width_mm = field_width_mm
        self.max_fps = max_fps
        self.camera_retry_s = camera_retry_s
        self.shutdown_command = tuple(shutdown_command)
        self.device_id = device_id
        self.notifier = notifier or Notifier()
        self.run_command = run_command
        self.usb = usb
        self.open_bundle_store = open_bundle_store
        self.preview = PreviewAnalyzer(self.thresholds)
        self.power = PowerMonitor(battery, store, power_limits, power_poll_s)
        self.state: AppState = initial_state(poweroff=poweroff)
        self.screen: Screen | None = None
        self.renderer: Renderer | None = None
        self.analyzer: Any = None
        self.camera_open = False
        self.frames = 0
        self.scans = 0
        self.timings: list[CaptureTimings] = []
        self.screens_shown: deque[Screen] = deque(maxlen=keep_screens)
        self.stop_reason: str | None = None
        self.poweroff_requested = False
        self._next_camera_try = 0.0
        self._dirty = True
        self._pending: CaptureTimings | None = None
        self._legend: Any = None
        self._closed = False

    # ---- life cycle -------------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        """Ask the loop to finish its turn and close everything (signal-safe: sets a flag)."""
        self.stop_reason = reason

    def run(self, max_frames: int | None = None) -> int:
        """Run until stopped; returns the process exit status.

        Args:
            max_frames: stop after this many loop turns (tests, benchmarks).
        """
        try:
            self.start()
            self._loop(max_frames)
        finally:
            self.close()
        if self.poweroff_requested:
            return self._poweroff()
        return 0

    def _loop(self, max_frames: int | None) -> None:
        frame_s = 1.0 / self.max_fps if self.max_fps else 0.0
        settle = 0
        while self.stop_reason is None:
            started = time.perf_counter()
            self.turn()
            if self.state.mode == "exit":
                self.stop_reason = "shutdown confirmed" if self.poweroff_requested else "quit"
                if self.state.shutdown_reason == "battery":
                    self.stop_reason = "battery empty"
                break
            if max_frames is not None and self.frames >= max_frames:
                self.stop_reason = f"{max_frames} frames"
                break
            if getattr(self.buttons, "finished", False):
                # Let the last screen of a script be drawn (and saved) before leaving.
                settle += 1
                if settle > 2:
                    self.stop_reason = "script finished"
                    break
            spare = frame_s - (time.perf_counter() - started)
            if spare > 0:
                time.sleep(spare)
        log.info("stopping: %s", self.stop_reason)

    def turn(self) -> None:
        """One turn of the main loop."""
        for name in self.buttons.poll():
            self.dispatch(Button(name))
            if self.state.mode == "exit":
                self.present()
                return
        self._poll_power()
        if self.state.mode == "exit":
            self.present()
            return
        self._try_camera()
        self.poll_usb()
        if self.state.mode in ("preview", "card") and self.camera_open:
            try:
                image = self.camera.preview_frame()
            except CameraError as exc:
                self._camera_lost(exc)
            else:
                self._camera_notices()
                self.dispatch(self._live_frame(image))
        self.present()
        self.notifier.watchdog()
        self.frames += 1

    def _poll_power(self) -> None:
        """Read the battery and free storage when due; a critical battery shuts down."""
        event = self.power.poll()
        if event is not None:
            self.dispatch(event)

    def _live_frame(self, image: Any) -> Event:
        """The live-view event for ``image``; a frame the gate cannot assess never stops the app."""
        try:
            return self.preview.analyze(image)
        except ImageError as exc:
            log.warning("live view: %s", exc)
            return Frame(image=image, lesion_box=None, quality_ok=False, reason=str(exc), fps=0.0)

    # ---- events and commands ----------------------------------------------------------------

    def dispatch(self, event: Event) -> None:
        """Feed one event to the controller and carry out the commands it returns."""
        before = self.state.mode
        self.state, self.screen = step(self.state, event)
        self._dirty = True
        if self.state.mode == "preview" and before != "preview":
            self.preview.reset()
        for command in self.state.commands:
            outcome = self.execute(command)
            if outcome is not None:
                self.dispatch(outcome)

    # ---- drawing ----------------------------------------------------------------------------

    def present(self) -> None:
        """Draw the current screen if it changed (the live view always changes)."""
        if self.screen is None or self.renderer is None:
            return
        if not self._dirty and self.screen.kind != "preview":
            return
        started = time.perf_counter()
        self.renderer.draw(self.display.surface, self.screen)
        self.display.present(self.screen.snapshot_key)
        finished = time.perf_counter()
        self._dirty = False
        if self.screens_shown.maxlen and (
            not self.screens_shown
            or self.screens_shown[-1].snapshot_key != self.screen.snapshot_key
        ):
            self.screens_shown.append(self.screen)
        pending = self._pending
        if pending is not None and self.screen.kind in ("result", "retake", "error"):
            pending.render = finished - started
            pending.total = finished - pending.started
            self.timings.append(pending)
            self._pending = None
