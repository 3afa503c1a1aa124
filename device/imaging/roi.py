"""ROI crop and resize to the model input: the one place the resize rule is stated.

Rule: a square crop centred on the lesion's bounding box, of side
``max(box side) * (1 + 2 * margin)``, clamped to ``[min_fraction, max_fraction] x``
the image's short side. Along each axis the crop is shifted to stay inside the
image where it fits, and to cover the whole axis where it does not. With
``max_fraction`` 1 (specs 1-3) it always fits, so no padding is ever invented;
with ``max_fraction`` > 1 (spec 4) a lesion that fills the frame or touches its
border keeps its whole extent and some context, and the crop is padded by
mirroring the image at its border (the lesion does go on past the frame, and the
training augmentation's rotations mirror borders the same way). So the lesion's
share of the model input depends less on how close the camera was. With no
lesion, the centred square of the short side. The square is resized to
``size x size`` with INTER_AREA when shrinking and INTER_LINEAR when enlarging.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from device.errors import ConfigError

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class CropParams:
    """Parameters of the ROI crop.

    Attributes:
        margin: context kept on each side of the lesion, as a fraction of its size.
        min_fraction: smallest crop, as a fraction of the image's short side, so a
            tiny lesion is not blown up into noise.
        max_fraction: largest crop, as a fraction of the image's short side; above 1
            the crop may reach past the image and is padded by reflection.
    """

    margin: float = 0.15
    min_fraction: float = 0.5
    max_fraction: float = 1.0

    def __post_init__(self) -> None:
        if self.margin < 0:
            raise ConfigError(f"preprocessing.crop.margin: must be >= 0, got {self.margin}")
        if not 0 < self.min_fraction <= 1:
            raise ConfigError(
                f"preprocessing.crop.min_fraction: must be in (0, 1], got {self.min_fraction}"
            )
        if not 1 <= self.max_fraction <= 3:
            raise ConfigError(
                f"preprocessing.crop.max_fraction: must be in [1, 3], got {self.max_fraction}"
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
        largest = params.max_fraction * short
        side = int(round(min(max(wanted, params.min_fraction * short), largest)))
        centre_x, centre_y = (x0 + x1) / 2, (y0 + y1) / 2
    left = _place(int(round(centre_x - side / 2)), side, width)
    top = _place(int(round(centre_y - side / 2)), side, height)
    return (left, top, left + side, top + side)


def _place(start: int, side: int, extent: int) -> int:
    """Shift a span inside [0, extent) if it fits there, else so that it covers all of it."""
    if side <= extent:
        return min(max(start, 0), extent - side)
    return min(max(start, extent - side), 0)


def crop_and_resize(image: np.ndarray, box: Box, size: int) -> np.ndarray:
    """Crop ``box`` from ``image`` and resize it to ``size x size`` by the module's rule.

    A box reaching past the image is filled by reflection at the image border.
    """
    x0, y0, x1, y1 = box
    height, width = image.shape[:2]
    pad = (max(0, -y0), max(0, y1 - height), max(0, -x0), max(0, x1 - width))
    if any(pad):
        image = cv2.copyMakeBorder(image, *pad, borderType=cv2.BORDER_REFLECT_101)
        x0, x1, y0, y1 = x0 + pad[2], x1 + pad[2], y0 + pad[0], y1 + pad[0]
    crop = image[y0:y1, x0:x1]
    interpolation = cv2.INTER_AREA if crop.shape[1] > size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interpolation)
