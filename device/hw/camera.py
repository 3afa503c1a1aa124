"""The Camera seam: what every camera backend provides, and how one is chosen.

A camera gives RGB uint8 frames: small, fast ones for the live view and a
full-resolution still for analysis. Any failure (missing, unplugged, no frame)
is raised as :class:`device.errors.CameraError`, which the app shows on screen
before retrying :meth:`Camera.open`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from device.errors import CameraError

log = logging.getLogger(__name__)

CAMERA_BACKENDS = ("pi", "usb", "sim")


@runtime_checkable
class Camera(Protocol):
    """A source of RGB uint8 frames."""

    name: str

    def open(self) -> None:
        """Acquire the camera. Raises CameraError when it is missing."""
        ...

    def preview_frame(self) -> np.ndarray:
        """One live-view frame (HxWx3 RGB uint8). Raises CameraError."""
        ...

    def capture_still(self) -> np.ndarray:
        """One full-resolution frame for analysis (HxWx3 RGB uint8). Raises CameraError."""
        ...

    def close(self) -> None:
        """Release the camera; safe to call twice or after a failed open."""
        ...


def make_camera(
    backend: str,
    *,
    preview_size: tuple[int, int] = (640, 480),
    still_size: tuple[int, int] = (1024, 768),
    usb_index: int = 0,
    sim_source: str | Path | None = None,
    colour_gains: tuple[float, float] | None = None,
) -> Camera:
    """Build (but do not open) the camera for ``backend``: "pi", "usb" or "sim".

    Raises:
        CameraError: ``backend`` is not a camera backend.
    """
    if backend == "pi":
        from device.hw.camera_picamera2 import Picamera2Camera

        return Picamera2Camera(
            preview_size=preview_size, still_size=still_size, colour_gains=colour_gains
        )
    if backend == "usb":
        from device.hw.camera_usb import UsbCamera

        return UsbCamera(index=usb_index, size=preview_size)
    if backend == "sim":
        from device.hw.camera_sim import SimCamera

        return SimCamera(source=sim_source or None, preview_size=preview_size)
    raise CameraError(
        f"unknown camera backend {backend!r}; use one of {', '.join(CAMERA_BACKENDS)}"
    )
