"""The image quality gate: is this frame in colour, sharp, well exposed, and showing a lesion?

All metrics are computed on a copy scaled to a fixed analysis width, so the
thresholds mean the same thing for a 640x480 preview, a 1024x768 still and a
600x450 HAM10000 image: a blur of sigma ``s`` pixels at the analysis width is the
same blur whatever the frame's size. The limits are calibrated on HAM10000
(``skinscan calibrate-quality``; figures in docs/quality-gate.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from device.imaging.lesion_presence import measure_lesion
from device.imaging.validate import ensure_rgb_uint8

ANALYSIS_WIDTH = 200  # the width of a HAM10000 image at the pipeline's working size
DARK_LEVEL = 20
BRIGHT_LEVEL = 250
# The re-blur of the sharpness measure (Crete et al. 2007): a box this wide, in
# analysis pixels. An image that is already blurred changes little when blurred again.
REBLUR_SIZE = 9
COLOUR_PERCENTILE = 90

REASON_BLUR = "blurred — hold still"
REASON_DARK = "too dark — check the LED ring"
REASON_BRIGHT = "too bright — glare, press the lens flat"
REASON_NO_COLOUR = "no colour in the photo — colour image needed"
REASON_NO_LESION = "no lesion in view — centre the lesion"
REASON_INK = "ink or a pen mark, not a lesion — no lesion found"


@dataclass(frozen=True)
class QualityThresholds:
    """Limits a frame must meet before it is analysed.

    Two blur measures, because each misses what the other catches (the calibration
    in docs/quality-gate.md): the variance of the Laplacian separates sharp from
    slightly blurred best, but grows with contrast, so a heavily blurred lesion of
    high contrast still passes it; the re-blur loss does not depend on contrast.

    Attributes:
        min_sharpness: minimum variance of the Laplacian at the analysis width.
        min_reblur_loss: minimum :func:`reblur_loss`, in [0, 1].
        max_dark_fraction: largest allowed fraction of pixels darker than 20/255.
        max_bright_fraction: largest allowed fraction of pixels brighter than 250/255.
        min_lesion_contrast: minimum (skin median - lesion 5th percentile) / 255.
        min_colourfulness: minimum :func:`colourfulness` (a CIELAB chroma); a
            greyscale photo has 0.
        max_ink_fraction: largest share of the centre with the hue and chroma of
            blue or violet ink (:mod:`device.imaging.lesion_presence`).
        min_lesion_colour_distance: minimum CIELAB ΔE between the found region and
            the skin around it (after thin strokes are removed); below it the frame
            shows skin, pen lines or writing, not a lesion.
        faint_lesion_colour_distance: a frame under ``min_lesion_contrast`` still
            shows a lesion when its region's ΔE reaches this (a faint, coloured lesion).
    """

    min_sharpness: float = 8.0
    min_reblur_loss: float = 0.40
    max_dark_fraction: float = 0.35
    max_bright_fraction: float = 0.10
    min_lesion_contrast: float = 0.05
    min_colourfulness: float = 4.5
    max_ink_fraction: float = 0.01
    min_lesion_colour_distance: float = 3.0
    faint_lesion_colour_distance: float = 7.5


@dataclass(frozen=True)
class QualityReport:
    """The measured quality of one frame and whether it passes the gate."""

    sharpness: float
    reblur_loss: float
    dark_fraction: float
    bright_fraction: float
    lesion_contrast: float
    colourfulness: float
    reasons: tuple[str, ...]
    ink_fraction: float = 0.0
    lesion_colour_distance: float = 0.0

    @property
    def passed(self) -> bool:
        """True when the frame met every threshold."""
        return not self.reasons

    def metrics(self) -> dict[str, float]:
        """The numeric metrics, for records and logs."""
        values = asdict(self)
        values.pop("reasons")
        return values


def analysis_copy(frame: np.ndarray) -> np.ndarray:
    """``frame`` (RGB uint8) scaled to the analysis width, keeping its aspect ratio."""
    height, width = frame.shape[:2]
    new_height = max(1, round(height * ANALYSIS_WIDTH / width))
    interpolation = cv2.INTER_AREA if width > ANALYSIS_WIDTH else cv2.INTER_LINEAR
    return cv2.resize(frame, (ANALYSIS_WIDTH, new_height), interpolation=interpolation)


def _centre(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    return image[height // 4 : height - height // 4, width // 4 : width - width // 4]


def lesion_contrast(grey: np.ndarray) -> float:
    """How much darker the centre's darkest part is than the frame's typical skin, in [0, 1]."""
    skin = float(np.median(grey))
    lesion = float(np.percentile(_centre(grey), 5))
    return max(0.0, skin - lesion) / 255.0


def laplacian_variance(grey: np.ndarray) -> float:
    """Variance of the Laplacian: the energy of fine detail (it grows with contrast)."""
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


def reblur_loss(grey: np.ndarray) -> float:
    """How much detail re-blurring removes, in [0, 1]: 1 - the blur metric of Crete et al.

    The neighbour differences of the image are compared with those of a copy blurred
    by a 1x9 box, along rows and along columns; the larger loss of the two directions
    is kept. A sharp image loses most of its fine variation (near 1), an image that is
    already blurred loses little (near 0). Being a ratio, it does not depend on the
    lesion's contrast or the exposure, only on the blur in analysis pixels.
    (Crete, Dolmiere, Ladret & Nicolas, "The blur effect", SPIE 6492, 2007.)
    """
    image = grey.astype(np.float32)
    losses = []
    # axis 0: differences down the columns, blurred vertically; axis 1: along the rows.
    for axis, ksize in ((0, (1, REBLUR_SIZE)), (1, (REBLUR_SIZE, 1))):
        reblurred = cv2.blur(image, ksize)
        diff = np.abs(np.diff(image, axis=axis))
        diff_blur = np.abs(np.diff(reblurred, axis=axis))
        total = float(diff.sum())
        if total <= 0.0:
            return 0.0
        losses.append(float(np.maximum(0.0, diff - diff_blur).sum()) / total)
    return max(losses)


def colourfulness(rgb: np.ndarray) -> float:
    """The 90th percentile of CIELAB chroma (sqrt(a*^2 + b*^2)) over the exposed pixels.

    Lesions have clear chroma under any white light (HAM10000's lowest is in
    docs/quality-gate.md); a greyscale or desaturated photo has little or none, and the
    model, trained on colour, must not guess on it. A high percentile, not the median:
    on very pale skin most of the frame is nearly white and the colour is in the
    lesion; yet a few coloured marks (under a tenth of the frame) on a grey photo do
    not pass.
    """
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    exposed = (grey >= DARK_LEVEL) & (grey <= BRIGHT_LEVEL)
    if not exposed.any():
        return 0.0
    lab = cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    chroma = np.hypot(lab[..., 1], lab[..., 2])
    return float(np.percentile(chroma[exposed], COLOUR_PERCENTILE))


# The order in which assess_quality judges a frame: a stage is reached only when every
# earlier stage passed (exposure first; a grey photo cannot be judged for anything else;
# plain skin has no edges, so contrast decides before sharpness).
GATE_STAGES: tuple[tuple[str, ...], ...] = (
    ("dark_fraction", "bright_fraction"),
    ("colourfulness",),
    ("ink_fraction", "lesion_contrast", "lesion_colour_distance"),
    ("sharpness", "reblur_loss"),
)


def judged_metrics(failed: set[str]) -> set[str]:
    """The metrics the gate judged, given those that missed their limits.

    A metric in a stage after the first failing one was measured but not judged: the
    frame was already refused for the earlier reason.
    """
    judged: set[str] = set()
    for stage in GATE_STAGES:
        judged.update(stage)
        if failed & set(stage):
            break
    return judged


def assess_quality(frame: np.ndarray, thresholds: QualityThresholds) -> QualityReport:
    """Measure a frame and list every reason it fails ``thresholds`` (empty when it passes)."""
    frame = ensure_rgb_uint8(frame, "frame")
    small = analysis_copy(frame)
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    # The centre half carries the lesion; vignetted corners would understate sharpness.
    centre = _centre(grey)
    sharp = laplacian_variance(centre)
    loss = reblur_loss(centre)
    dark = float(np.count_nonzero(grey < DARK_LEVEL)) / grey.size
    bright = float(np.count_nonzero(grey > BRIGHT_LEVEL)) / grey.size
    contrast = lesion_contrast(grey)
    colour = colourfulness(small)
    presence = measure_lesion(small)

    reasons: list[str] = []
    if dark > thresholds.max_dark_fraction:
        reasons.append(REASON_DARK)
    if bright > thresholds.max_bright_fraction:
        reasons.append(REASON_BRIGHT)
    if not reasons:
        # A grey photo cannot be judged at all, so colour decides first; plain skin has
        # no edges at all, so low contrast decides before sharpness does.
        faint = (
            contrast < thresholds.min_lesion_contrast
            and presence.colour_distance < thresholds.faint_lesion_colour_distance
        )
        if colour < thresholds.min_colourfulness:
            reasons.append(REASON_NO_COLOUR)
        elif presence.ink_fraction > thresholds.max_ink_fraction:
            reasons.append(REASON_INK)
        elif faint or presence.colour_distance < thresholds.min_lesion_colour_distance:
            reasons.append(REASON_NO_LESION)
        elif sharp < thresholds.min_sharpness or loss < thresholds.min_reblur_loss:
            reasons.append(REASON_BLUR)
    return QualityReport(
        sharpness=sharp,
        reblur_loss=loss,
        dark_fraction=dark,
        bright_fraction=bright,
        lesion_contrast=contrast,
        colourfulness=colour,
        reasons=tuple(reasons),
        ink_fraction=presence.ink_fraction,
        lesion_colour_distance=presence.colour_distance,
    )
