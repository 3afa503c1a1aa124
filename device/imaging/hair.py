"""Hair removal in the manner of DullRazor (Lee et al., 1997).

Dark thin hairs are found with a morphological black-hat on the grey image,
thresholded, kept only where they form long thin strokes, and inpainted from
the surrounding skin. Compact dark blobs (the lesion, its dots and globules)
are left alone because the black-hat cannot fit inside them or the length
filter rejects them.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from device.imaging.validate import ensure_rgb_uint8


@dataclass(frozen=True)
class HairParams:
    """Parameters of hair removal, in pixels of the working image.

    Attributes:
        kernel: side of the black-hat structuring element; wider than a hair,
            narrower than the lesion.
        threshold: minimum black-hat response (grey levels) to call a pixel hair.
        min_length: a hair stroke's bounding box must be at least this long.
        inpaint_radius: radius of the Telea inpainting neighbourhood.
    """

    kernel: int = 9
    threshold: int = 14
    min_length: int = 12
    inpaint_radius: int = 3


@dataclass(frozen=True)
class HairRemoval:
    """The result of hair removal: the cleaned image and the hair mask that was filled."""

    image: np.ndarray
    mask: np.ndarray
    fraction: float


def hair_mask(image: np.ndarray, params: HairParams) -> np.ndarray:
    """Return a boolean mask of hair pixels in an RGB uint8 image."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (params.kernel, params.kernel))
    blackhat = cv2.morphologyEx(grey, cv2.MORPH_BLACKHAT, kernel)
    candidates = (blackhat >= params.threshold).astype(np.uint8)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(candidates, connectivity=8)
    lengths = np.maximum(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT])
    keep = lengths >= params.min_length
    keep[0] = False  # background label
    mask = keep[labels].astype(np.uint8)
    # Cover the soft edge of each hair so no dark fringe survives inpainting.
    mask = cv2.dilate(mask, np.ones((3, 3), np.uint8))
    return mask.astype(bool)


def remove_hair(image: np.ndarray, params: HairParams | None = None) -> HairRemoval:
    """Detect and inpaint hairs. Deterministic; returns the image unchanged if none is found."""
    image = ensure_rgb_uint8(image)
    params = params or HairParams()
    mask = hair_mask(image, params)
    fraction = float(mask.mean())
    if not mask.any():
        return HairRemoval(image=image, mask=mask, fraction=0.0)
    cleaned = cv2.inpaint(image, mask.astype(np.uint8), params.inpaint_radius, cv2.INPAINT_TELEA)
    return HairRemoval(image=cleaned, mask=mask, fraction=fraction)
