"""What the screen shows, as small immutable values: one dataclass per screen.

The controller produces these and the renderer draws them; neither touches the
other's concerns, so the controller is tested without pygame and the renderer
without a camera. Images are RGB uint8 numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Box = tuple[int, int, int, int]

NOTICE = "Screening aid — not a diagnosis"
TIER_ACTIONS: dict[str, str] = {
    "refer": "Refer to a clinician",
    "monitor": "Monitor",
    "uncertain": "Uncertain — retake or refer",
}
# The familiarity check fired: a retake with the same camera will look the same.
UNFAMILIAR_ACTION = "Uncertain — refer (unfamiliar image)"
UNUSUAL_LIGHT_NOTE = "Unusual light: colours corrected"
# The note as it reads on narrower panels, longest first.
UNUSUAL_LIGHT_NOTES = (UNUSUAL_LIGHT_NOTE, "Unusual light: corrected", "Light corrected")


def tier_action(risk_tier: str, unfamiliar: bool = False) -> str:
    """What the health worker (or clinician) is told to do for a risk tier."""
    if unfamiliar and risk_tier == "uncertain":
        return UNFAMILIAR_ACTION
    return TIER_ACTIONS.get(risk_tier, TIER_ACTIONS["uncertain"])


@dataclass(frozen=True)
class Hint:
    """A button and what it does on this screen, e.g. ("capture", "Scan")."""

    button: str
    action: str


@dataclass(frozen=True)
class DeviceStatus:
    """Battery and storage as the live view shows them.

    Attributes:
        battery_percent: charge left, 0 to 100, or None when no battery is read.
        charging: True while charging, False on battery, None when the gauge cannot tell.
        scans_left: about how many more scans fit on the data folder, or None when unknown.
        battery_low: the charge is at or below the warning level.
        storage_low: fewer scans fit than the warning level.
        alerts: what the health worker must do about it, most urgent first
            (e.g. "Battery low — charge soon").
    """

    battery_percent: int | None = None
    charging: bool | None = None
    scans_left: int | None = None
    battery_low: bool = False
    storage_low: bool = False
    alerts: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class PreviewScreen:
    """The live view.

    Attributes:
        frame: the camera frame.
        lesion_box: the found lesion in frame coordinates, or None.
        quality_ok: whether the frame passes the quality gate.
        reason: the first failing reason ("blurred — hold still"), or None.
        fps: measured live-view frame rate.
        source: the camera's name.
        message: a short status line (e.g. "Patient card read"), or None.
        warning: something the tester must know (a skipped image file), or None.
        patient: the patient line shown under the title ("" when no patient is set).
        status: battery and free storage for the header, with their alerts, or None.
    """

    frame: np.ndarray
    lesion_box: Box | None
    quality_ok: bool
    reason: str | None
    fps: float
    source: str = ""
    message: str | None = None
    warning: str | None = None
    hints: tuple[Hint, ...] = ()
    patient: str = ""
    status: DeviceStatus | None = None
    kind: str = "preview"

    @property
    def snapshot_key(self) -> str:
        """One screenshot per entry into the live view, and one more when its battery or
        storage alerts change."""
        if self.status is not None and self.status.alerts:
            return "preview-" + "-".join(a.split()[0].lower() for a in self.status.alerts) + "-low"
        return "preview"


@dataclass(frozen=True, eq=False)
class AnalyzingScreen:
    """Shown while a still is captured and analysed (or the camera starts, or a card is read)."""

    frame: np.ndarray | None
    text: str = "Analysing…"
    hints: tuple[Hint, ...] = ()
    title: str = "Analysing"
    patient: str = ""
    kind: str = "analyzing"

    @property
    def snapshot_key(self) -> str:
        """One screenshot per analysis, card read or start-up wait."""
        if self.frame is None:
            return "starting"
        return "reading-card" if self.title == "Patient card" else "analyzing"


@dataclass(frozen=True)
class RankedName:
    """One of the top-3: human name, class code and calibrated probability."""

    name: str
    code: str
    probability: float
    malignant: bool = False


@dataclass(frozen=True, eq=False)
class ResultScreen:
    """The diagnosis.

    Attributes:
        image: the analysed ROI crop.
        overlay: the same crop with the Grad-CAM heatmap blended in, or None.
        show_heatmap: whether the overlay is shown (a button toggles it).
        top3: the three most probable classes, most probable first.
        p_malignant: P(mel) + P(bcc) + P(akiec).
        referral_threshold: the bundle's referral threshold on P(malignant).
        risk_tier: "refer", "monitor" or "uncertain".
        unfamiliar: the frame is unlike the training images.
        unusual_light: the light was unlike that of nearly all training images and the
            colours were corrected: a note asks the health worker to check the LED ring.
        legend: colormap colours from low to high evidence, shape (N, 3) uint8.
        saved: the save status line ("Saved", "Not saved yet"), or "" for none.
        is_saved: whether the scan is in the record store.
        title: heading, e.g. "Result" or "Saved scan 2 of 5".
        scan_key: identifies the scan, so each new scan gets its own screenshot.
    """

    image: np.ndarray
    overlay: np.ndarray | None
    show_heatmap: bool
    top3: tuple[RankedName, ...]
    p_malignant: float
    referral_threshold: float
    risk_tier: str
    unfamiliar: bool = False
    unusual_light: bool = False
    legend: np.ndarray | None = None
    saved: str = ""
    is_saved: bool = False
    title: str = "Result"
    scan_key: str = ""
    notice: str = NOTICE
    hints: tuple[Hint, ...] = ()
    patient: str = ""
    kind: str = "result"
    bundle: str = ""  # which bundle made the scan: "Model <id> · adapted for <site>, <date>"

    @property
    def action(self) -> str:
        """What the health worker should do, from the risk tier."""
        return tier_action(self.risk_tier, self.unfamiliar)

    @property
    def snapshot_key(self) -> str:
        """A new screenshot when the heatmap is toggled or the scan is saved."""
        heat = "heatmap" if self.show_heatmap and self.overlay is not None else "photo"
        saved = "-saved" if self.is_saved else ""
        return f"{self.kind}-{self.scan_key}-{heat}{saved}"


@dataclass(frozen=True, eq=False)
class RetakeScreen:
    """The quality gate failed: no diagnosis, only what to fix."""

    frame: np.ndarray | None
    reasons: tuple[str, ...]
    hints: tuple[Hint, ...] = ()
    patient: str = ""
    kind: str = "retake"

    @property
    def snapshot_key(self) -> str:
        """One screenshot per retake."""
        return f"retake-{'-'.join(r.split()[0] for r in self.reasons)}"


@dataclass(frozen=True)
class ErrorScreen:
    """Something is wrong (or must be acknowledged): what, and what to do about it.

    Attributes:
        problem: the kind: "camera", "bundle", "disk_full", "storage", "analysis" or
            "notice" (something the store reported at start).
        title: short heading, e.g. "Camera not found".
        detail: the technical message (file name, device), one or two lines.
        action: what the health worker should do.
        retrying: whether the device is retrying on its own.
        steps: numbered steps to follow, in order (e.g. how to free space), or ().
        path: a file or folder shown in full, never cut (where a damaged database went).
        path_label: the line above ``path``, e.g. "The old database is now at:".
        cause: what kind of notice this is (the store's notice kind), for screenshots.
    """

    problem: str
    title: str
    detail: str
    action: str
    retrying: bool = False
    hints: tuple[Hint, ...] = ()
    patient: str = ""
    steps: tuple[str, ...] = ()
    path: str = ""
    path_label: str = ""
    cause: str = ""
    kind: str = "error"

    @property
    def snapshot_key(self) -> str:
        """One screenshot per distinct error (and per kind of notice)."""
        return f"error-{self.problem}" + (f"-{self.cause}" if self.cause else "")


@dataclass(frozen=True)
class HistoryScreen:
    """Browsing saved scans; ``result`` is the selected scan drawn like a result.

    Attributes:
        created_at: when the shown scan was saved, as read ("2025-03-01 14:02 UTC").
        scope: whose scans these are ("Patient SKS-000142-7F3Q" or "All patients"), or "".
        subject: the shown scan's patient and body site, or "".
        earlier: how many earlier scans of the same patient and site can be compared.
        unreadable: how many saved scans of this list could not be read (damaged) and
            are left out; the screen says so and how to check them.
    """

    index: int
    total: int
    result: ResultScreen | None
    created_at: str = ""
    hints: tuple[Hint, ...] = ()
    scope: str = ""
    subject: str = ""
    earlier: int = 0
    unreadable: int = 0
    patient: str = ""
    kind: str = "history"

    @property
    def unreadable_text(self) -> str:
        """The line about damaged scans ("" when none): how many, and what to run."""
        if not self.unreadable:
            return ""
        scans = "scan" if self.unreadable == 1 else "scans"
        return f"{self.unreadable} saved {scans} could not be read — run 'skinscan records verify'"

    @property
    def snapshot_key(self) -> str:
        """A new screenshot per scan shown and per heatmap toggle."""
        inner = self.result.snapshot_key if self.result is not None else "empty"
        return f"history-{self.index}-{inner}"


@dataclass(frozen=True)
class ShutdownScreen:
    """Confirm power-off, or say that it is happening.

    ``reason`` is "" for a shutdown the user asked for, or "battery" when the battery
    ran out and the device shuts itself down.
    """

    confirmed: bool = False
    poweroff: bool = True
    hints: tuple[Hint, ...] = ()
    patient: str = ""
    reason: str = ""
    kind: str = "shutdown"

    @property
    def snapshot_key(self) -> str:
        """One screenshot for the question and one for the answer."""
        if self.reason:
            return f"shutdown-{self.reason}"
        return "shutdown-confirmed" if self.confirmed else "shutdown-confirm"


@dataclass(frozen=True, eq=False)
class CardScreen:
    """ "Scan patient card": the live view, and why the last card could not be read.

    Attributes:
        frame: the live camera frame, or None before the first one.
        problem: why the last card was refused ("" before a first try).
        current: the reference set now, or "" (the card screen can clear it).
    """

    frame: np.ndarray | None
    problem: str = ""
    current: str = ""
    hints: tuple[Hint, ...] = ()
    patient: str = ""
    kind: str = "card"

    @property
    def snapshot_key(self) -> str:
        """One screenshot per card screen and per refusal."""
        return f"card-{abs(hash(self.problem)) % 10**6}" if self.problem else "card"


@dataclass(frozen=True)
class SiteScreen:
    """Choosing the body site from a short list; ``index`` is the highlighted one."""

    sites: tuple[str, ...]
    index: int
    current: str = ""
    hints: tuple[Hint, ...] = ()
    patient: str = ""
    kind: str = "site"
    title: str = "Body site"  # the list also offers a paired site's sides, then lesions

    @property
    def snapshot_key(self) -> str:
        """One screenshot per highlighted entry of each list."""
        if self.title == "Body site":
            return f"site-{self.index}"
        return f"site-{self.title}-{self.index}"


@dataclass(frozen=True, eq=False)
class CompareSide:
    """One scan in the side-by-side view."""

    image: np.ndarray
    overlay: np.ndarray | None
    when: str
    risk_tier: str
    p_malignant: float
    label: str
    unfamiliar: bool = False
    # The threshold the scan's tier was decided at: P is shown with the precision
    # that keeps it on the same side of it (device.result_text.referral_figures).
    referral_threshold: float | None = None


@dataclass(frozen=True, eq=False)
class CompareScreen:
    """Two scans of the same patient and body site side by side, older on the left.

    Attributes:
        earlier, later: the two scans.
        show_heatmap: heatmap overlays on or off.
        site: the body site both carry.
        change: one line on what changed, e.g. "41 days later · P(malignant) 12% → 30%".
        position: which earlier scan this is, e.g. "earlier scan 1 of 2".
    """

    earlier: CompareSide
    later: CompareSide
    show_heatmap: bool
    site: str
    change: str
    position: str = ""
    area: str = ""  # the change in lesion area, or why it cannot be shown
    hints: tuple[Hint, ...] = ()
    patient: str = ""
    kind: str = "compare"

    @property
    def snapshot_key(self) -> str:
        """One screenshot per pair and heatmap state."""
        heat = "heatmap" if self.show_heatmap else "photo"
        return f"compare-{self.earlier.when}-{self.later.when}-{heat}"


@dataclass(frozen=True)
class MenuScreen:
    """The menu (a long hold of NEXT): USB export, free space, model update.

    Attributes:
        items: the entries' labels, in order.
        index: the highlighted entry.
        help: one line on what the highlighted entry does.
        stick: the USB stick line, e.g. "USB stick: KINGSTON" or "No USB stick: plug one in".
        stick_found: whether a stick is plugged in.
    """

    items: tuple[str, ...]
    index: int
    help: str = ""
    stick: str = ""
    stick_found: bool = False
    hints: tuple[Hint, ...] = ()
    patient: str = ""
    kind: str = "menu"

    @property
    def snapshot_key(self) -> str:
        """One screenshot per highlighted entry, with and without a stick."""
        return f"menu-{self.index}-{'stick' if self.stick_found else 'nostick'}"


@dataclass(frozen=True)
class UsbBusyScreen:
    """A USB task under way: what, how far, and not to pull the stick out.

    Attributes:
        title: the task, e.g. "Export to USB".
        text: what is happening now, e.g. "Exporting scan 3 of 12…".
        done, total: progress; ``total`` 0 when it cannot be told.
        note: the warning under it.
    """

    title: str
    text: str
    done: int = 0
    total: int = 0
    note: str = "Do not remove the USB stick."
    hints: tuple[Hint, ...] = ()
    patient: str = ""
    kind: str = "usb_busy"

    @property
    def snapshot_key(self) -> str:
        """One screenshot per task (not one per scan written)."""
        return f"usb-busy-{self.title}"


@dataclass(frozen=True)
class UsbResultScreen:
    """What a USB task did, and what to do next.

    Attributes:
        heading: the task, e.g. "Export to USB".
        ok: it did what was asked; otherwise ``title`` says what went wrong.
        title: the headline, e.g. "Exported 12 scans".
        lines: the facts, one a line.
        files: the file names written on the stick, shown whole.
        next_step: what the health worker does next.
        removable: the stick was released and may be pulled out.
        task: which task this was (for screenshots).
    """

    heading: str
    ok: bool
    title: str
    lines: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    next_step: str = ""
    removable: bool = False
    task: str = ""
    hints: tuple[Hint, ...] = ()
    patient: str = ""
    kind: str = "usb_done"

    @property
    def snapshot_key(self) -> str:
        """One screenshot per task and outcome."""
        words = "-".join(self.title.lower().split()[:3])
        return f"usb-done-{self.task}-{'ok' if self.ok else 'failed'}-{words}"


Screen = (
    PreviewScreen
    | AnalyzingScreen
    | ResultScreen
    | RetakeScreen
    | ErrorScreen
    | HistoryScreen
    | ShutdownScreen
    | CardScreen
    | SiteScreen
    | CompareScreen
    | MenuScreen
    | UsbBusyScreen
    | UsbResultScreen
)
SCREEN_KINDS: tuple[str, ...] = (
    "preview",
    "analyzing",
    "result",
    "retake",
    "error",
    "history",
    "shutdown",
    "card",
    "site",
    "compare",
    "menu",
    "usb_busy",
    "usb_done",
)
