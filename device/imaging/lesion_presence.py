"""Is there a skin lesion in the frame, or only skin, ink, a plaster, text or cloth?

The quality gate's contrast test (:func:`device.imaging.quality.lesion_contrast`)
asks only whether the centre holds something darker than the skin. Pen strokes,
writing, a tattoo, the holes of a plaster or the threads of a fabric are darker
too. This module segments the frame as the pipeline does
(:func:`device.imaging.segment.segment_lesion`) and measures what a lesion has
and those things lack:

* ``ink_fraction``: the share of the frame's centre coloured as no skin lesion is:
  saturated blue or violet (CIELAB hue and chroma). Pigment is brown, black,
  grey-blue (a veil, a blue nevus: low chroma) or red-purple (vessels).
* ``colour_distance``: CIELAB ΔE between the region's median colour and the skin
  around it; a lesion differs from its skin in colour, a faint shadow does not.

Pen strokes and writing are thin: they are removed first (the pipeline's hair
removal), and what is left is skin, with no colour distance. The limits live in
:class:`device.imaging.quality.QualityThresholds` and are calibrated in
docs/quality-gate.md (the non-lesion set).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from device.imaging.hair import remove_hair
from device.imaging.segment import SegmentParams, segment_lesion
from device.imaging.validate import ensure_rgb_uint8

# Ink: chroma above INK_CHROMA with a hue from cyan through blue to violet, where no
# pigment of the skin lies (CIELAB hue angle in degrees, a* = 0°, b* = 90°). A
# blue-white veil or a blue nevus is blue-grey (chroma under 25); vessels are red to
# purple-red. Calibrated on 1,000 HAM10000 train/val images: at chroma 40 and hue
# 180-320° none had more than 0.5% of its centre in this range.
INK_CHROMA = 40.0
INK_HUES = (180.0, 320.0)


@dataclass(frozen=True)
class LesionPresence:
    """What was found in the frame (area and colour distance 0 when nothing was found).

    Attributes:
        found: segmentation found a region.
        area: the region's share of the frame.
        ink_fraction: share of the frame's centre half with an ink hue (module doc).
        colour_distance: CIELAB ΔE of the region's median colour from the skin's.
    """

    found: bool
    area: float
    ink_fraction: float
    colour_distance: float


def ink_mask(lab: np.ndarray) -> np.ndarray:
    """Pixels of a float CIELAB image (L 0-100) with an ink hue and chroma."""
    a, b = lab[..., 1], lab[..., 2]
    chroma = np.hypot(a, b)
    hue = np.degrees(np.arctan2(b, a)) % 360.0
    return (chroma > INK_CHROMA) & (hue > INK_HUES[0]) & (hue < INK_HUES[1])


def measure_lesion(rgb: np.ndarray, params: SegmentParams | None = None) -> LesionPresence:
    """Measure the lesion-likeness of a frame's found region.

    Thin dark strokes (hairs, pen lines, writing) are removed first, as the pipeline
    removes hairs before it segments: what is left of a pen mark is skin.

    Args:
        rgb: RGB uint8 frame, best the quality gate's 200 px analysis copy.
        params: segmentation parameters (default: the pipeline's defaults).
    """
    lab_raw = cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    centre_ink = float(ink_mask(_centre(lab_raw)).mean())
    rgb = remove_hair(rgb).image
    segmentation = segment_lesion(rgb, params)
    if not segmentation.found:
        return LesionPresence(False, 0.0, centre_ink, 0.0)
    region = segmentation.mask
    area = float(region.mean())
    lab = cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    mask8 = region.astype(np.uint8)
    ring_size = 2 * max(3, round(0.04 * rgb.shape[1])) + 1
    ring = cv2.dilate(mask8, np.ones((ring_size, ring_size), np.uint8)).astype(bool) & ~region
    skin = ring if ring.any() else ~region
    if not skin.any():
        distance = 0.0
    else:
        inside = np.median(lab[region], axis=0)
        around = np.median(lab[skin], axis=0)
        distance = float(np.linalg.norm(inside - around))
    return LesionPresence(True, area, centre_ink, distance)


# Doubt (Uncertain, not Retake): shares of the centre half of a frame whose colour no
# lesion photo of the training set shows much of. Calibrated on the non-lesion set's
# training portion and 1,000 HAM10000 train/val images (docs/quality-gate.md):
# bluish ink at a lower chroma than INK_CHROMA (0.5% of the lesions above 2%; every
# training ink ellipse above 6%), and pale grey-white, the pad of a plaster or paper
# (0.8% of the lesions above 10%; every training plaster above 23%).
DOUBT_CHROMA = 30.0
DOUBT_BLUISH_SHARE = 0.02
PALE_LIGHTNESS = 85.0
PALE_CHROMA = 10.0
DOUBT_PALE_SHARE = 0.1
DOUBT_WIDTH = 200


def colour_doubt(frame: np.ndarray) -> bool:
    """Whether the frame's centre has too much of a colour no lesion photo has.

    Bluish ink of a lower chroma than the gate refuses, or a pale grey-white patch (a
    plaster's pad, paper). Such a frame may still be analysed, but is never a Monitor.

    Args:
        frame: RGB uint8 frame of any size.
    """
    frame = ensure_rgb_uint8(frame, "frame")
    height, width = frame.shape[:2]
    size = (DOUBT_WIDTH, max(1, round(height * DOUBT_WIDTH / width)))
    small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    lab = _centre(cv2.cvtColor(small.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab))
    chroma = np.hypot(lab[..., 1], lab[..., 2])
    hue = np.degrees(np.arctan2(lab[..., 2], lab[..., 1])) % 360.0
    bluish = (chroma > DOUBT_CHROMA) & (hue > INK_HUES[0]) & (hue < INK_HUES[1])
    pale = (lab[..., 0] > PALE_LIGHTNESS) & (chroma < PALE_CHROMA)
    return bool(bluish.mean() > DOUBT_BLUISH_SHARE or pale.mean() > DOUBT_PALE_SHARE)


def _centre(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    return image[height // 4 : height - height // 4, width // 4 : width - width // 4]
