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
        message: a short status line (e.g. "Saved"), or None.
    """

    frame: np.ndarray
    lesion_box: Box | None
    quality_ok: bool
    reason: str | None
    fps: float
    source: str = ""
    message: str | None = None
    hints: tuple[Hint, ...] = ()
    kind: str = "preview"

    @property
    def snapshot_key(self) -> str:
        """One screenshot per entry into the live view."""
        return "preview"


@dataclass(frozen=True, eq=False)
class AnalyzingScreen:
    """Shown while a still is captured and analysed."""

    frame: np.ndarray | None
    text: str = "Analysing…"
    hints: tuple[Hint, ...] = ()
    kind: str = "analyzing"

    @property
    def snapshot_key(self) -> str:
        """One screenshot per analysis (or start-up wait)."""
        return "analyzing" if self.frame is not None else "starting"


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
    kind: str = "result"

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
    kind: str = "retake"

    @property
    def snapshot_key(self) -> str:
        """One screenshot per retake."""
        return f"retake-{'-'.join(r.split()[0] for r in self.reasons)}"


@dataclass(frozen=True)
class ErrorScreen:
    """Something is wrong: what, and what to do about it.

    Attributes:
        problem: the kind: "camera", "bundle", "disk_full", "storage" or "analysis".
        title: short heading, e.g. "Camera not found".
        detail: the technical message (file name, device), one or two lines.
        action: what the health worker should do.
        retrying: whether the device is retrying on its own.
    """

    problem: str
    title: str
    detail: str
    action: str
    retrying: bool = False
    hints: tuple[Hint, ...] = ()
    kind: str = "error"

    @property
    def snapshot_key(self) -> str:
        """One screenshot per distinct error."""
        return f"error-{self.problem}"


@dataclass(frozen=True)
class HistoryScreen:
    """Browsing saved scans; ``result`` is the selected scan drawn like a result."""

    index: int
    total: int
    result: ResultScreen | None
    created_at: str = ""
    hints: tuple[Hint, ...] = ()
    kind: str = "history"

    @property
    def snapshot_key(self) -> str:
        """A new screenshot per scan shown and per heatmap toggle."""
        inner = self.result.snapshot_key if self.result is not None else "empty"
        return f"history-{self.index}-{inner}"


@dataclass(frozen=True)
class ShutdownScreen:
    """Confirm power-off, or say that it is happening."""

    confirmed: bool = False
    poweroff: bool = True
    hints: tuple[Hint, ...] = ()
    kind: str = "shutdown"

    @property
    def snapshot_key(self) -> str:
        """One screenshot for the question and one for the answer."""
        return "shutdown-confirmed" if self.confirmed else "shutdown-confirm"


Screen = (
    PreviewScreen
    | AnalyzingScreen
    | ResultScreen
    | RetakeScreen
    | ErrorScreen
    | HistoryScreen
    | ShutdownScreen
)
SCREEN_KINDS: tuple[str, ...] = (
    "preview",
    "analyzing",
    "result",
    "retake",
    "error",
    "history",
    "shutdown",
)
