"""Input checks that turn unusable arrays into clear ImageErrors before OpenCV sees them."""

from __future__ import annotations

import numpy as np

from device.errors import ImageError

MIN_SIDE = 16


def ensure_rgb_uint8(image: object, name: str = "image") -> np.ndarray:
    """Return ``image`` as a C-contiguous HxWx3 uint8 array, or raise ImageError.

    Accepts only what a camera or decoder produces: three channels, uint8, at
    least 16x16 pixels. Float arrays are refused rather than guessed at, because
    a silently rescaled image would change the diagnosis.
    """
    if not isinstance(image, np.ndarray):
        raise ImageError(f"{name}: expected a numpy array, got {type(image).__name__}")
    if image.size == 0:
        raise ImageError(f"{name}: empty array (shape {image.shape})")
    if image.dtype != np.uint8:
        if np.issubdtype(image.dtype, np.floating) and np.isnan(image).any():
            raise ImageError(f"{name}: contains NaN values")
        raise ImageError(f"{name}: expected dtype uint8, got {image.dtype}")
    if image.ndim == 2:
        raise ImageError(f"{name}: greyscale image (shape {image.shape}); an RGB image is needed")
    if image.ndim != 3:
        raise ImageError(f"{name}: expected HxWx3, got shape {image.shape}")
    channels = image.shape[2]
    if channels == 4:
        raise ImageError(f"{name}: 4-channel image; convert RGBA/XBGR to RGB first")
    if channels != 3:
        raise ImageError(f"{name}: expected 3 channels, got {channels}")
    height, width = image.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise ImageError(f"{name}: {width}x{height} is too small (minimum {MIN_SIDE}x{MIN_SIDE})")
    return np.ascontiguousarray(image)
