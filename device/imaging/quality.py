"""The image quality gate: is this frame sharp, well exposed, and showing a lesion?

All metrics are computed on a greyscale copy scaled to a fixed analysis width, so
the thresholds mean the same thing for a 640x480 preview and a 4608x2592 still.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from device.imaging.validate import ensure_rgb_uint8

ANALYSIS_WIDTH = 200  # the width of a HAM10000 image as shipped
DARK_LEVEL = 20
BRIGHT_LEVEL = 250

REASON_BLUR = "blurred — hold still"
REASON_DARK = "too dark — check the LED ring"
REASON_BRIGHT = "too bright — glare, press the lens flat"
REASON_NO_LESION = "no lesion in view — centre the lesion"


@dataclass(frozen=True)
class QualityThresholds:
    """Limits a frame must meet before it is analysed.

    Attributes:
        min_sharpness: minimum variance of the Laplacian at the analysis width.
        max_dark_fraction: largest allowed fraction of pixels darker than 20/255.
        max_bright_fraction: largest allowed fraction of pixels brighter than 250/255.
        min_lesion_contrast: minimum (skin median - lesion 5th percentile) / 255.
    """

    min_sharpness: float = 12.0
    max_dark_fraction: float = 0.35
    max_bright_fraction: float = 0.10
    min_lesion_contrast: float = 0.05


@dataclass(frozen=True)
class QualityReport:
    """The measured quality of one frame and whether it passes the gate."""

    sharpness: float
    dark_fraction: float
    bright_fraction: float
    lesion_contrast: float
    reasons: tuple[str, ...]

    @property
    def passed(self) -> bool:
        """True when the frame met every threshold."""
        return not self.reasons

    def metrics(self) -> dict[str, float]:
        """The numeric metrics, for records and logs."""
        values = asdict(self)
        values.pop("reasons")
        return values


def _analysis_grey(frame: np.ndarray) -> np.ndarray:
    height, width = frame.shape[:2]
    new_height = max(1, round(height * ANALYSIS_WIDTH / width))
    interpolation = cv2.INTER_AREA if width > ANALYSIS_WIDTH else cv2.INTER_LINEAR
    small = cv2.resize(frame, (ANALYSIS_WIDTH, new_height), interpolation=interpolation)
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)


def lesion_contrast(grey: np.ndarray) -> float:
    """How much darker the centre's darkest part is than the frame's typical skin, in [0, 1]."""
    height, width = grey.shape
    centre = grey[height // 4 : height - height // 4, width // 4 : width - width // 4]
    skin = float(np.median(grey))
    lesion = float(np.percentile(centre, 5))
    return max(0.0, skin - lesion) / 255.0


def assess_quality(frame: np.ndarray, thresholds: QualityThresholds) -> QualityReport:
    """Measure a frame and list every reason it fails ``thresholds`` (empty when it passes)."""
    frame = ensure_rgb_uint8(frame, "frame")
    grey = _analysis_grey(frame)
    # The centre half carries the lesion; vignetted corners would understate sharpness.
    height, width = grey.shape
    centre = grey[height // 4 : height - height // 4, width // 4 : width - width // 4]
    sharpness = float(cv2.Laplacian(centre, cv2.CV_32F).var())
    dark = float(np.count_nonzero(grey < DARK_LEVEL)) / grey.size
    bright = float(np.count_nonzero(grey > BRIGHT_LEVEL)) / grey.size
    contrast = lesion_contrast(grey)

    reasons: list[str] = []
    if dark > thresholds.max_dark_fraction:
        reasons.append(REASON_DARK)
    if bright > thresholds.max_bright_fraction:
        reasons.append(REASON_BRIGHT)
    if not reasons:
        # Plain skin has no edges at all, so low contrast decides before sharpness does.
        if contrast < thresholds.min_lesion_contrast:
            reasons.append(REASON_NO_LESION)
        elif sharpness < thresholds.min_sharpness:
            reasons.append(REASON_BLUR)
    return QualityReport(
        sharpness=sharpness,
        dark_fraction=dark,
        bright_fraction=bright,
        lesion_contrast=contrast,
        reasons=tuple(reasons),
    )
