"""Reading images from disk as RGB uint8."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from device.errors import CorruptImageError


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file into an RGB uint8 array.

    Raises:
        CorruptImageError: the file is missing, unreadable or not a decodable image.
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise CorruptImageError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if data.size == 0:
        raise CorruptImageError(f"{path}: empty file")
    if data[:2].tobytes() == b"\xff\xd8" and b"\xff\xd9" not in data[-64:].tobytes():
        # OpenCV decodes a truncated JPEG with a grey bottom and only a warning.
        raise CorruptImageError(f"{path}: truncated JPEG (no end-of-image marker)")
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None or bgr.size == 0:
        raise CorruptImageError(f"{path}: not a decodable image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
