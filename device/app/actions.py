"""Carrying out the controller's commands: capture and analyse a still, read a patient's
card, save a scan, load the history, power off. Each returns its outcome as an event.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from device.app.events import (
    Analyzed,
    AssignPatient,
    Capture,
    CardRead,
    CardRefused,
    CheckUsb,
    Command,
    Event,
    Exit,
    Failed,
    HistoryLoaded,
    InjectFault,
    LoadHistory,
    Notice,
    PatientAssigned,
    PowerOff,
    QualityFailed,
    ReadCard,
    ReloadBundle,
    RunUsbTask,
    Save,
    Saved,
)
from device.app.results import (
    legend_colours,
    record_from_result,
    result_from_analysis,
    result_from_record,
)
from device.app.store_events import read_history, space_detail
from device.app.usb_flow_actions import UsbActions
from device.errors import CameraError, DiskFullError, ImageError, SkinScanError, StorageError
from device.hw.battery import SIM_BATTERY_FAULTS
from device.imaging.quality import assess_quality
from device.records.assign import current_records

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


class Actions(UsbActions):
    """The work behind each command, for :class:`device.app.runner.App`.

    A mixin: the App sets the attributes (camera, store, analyzer, state...) and
    provides ``present``; the bundle is (re)loaded by :class:`Startup`.
    """

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
        if isinstance(command, AssignPatient):
            return self._assign_patient(command)
        if isinstance(command, ReloadBundle):
            return self._load_bundle()
        if isinstance(command, InjectFault) and command.fault in SIM_BATTERY_FAULTS:
            inject = getattr(self.power.battery, "inject", None)
            if inject is None:
                log.warning("no simulated battery for %s", command.fault)
            else:
                inject(command.fault)
                self.power.read_now()
            return None
        if isinstance(command, InjectFault):
            inject = getattr(self.camera, "inject", None)
            if inject is None:
                log.warning("camera %s cannot simulate faults", getattr(self.camera, "name", ""))
            else:
                inject(command.fault)
            return None
        if isinstance(command, (CheckUsb, RunUsbTask)):
            return self.usb_execute(command)
        if isinstance(command, PowerOff):
            self.poweroff_requested = True
            return None
        if isinstance(command, Exit):
            return None
        raise TypeError(f"unknown command {command!r}")

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
            bundle=getattr(self.analyzer, "bundle", None),
            field_width_mm=getattr(self, "field_width_mm", None),
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
            records = current_records(records)  # a scan given a patient later shows once
            if self._legend is None:
                self._legend = legend_colours()
            items = tuple(result_from_record(r, threshold, self._legend) for r in records)
        except StorageError as exc:  # the whole database, not one record
            log.error("history unavailable: %s", exc)
            return Notice(f"Saved scans cannot be read: {exc}")
        return HistoryLoaded(items, patient_ref, unreadable)

    def _assign_patient(self, command: AssignPatient) -> Event:
        """Give a saved scan a patient (a correction record; see device.records.assign)."""
        from device.records.assign import assign_patient

        try:
            saved = assign_patient(self.store, command.scan_id, command.patient_ref)
        except DiskFullError as exc:
            return Failed("disk_full", space_detail(self.store, exc))
        except (SkinScanError, KeyError) as exc:  # PatientAlreadySetError is one
            log.error("patient not assigned: %s", exc)
            return Failed("storage", f"the patient was NOT given to the scan: {exc}")
        log.info("scan %s given a patient as %s", command.scan_id, saved.scan_id)
        return PatientAssigned(command.scan_id, saved.scan_id, saved.patient_ref or "")

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


def _sentence(text: str) -> str:
    """``text`` with a capital first letter and a full stop."""
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _showable(frame: Any) -> Any:
    """``frame`` if it can be drawn (an HxWx3 uint8 array), else None."""
    import numpy as np

    drawable = isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3
    return frame if drawable and frame.shape[2] == 3 and min(frame.shape[:2]) > 0 else None
