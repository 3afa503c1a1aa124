"""A USB webcam (or any V4L2 device) through OpenCV's VideoCapture."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from device.errors import CameraError

log = logging.getLogger(__name__)

# OpenCV keeps a few frames buffered; a still must be a fresh one.
STALE_FRAMES = 2


class UsbCamera:
    """A USB camera.

    Args:
        index: the OpenCV device index (``/dev/videoN``).
        size: requested frame size (width, height); the camera may pick another.
        capture_factory: builds the capture object; tests pass a fake.
    """

    name = "USB camera"

    def __init__(
        self,
        index: int = 0,
        size: tuple[int, int] = (640, 480),
        capture_factory: Callable[[int], Any] = cv2.VideoCapture,
    ) -> None:
        self.index = index
        self.size = size
        self._factory = capture_factory
        self._capture: Any = None

    def open(self) -> None:
        """Open the device. Raises CameraError when it is absent."""
        if self._capture is not None:
            return
        capture = self._factory(self.index)
        if not capture.isOpened():
            capture.release()
            raise CameraError(f"no USB camera at index {self.index}: check it is plugged in")
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
        self._capture = capture
        log.info("USB camera %d open", self.index)

    def _read(self) -> np.ndarray:
        if self._capture is None:
            raise CameraError("camera is not open")
        ok, bgr = self._capture.read()
        if not ok or bgr is None:
            # An unplugged camera reads as failure; drop it so the app reopens it.
            self.close()
            raise CameraError("the USB camera returned no frame: check the cable")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def preview_frame(self) -> np.ndarray:
        """One live-view frame, RGB."""
        return self._read()

    def capture_still(self) -> np.ndarray:
        """A fresh frame (buffered ones are skipped), RGB."""
        if self._capture is not None:
            for _ in range(STALE_FRAMES):
                self._capture.grab()
        return self._read()

    def close(self) -> None:
        """Release the device."""
        if self._capture is not None:
            self._capture.release()
            self._capture = None
            log.info("USB camera closed")
