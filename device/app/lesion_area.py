"""The lesion's size on a saved photo, and the photo's scale.

The area is measured on the saved photo (the analysed square) with the device's own
preprocessing (:func:`device.imaging.pipeline.preprocess`: hair removal, then
k-means segmentation), as the share of the square that is lesion; the clinic's
follow-up view measures it the same way. With the photo's scale (millimetres per
photo pixel) the share becomes mm².

The scale comes from the camera's field width, ``[camera] field_width_mm`` in the
device config: the width in millimetres that the full still covers at the
dermoscope's fixed contact distance, measured once per scanner with a ruler under
the lens (see docs/records.md). A device without it saves no scale, and follow-up
then shows no area change rather than a guessed one.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def lesion_area_fraction(photo: np.ndarray, spec: Any = None) -> float | None:
    """Share of ``photo`` that the device's segmentation calls lesion, or None if none found.

    Args:
        photo: a scan's saved photo, RGB uint8.
        spec: the bundle's ``PreprocessSpec`` (default: the current default spec).
    """
    from device.imaging.pipeline import preprocess

    try:
        pre = preprocess(photo, spec)
    except Exception as exc:  # a measurement must never stop a save
        log.warning("lesion area not measured: %s", exc)
        return None
    if not pre.lesion_found:
        return None
    return float(np.count_nonzero(pre.mask)) / float(pre.mask.size)


def photo_scale(
    field_width_mm: float | None, still_width: int, roi_side: int, photo_side: int
) -> float | None:
    """Millimetres per pixel of the saved photo, or None without a configured field width.

    Args:
        field_width_mm: the width the full still covers, in mm (0 or None: unknown).
        still_width: the still's width in pixels.
        roi_side: the analysed square's side in still pixels.
        photo_side: the saved photo's side in pixels.
    """
    if not field_width_mm or field_width_mm <= 0 or still_width <= 0 or photo_side <= 0:
        return None
    return float(field_width_mm) / still_width * roi_side / photo_side
