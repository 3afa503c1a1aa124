"""The values that flow between the main loop and the controller.

Events go into :func:`device.app.controller.step`; commands come out in
``AppState.commands`` and the main loop carries them out, feeding each outcome
back as another event. Nothing here touches hardware.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from device.app.menu_state import UsbOutcome
from device.ui.screens import Box, DeviceStatus, RankedName

# ---- what a result is -------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ResultView:
    """An analysed scan as the app shows and saves it.

    Attributes:
        scan_key: unique per analysis in this session (for screenshots).
        image: the analysed ROI crop, RGB uint8.
        overlay: the crop with the Grad-CAM heatmap blended in, or None.
        legend: colormap colours from low to high, (N, 3) uint8, or None.
        heatmap: the Grad-CAM map in [0, 1] at the crop's size, or None.
        label: top-1 class code.
        top3: the three most probable classes with human names.
        probabilities: class code -> calibrated probability, all classes.
        p_malignant: P(mel) + P(bcc) + P(akiec).
        risk_tier: "refer", "monitor" or "uncertain".
        referral_threshold: the bundle's threshold on P(malignant).
        quality: quality metric name -> value for the analysed still.
        saved_id: the record's scan id once saved, else None.
        created_at: ISO-8601 UTC time of a saved record ("" until saved).
        unfamiliar: the bundle's familiarity check found the frame unlike the training
            images (the tier is then "uncertain", unless it is "refer").
        unusual_light: the light was unlike that of nearly all training images and the
            colours were corrected before classification (worth checking the LED ring).
        patient_ref: the patient set when the scan was made (from their card), or None.
        body_site: the body site chosen for it, or None.
        body_side: "left"/"right" for a paired site, else None.
        lesion: the lesion's label within its site ("1".."9" or a short name), or None.
        mm_per_px: the photo's scale (millimetres per photo pixel), or None when unknown.
        bundle_id: the model bundle that made it ("" when unknown).
        bundle_label: "adapted for <site>, <date>" for an adapted bundle, else None.
        lesion_area: the lesion's share of the photo as saved with the scan, or None.
        corrects: the scan a saved correction replaces (a patient given later), or None.
        damaged: parts of a saved scan left out as damaged, e.g. ("heatmap",).
    """

    scan_key: str
    image: np.ndarray
    overlay: np.ndarray | None
    legend: np.ndarray | None
    heatmap: np.ndarray | None
    label: str
    top3: tuple[RankedName, ...]
    probabilities: Mapping[str, float]
    p_malignant: float
    risk_tier: str
    referral_threshold: float
    quality: Mapping[str, float] = field(default_factory=dict)
    saved_id: str | None = None
    created_at: str = ""
    unfamiliar: bool = False
    unusual_light: bool = False
    patient_ref: str | None = None
    body_site: str | None = None
    body_side: str | None = None
    lesion: str | None = None
    mm_per_px: float | None = None
    bundle_id: str = ""
    bundle_label: str | None = None
    lesion_area: float | None = None
    corrects: str | None = None
    damaged: tuple[str, ...] = ()


@dataclass(frozen=True)
class ErrorInfo:
    """A problem to show: its kind and the technical detail.

    Attributes:
        problem: camera, bundle, disk_full, storage, analysis or notice.
        detail: the technical message.
        cause: for a notice, the store's notice kind (e.g. "corrupt_db_moved"), else "".
        path: a file or folder the user must be told about in full, else "".
    """

    problem: str
    detail: str
    cause: str = ""
    path: str = ""


# ---- events -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Button:
    """A button event name (see :mod:`device.hw.buttons`)."""

    name: str


@dataclass(frozen=True, eq=False)
class Frame:
    """A live-view frame with its quality verdict."""

    image: np.ndarray
    lesion_box: Box | None
    quality_ok: bool
    reason: str | None
    fps: float


@dataclass(frozen=True, eq=False)
class Analyzed:
    """The still passed the quality gate and was analysed."""

    result: ResultView


@dataclass(frozen=True, eq=False)
class QualityFailed:
    """The still failed the quality gate; no diagnosis is made."""

    reasons: tuple[str, ...]
    image: np.ndarray | None = None


@dataclass(frozen=True)
class Failed:
    """Something failed. ``problem``: camera, bundle, disk_full, storage or analysis."""

    problem: str
    detail: str


@dataclass(frozen=True)
class CameraReady:
    """The camera (re)opened."""


@dataclass(frozen=True)
class BundleReady:
    """The model bundle (re)loaded."""


@dataclass(frozen=True)
class Saved:
    """The current result was saved durably."""

    scan_id: str
    created_at: str


@dataclass(frozen=True, eq=False)
class HistoryLoaded:
    """Saved scans, newest first; only this patient's when ``patient_ref`` is set.

    ``unreadable`` counts the saved scans that belonged in this list but could not
    be read (damaged): the store skipped them so that the others still show.
    """

    items: tuple[ResultView, ...]
    patient_ref: str | None = None
    unreadable: int = 0


@dataclass(frozen=True)
class CardRead:
    """A patient card was read: its opaque reference."""

    patient_ref: str


@dataclass(frozen=True)
class CardRefused:
    """No reference could be taken from the card photo, and why (shown on screen)."""

    reason: str


@dataclass(frozen=True)
class CameraNotice:
    """The camera skipped something the tester should know about (an unreadable file)."""

    detail: str


@dataclass(frozen=True)
class Notice:
    """Something to tell the user once, until acknowledged (e.g. the store is read-only).

    Attributes:
        detail: the message.
        kind: the store's notice kind ("corrupt_db_moved", "read_only", ...), or "".
        path: the file or folder concerned, shown in full (e.g. the moved-aside database).
    """

    detail: str
    kind: str = ""
    path: str = ""


@dataclass(frozen=True)
class UsbChecked:
    """The USB sticks plugged in now, by name (empty: none)."""

    sticks: tuple[str, ...]


@dataclass(frozen=True)
class UsbProgress:
    """A USB task is under way: ``done`` of ``total`` (0: unknown), and what."""

    text: str
    done: int = 0
    total: int = 0


@dataclass(frozen=True)
class UsbDone:
    """A USB task finished (or could not start): what it did, for the screen."""

    outcome: UsbOutcome


@dataclass(frozen=True)
class PatientAssigned:
    """A saved scan was given a patient: ``correction`` is the new record's scan id."""

    scan_id: str
    correction: str
    patient_ref: str


@dataclass(frozen=True)
class PowerStatus:
    """The battery and free storage, read again; ``critical``: the battery is about to run
    out (on battery, at or below the critical charge), so the device shuts down."""

    status: DeviceStatus
    critical: bool = False


Event = (
    Button
    | Frame
    | Analyzed
    | QualityFailed
    | Failed
    | CameraReady
    | BundleReady
    | Saved
    | HistoryLoaded
    | Notice
    | CardRead
    | CardRefused
    | CameraNotice
    | UsbChecked
    | UsbProgress
    | UsbDone
    | PatientAssigned
    | PowerStatus
)

# ---- commands ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Capture:
    """Take a still, gate it on quality, analyse it."""


@dataclass(frozen=True, eq=False)
class Save:
    """Save ``result`` to the scan store."""

    result: ResultView


@dataclass(frozen=True)
class LoadHistory:
    """Read saved scans from the store: only this patient's when ``patient_ref`` is set."""

    patient_ref: str | None = None


@dataclass(frozen=True)
class ReadCard:
    """Take a still and read the patient reference from the QR code on a card."""


@dataclass(frozen=True)
class ReloadBundle:
    """Try loading the model bundle again."""


@dataclass(frozen=True)
class PowerOff:
    """Close everything and power the device off."""


@dataclass(frozen=True)
class Exit:
    """Close everything and leave the program."""


@dataclass(frozen=True)
class InjectFault:
    """Make the simulated camera fail (testing aid)."""

    fault: str


@dataclass(frozen=True)
class CheckUsb:
    """Look for USB sticks (answered by :class:`UsbChecked`)."""


@dataclass(frozen=True)
class RunUsbTask:
    """Run a menu task on the stick: one of ``device.app.menu_state.MENU_TASKS``."""

    task: str


@dataclass(frozen=True)
class AssignPatient:
    """Give the saved scan ``scan_id`` (saved without a patient) the patient ``patient_ref``."""

    scan_id: str
    patient_ref: str


Command = (
    Capture
    | Save
    | LoadHistory
    | ReadCard
    | ReloadBundle
    | PowerOff
    | Exit
    | InjectFault
    | CheckUsb
    | RunUsbTask
    | AssignPatient
)
