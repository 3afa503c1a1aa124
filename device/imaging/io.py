"""Reading images from disk as RGB uint8, scaled down on read when they are huge.

The device never needs more than a few megapixels (the pipeline works at 200 px,
the model at 224 px), but a file can hold 100 megapixels: decoded in full, a
12000x9000 photo alone is 324 MB, beyond the device's whole memory target
(300 MB peak RSS). So a JPEG larger than :data:`MAX_READ_SIDE` is decoded at 1/2,
1/4 or 1/8 scale by the decoder itself (libjpeg's DCT scaling, through OpenCV's
``IMREAD_REDUCED_COLOR_*``), which never holds the full-size pixels, and then
resized with INTER_AREA. Other formats cannot be decoded at a reduced scale, so
they are refused beyond :data:`MAX_PIXELS`; so is any file beyond
:data:`MAX_JPEG_PIXELS`. The size is read from the file's header first, so a
refused file is never decoded.
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

from device.errors import CorruptImageError, ImageError

MAX_READ_SIDE = 2048  # long side of an image as read; larger ones are scaled down
MAX_PIXELS = 40_000_000  # PNG and other formats, decoded in full
MAX_JPEG_PIXELS = 400_000_000  # JPEG, decoded at up to 1/8 scale
_REDUCED = {
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}
# JPEG start-of-frame markers (baseline, progressive, lossless...): they carry the size.
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def jpeg_size(data: bytes | np.ndarray) -> tuple[int, int] | None:
    """(width, height) from a JPEG's start-of-frame header, or None if not found."""
    view = memoryview(data).cast("B") if isinstance(data, np.ndarray) else memoryview(data)
    position = 2
    while position + 9 <= len(view):
        if view[position] != 0xFF:
            return None
        marker = view[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            position += 2
            continue
        (length,) = struct.unpack(">H", view[position + 2 : position + 4])
        if marker in _SOF_MARKERS:
            height, width = struct.unpack(">HH", view[position + 5 : position + 9])
            return int(width), int(height)
        position += 2 + length
    return None


def png_size(data: bytes | np.ndarray) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk, or None if it is not a PNG."""
    head = bytes(data[:24])
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)


def _too_large(path: Path, width: int, height: int, limit: int) -> ImageError:
    return ImageError(
        f"{path}: the image is too large: {width}x{height} pixels "
        f"({width * height / 1e6:.0f} MP; at most {limit / 1e6:.0f} MP)"
    )


def reduction_for(width: int, height: int, max_side: int = MAX_READ_SIDE) -> int:
    """The largest JPEG decode scale 1/k (k in 1, 2, 4, 8) that keeps the long side >= max_side."""
    factor = 1
    while factor < 8 and max(width, height) // (factor * 2) >= max_side:
        factor *= 2
    return factor


def read_image(path: str | Path, max_side: int = MAX_READ_SIDE) -> np.ndarray:
    """Decode an image file into an RGB uint8 array whose long side is at most ``max_side``.

    Images no larger than ``max_side`` are returned exactly as decoded.

    Raises:
        CorruptImageError: the file is missing, unreadable or not a decodable image.
        ImageError: the image has more pixels than can be decoded within the memory
            target (the message gives its size and the limit).
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise CorruptImageError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if data.size == 0:
        raise CorruptImageError(f"{path}: empty file")
    is_jpeg = data[:2].tobytes() == b"\xff\xd8"
    if is_jpeg and b"\xff\xd9" not in data[-64:].tobytes():
        # OpenCV decodes a truncated JPEG with a grey bottom and only a warning.
        raise CorruptImageError(f"{path}: truncated JPEG (no end-of-image marker)")
    size = jpeg_size(data) if is_jpeg else png_size(data)
    flag = cv2.IMREAD_COLOR
    if size is not None:
        width, height = size
        limit = MAX_JPEG_PIXELS if is_jpeg else MAX_PIXELS
        if width * height > limit:
            raise _too_large(path, width, height, limit)
        factor = reduction_for(width, height, max_side) if is_jpeg else 1
        flag = _REDUCED.get(factor, cv2.IMREAD_COLOR)
    bgr = cv2.imdecode(data, flag)
    if bgr is None or bgr.size == 0:
        raise CorruptImageError(f"{path}: not a decodable image")
    height, width = bgr.shape[:2]
    if max(height, width) > max_side:
        scale = max_side / max(height, width)
        new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
        bgr = cv2.resize(bgr, new_size, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
