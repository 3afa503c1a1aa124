"""Images at rest: PNG inside the encrypted files (lossless, so a record reads back exactly)."""

from __future__ import annotations

import numpy as np

from device.errors import StorageError
from device.records.api import InvalidRecordError


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of an RGB or greyscale uint8 image."""
    import cv2

    pixels = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(pixels), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise InvalidRecordError("the image could not be encoded as PNG")
    return buf.tobytes()


def decode_png(data: bytes, scan_id: str, purpose: str) -> np.ndarray:
    """The RGB (or greyscale) image in PNG ``data``. Raises StorageError."""
    import cv2

    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise StorageError(f"scan {scan_id}: the {purpose} does not decode")
    return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB) if pixels.ndim == 3 else pixels
