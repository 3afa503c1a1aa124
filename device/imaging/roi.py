"""ROI crop and resize to the model input: the one place the resize rule is stated.

Rule: a square crop centred on the lesion's bounding box, of side
``max(box side) * (1 + 2 * margin)``, clamped to ``[min_fraction, 1] x`` the
image's short side and shifted along each axis to stay inside the image, so no
padding is ever invented. With no lesion, the centred square of the short side.
The square is resized to ``size x size`` with INTER_AREA when shrinking and
INTER_LINEAR when enlarging.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from device.errors import ConfigError

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class CropParams:
    """Parameters of the ROI crop (the defaults are those of specs 3 and 6).

    Attributes:
        margin: context kept on each side of the lesion, as a fraction of its size.
        min_fraction: smallest crop, as a fraction of the image's short side, so a
            tiny lesion is not blown up into noise (1: always the whole short side).
    """

    margin: float = 0.25
    min_fraction: float = 1.0

    def __post_init__(self) -> None:
        if self.margin < 0:
            raise ConfigError(f"preprocessing.crop.margin: must be >= 0, got {self.margin}")
        if not 0 < self.min_fraction <= 1:
            raise ConfigError(
                f"preprocessing.crop.min_fraction: must be in (0, 1], got {self.min_fraction}"
            )


def square_roi(shape: tuple[int, int], lesion_box: Box | None, params: CropParams) -> Box:
    """Return the square crop (x0, y0, x1, y1) for an image of ``shape`` (height, width)."""
    height, width = shape
    short = min(height, width)
    if lesion_box is None:
        side = short
        centre_x, centre_y = width / 2, height / 2
    else:
        x0, y0, x1, y1 = lesion_box
        wanted = max(x1 - x0, y1 - y0) * (1 + 2 * params.margin)
        side = int(round(min(max(wanted, params.min_fraction * short), short)))
        centre_x, centre_y = (x0 + x1) / 2, (y0 + y1) / 2
    left = min(max(int(round(centre_x - side / 2)), 0), width - side)
    top = min(max(int(round(centre_y - side / 2)), 0), height - side)
    return (left, top, left + side, top + side)


def crop_and_resize(image: np.ndarray, box: Box, size: int) -> np.ndarray:
    """Crop ``box`` (inside ``image``) and resize it to ``size x size`` by the module's rule."""
    x0, y0, x1, y1 = box
    crop = image[y0:y1, x0:x1]
    interpolation = cv2.INTER_AREA if crop.shape[1] > size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interpolation)
