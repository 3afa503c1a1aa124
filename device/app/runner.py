"""The main loop: hardware and model on one side, the pure controller on the other.

Each turn of the loop drains the buttons, reopens a lost camera when due, grabs
a live-view frame (in the live view only), feeds every event to the
controller, carries out the commands it asks for, draws the screen, and pings
the systemd watchdog. Nothing in the loop raises to the top: every failure
becomes an event and an error screen.
"""

from __future__ import annotations

import logging
import re
import subprocess
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

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
    Command,
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
    Save,
    Saved,
)
from device.app.preview import PreviewAnalyzer
from device.app.results import (
    legend_colours,
    record_from_result,
    result_from_analysis,
    result_from_record,
)
from device.app.systemd import Notifier
from device.errors import CameraError, DiskFullError, ImageError, SkinScanError, StorageError
from device.hw.buttons import BUTTON_EVENTS, button_labels
from device.imaging.quality import QualityThresholds, assess_quality
from device.records.paths import DB_NAME
from device.ui.render import Renderer
from device.ui.screens import Screen

log = logging.getLogger(__name__)

HISTORY_LIMIT = 50


@dataclass
class CaptureTimings:
    """Seconds spent in each stage of one capture, from button to result on screen."""

    capture: float = 0.0
    quality: float = 0.0
    preprocess: float = 0.0
    inference: float = 0.0
    gradcam: float = 0.0
    render: float = 0.0
    total: float = 0.0
    outcome: str = ""
    started: float = field(default=0.0, repr=False)


class NoButtons:
    """No input at all (headless with no script): the app runs until stopped."""

    labels: ClassVar[dict[str, str]] = button_labels(BUTTON_EVENTS)

    def poll(self) -> list[str]:
        """Nothing ever arrives."""
        return []

    def close(self) -> None:
        """Nothing to release."""


class App:
    """The device application.

    Args:
        camera: the camera seam (not yet opened).
        buttons: the buttons seam.
        display: the display seam (not yet opened).
        store: the scan store (:class:`device.records.api.ScanStore`).
        load_analyzer: returns a ready ``Analyzer``; raises on an invalid bundle.
        thresholds: the capture quality gate.
        heatmap_alpha: heatmap opacity on the result screen.
        max_fps: live-view frame-rate cap; 0 for no cap (benchmarks).
        camera_retry_s: seconds between attempts to reopen the camera.
        poweroff: confirming shutdown powers off (a Pi) rather than exiting.
        shutdown_command: the power-off command line.
        device_id: written into every record; None = the store's id.
        notifier: systemd notifications (default: from the environment).
        run_command: runs the shutdown command (tests replace it).
        keep_screens: how many distinct screens to keep in :attr:`screens_shown`
            (tests and tools read them; 0 keeps none, so a long run holds no frames).
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
        max_fps: int = 30,
        camera_retry_s: float = 2.0,
        poweroff: bool = False,
        shutdown_command: Sequence[str] = ("systemctl", "poweroff"),
        device_id: str | None = None,
        notifier: Notifier | None = None,
        run_command: Callable[..., Any] = subprocess.run,
        keep_screens: int = 0,
    ) -> None:
        self.camera = camera
        self.buttons = buttons
        self.display = display
        self.store = store
        self.load_analyzer = load_analyzer
        self.thresholds = thresholds or QualityThresholds()
        self.heatmap_alpha = heatmap_alpha
        self.max_fps = max_fps
        self.camera_retry_s = camera_retry_s
        self.shutdown_command = tuple(shutdown_command)
        self.device_id = device_id
        self.notifier = notifier or Notifier()
        self.run_command = run_command
        self.preview = PreviewAnalyzer(self.thresholds)
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

    def start(self) -> None:
        """Open the screen, load the bundle, open the camera, show the first screen, READY=1."""
        self.display.open()
        self.renderer = Renderer(self.display.size, getattr(self.buttons, "labels", {}))
        self.screen = view(self.state)
        self.present()
        self._load_bundle(initial=True)
        self._try_camera(initial=True)
        for notice in getattr(self.store, "notices", []):
            self.dispatch(notice_event(notice))
        self.present()
        status = "scanning" if self.state.mode == "preview" else f"showing {self.state.mode}"
        self.notifier.ready(status)
        log.info("SkinScan ready (%s)", status)

    def close(self) -> None:
        """Release camera, buttons, record store and screen; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self.notifier.stopping()
        for name, part in (
            ("camera", self.camera),
            ("buttons", self.buttons),
            ("record store", self.store),
            ("display", self.display),
        ):
            try:
                part.close()
            except Exception as exc:  # one failing close must not keep the rest open
                log.warning("closing the %s failed: %s", name, exc)
        log.info("SkinScan closed")

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
        self._try_camera()
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

    def _live_frame(self, image: Any) -> Event:
        """The live-view event for ``image``; a frame the gate cannot assess never stops the app."""
        try:
            return self.preview.analyze(image)
        except ImageError as exc:
            log.warning("live view: %s", exc)
            return Frame(image=image, lesion_box=None, quality_ok=False, reason=str(exc), fps=0.0)

    def _camera_notices(self) -> None:
        """Show what the camera skipped (the simulator's unreadable image files)."""
        take = getattr(self.camera, "take_notices", None)
        notices = take() if take is not None else []
        if notices:
            self.dispatch(CameraNotice(" · ".join(notices)))

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

    def execute(self, command: Command) -> Event | None:
        """Do one command's work; returns the outcome as an event (or None)."""
        if isinstance(command, Capture):
            return self._capture()
        if isinstance(command, Save):
            return self._save(command)
        if isinstance(command, LoadHistory):
            return self._history(command.patient_ref)
        if isinstance(command, ReadCard):
            return self._read_card()
        if isinstance(command, ReloadBundle):
            return self._load_bundle()
        if isinstance(command, InjectFault):
            inject = getattr(self.camera, "inject", None)
            if inject is None:
                log.warning("camera %s cannot simulate faults", getattr(self.camera, "name", ""))
            else:
                inject(command.fault)
            return None
        if isinstance(command, PowerOff):
            self.poweroff_requested = True
            return None
        if isinstance(command, Exit):
            return None
        raise TypeError(f"unknown command {command!r}")

    def _load_bundle(self, initial: bool = False) -> Event | None:
        try:
            self.analyzer = self.load_analyzer()
        except Exception as exc:  # any failure to load is shown on screen, never raised
            log.error(
                "model bundle not loaded: %s", exc, exc_info=not isinstance(exc, SkinScanError)
            )
            self.analyzer = None
            event: Event = Failed("bundle", str(exc) or type(exc).__name__)
        else:
            log.info("model bundle loaded: %s", getattr(self.analyzer.bundle, "bundle_id", "?"))
            event = BundleReady()
        if initial:
            self.dispatch(event)
            return None
        return event

    def _try_camera(self, initial: bool = False) -> None:
        if self.camera_open:
            return
        now = time.monotonic()
        if not initial and now < self._next_camera_try:
            return
        try:
            self.camera.open()
        except CameraError as exc:
            self._next_camera_try = now + self.camera_retry_s
            if initial or self.state.camera_ok:
                log.error("camera: %s", exc)
                self.dispatch(Failed("camera", str(exc)))
            return
        self.camera_open = True
        self.preview.reset()
        if not initial or not self.state.camera_ok:
            log.info("camera ready: %s", getattr(self.camera, "name", "camera"))
        self.dispatch(CameraReady())

    def _camera_lost(self, exc: Exception) -> None:
        log.error("camera lost: %s", exc)
        self.camera_open = False
        try:
            self.camera.close()
        except Exception as close_exc:
            log.warning("closing the lost camera failed: %s", close_exc)
        self._next_camera_try = time.monotonic() + self.camera_retry_s
        self.dispatch(Failed("camera", str(exc)))

    def _capture(self) -> Event:
        timing = CaptureTimings(started=time.perf_counter())
        self.present()  # the "Analysing" screen, while the work below runs
        t0 = time.perf_counter()
        try:
            still = self.camera.capture_still()
        except CameraError as exc:
            self._camera_lost(exc)
            return Failed("camera", str(exc))
        self._camera_notices()
        t1 = time.perf_counter()
        try:
            report = assess_quality(still, self.thresholds)
        except ImageError as exc:  # e.g. a 20x15 frame: a retake, never an exit
            log.info("retake: %s", exc)
            timing.outcome = "retake"
            self._pending = timing
            return QualityFailed((f"unusable photo — {exc}",), _showable(still))
        t2 = time.perf_counter()
        timing.capture, timing.quality = t1 - t0, t2 - t1
        self._pending = timing
        if not report.passed:
            timing.outcome = "retake"
            log.info("retake: %s", "; ".join(report.reasons))
            return QualityFailed(report.reasons, still)
        if self.analyzer is None:
            return Failed("bundle", self.state.bundle_detail or "no model bundle loaded")
        try:
            analysis = self.analyzer.analyze(still, explain=True)
        except Exception as exc:
            log.error("analysis failed: %s", exc, exc_info=True)
            timing.outcome = "error"
            return Failed("analysis", str(exc) or type(exc).__name__)
        timing.preprocess = analysis.timings.get("preprocess", 0.0)
        timing.inference = analysis.timings.get("classify", 0.0)
        timing.gradcam = analysis.timings.get("explain", 0.0)
        timing.outcome = "result"
        self.scans += 1
        if self._legend is None:
            self._legend = legend_colours()
        result = result_from_analysis(
            analysis,
            referral_threshold=self.analyzer.calibration.referral_threshold,
            quality=report.metrics(),
            scan_key=f"scan{self.scans}",
            heatmap_alpha=self.heatmap_alpha,
            legend=self._legend,
            frame=still,
        )
        log.info(
            "result: %s %.0f%%, P(malignant) %.0f%%, %s",
            result.label,
            100 * result.top3[0].probability,
            100 * result.p_malignant,
            result.risk_tier,
        )
        return Analyzed(result)

    def _read_card(self) -> Event:
        """Take a still and read the patient reference from the card's QR code."""
        from device.records.api import PatientRefError
        from device.records.qr import read_patient_ref

        self.present()  # "Reading card…" while the still is taken and decoded
        try:
            still = self.camera.capture_still()
        except CameraError as exc:
            self._camera_lost(exc)
            return Failed("camera", str(exc))
        self._camera_notices()
        try:
            ref = read_patient_ref(still)
        except PatientRefError as exc:
            log.info("patient card refused: %s", exc)
            return CardRefused(_sentence(str(exc)))
        except ImageError as exc:
            return CardRefused(_sentence(f"unusable photo: {exc}"))
        if ref is None:
            log.info("patient card: no QR code found")
            return CardRefused(
                "No QR code found. Hold the card flat under the lens, the whole code in view, "
                "and press Capture again."
            )
        log.info("patient card read")  # the reference itself stays out of the log
        return CardRead(ref)

    def _bundle_identity(self) -> tuple[str, str]:
        bundle = getattr(self.analyzer, "bundle", None)
        if bundle is None:
            return "unknown", "0" * 64
        return str(bundle.bundle_id), str(bundle.model_sha256)

    def _save(self, command: Save) -> Event:
        bundle_id, bundle_sha = self._bundle_identity()
        device_id = self.device_id or str(getattr(self.store, "device_id", "") or "unknown")
        record = record_from_result(
            command.result, device_id=device_id, bundle_id=bundle_id, bundle_sha256=bundle_sha
        )
        try:
            scan_id = self.store.save(record)
        except DiskFullError as exc:
            log.error("save failed, disk full: %s", exc)
            return Failed("disk_full", space_detail(self.store, exc))
        except StorageError as exc:
            log.error("save failed: %s", exc)
            return Failed("storage", str(exc))
        log.info("saved scan %s", scan_id)
        return Saved(scan_id, record.created_at)

    def _history(self, patient_ref: str | None = None) -> Event:
        threshold = 0.5
        if self.analyzer is not None:
            threshold = self.analyzer.calibration.referral_threshold
        try:
            records, unreadable = read_history(self.store, patient_ref, HISTORY_LIMIT)
            if self._legend is None:
                self._legend = legend_colours()
            items = tuple(result_from_record(r, threshold, self._legend) for r in records)
        except StorageError as exc:  # the whole database, not one record
            log.error("history unavailable: %s", exc)
            return Notice(f"Saved scans cannot be read: {exc}")
        return HistoryLoaded(items, patient_ref, unreadable)

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

    def _poweroff(self) -> int:
        log.info("powering off: %s", " ".join(self.shutdown_command))
        try:
            completed = self.run_command(list(self.shutdown_command), check=False)
        except OSError as exc:
            log.error("power-off command failed: %s", exc)
            return 1
        code = getattr(completed, "returncode", 0)
        if code:
            log.error("power-off command exited with %s", code)
            return 1
        return 0


def read_history(store: Any, patient_ref: str | None, limit: int) -> tuple[list[Any], int]:
    """Saved scans, newest first, and how many of this list could not be read.

    The store skips a record it cannot read and lists it in ``store.damaged``
    (scan id -> problem), which keeps what every earlier call found. To count only
    this list's damaged scans, the call runs against an empty ``damaged``, and the
    earlier entries are put back afterwards.
    """
    damaged = getattr(store, "damaged", None)
    if not isinstance(damaged, dict):
        return list(store.history(patient_ref=patient_ref, limit=limit)), 0
    earlier = dict(damaged)
    damaged.clear()
    try:
        records = list(store.history(patient_ref=patient_ref, limit=limit))
        found = len(damaged)
    finally:
        now = dict(damaged)
        damaged.update(earlier)
        damaged.update(now)
    return records, found


def space_detail(store: Any, exc: Exception) -> str:
    """How much space is free and reserved, and why the reserve exists, for the full-disk screen.

    Falls back to the error's own text for a store that does not say.
    """
    from device.records.space import free_bytes, human_bytes

    reserve = getattr(store, "reserve_bytes", None)
    folder = getattr(store, "data_dir", None)
    free = free_bytes(folder) if folder is not None else None
    if not isinstance(reserve, int) or free is None:
        return str(exc)
    return (
        f"{human_bytes(free)} free; {human_bytes(reserve)} is kept in reserve so that saved "
        "scans can always be opened, checked and exported."
    )


# The store's corrupt_db_moved message: "The scan database was damaged (REASON) and was moved".
_DAMAGE_REASON = re.compile(r"damaged \((?P<reason>.+?)\) and was moved")


def notice_event(notice: Any) -> Notice:
    """The event for one of the store's start-up notices (``StoreNotice``).

    For a database moved aside, the path shown is the old database file itself
    when it is there, and the detail is the damage found (the message would
    repeat the path).
    """
    message = str(getattr(notice, "message", notice))
    kind = str(getattr(notice, "kind", "") or "")
    path = str(getattr(notice, "path", "") or "")
    if kind == "corrupt_db_moved" and path:
        old_db = Path(path) / DB_NAME
        if old_db.is_file():
            path = str(old_db)
        found = _DAMAGE_REASON.search(message)
        if found:
            message = f"Damage found: {found['reason']}."
    return Notice(message, kind=kind, path=path)


def _sentence(text: str) -> str:
    """``text`` with a capital first letter and a full stop."""
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _showable(frame: Any) -> Any:
    """``frame`` if it can be drawn (an HxWx3 uint8 array), else None."""
    import numpy as np

    drawable = isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3
    return frame if drawable and frame.shape[2] == 3 and min(frame.shape[:2]) > 0 else None
