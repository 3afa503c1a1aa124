"""The Raspberry Pi camera through picamera2 (apt ``python3-picamera2``; Pi only).

- The live view uses a preview configuration; analysis switches to a still
  configuration for one full-resolution request, then back.
- No picamera2 preview window (``Preview.NULL``): pygame owns the screen, and
  KMS allows one owner.
- Format ``"BGR888"`` gives RGB arrays (checked on hardware; see DESIGN.md).
- Every request from ``capture_request``/``switch_mode_and_capture_request``
  is released, even when reading it fails.
"""

from __future__ import annotations

import importlib
import logging
from types import ModuleType
from typing import Any

import numpy as np

from device.errors import CameraError

log = logging.getLogger(__name__)

# picamera2's "BGR888" is RGB in memory (libcamera names formats by register order).
RGB_FORMAT = "BGR888"


class Picamera2Camera:
    """The Pi camera module.

    Args:
        preview_size: live-view size (width, height).
        still_size: analysis still size (width, height).
        camera_num: which camera, for boards with two connectors.
        colour_gains: fixed (red, blue) white-balance gains for the LED ring, set on
            both the preview and the still configuration with auto white balance off;
            None leaves auto white balance on.
        module: the ``picamera2`` module; tests pass a fake with the same calls.
    """

    name = "Pi camera"

    def __init__(
        self,
        preview_size: tuple[int, int] = (640, 480),
        still_size: tuple[int, int] = (1024, 768),
        camera_num: int = 0,
        module: ModuleType | Any | None = None,
        colour_gains: tuple[float, float] | None = None,
    ) -> None:
        self.preview_size = preview_size
        self.still_size = still_size
        self.camera_num = camera_num
        self.colour_gains = colour_gains
        self._module = module
        self._camera: Any = None
        self._still_config: Any = None

    def _picamera2(self) -> Any:
        if self._module is None:
            try:
                self._module = importlib.import_module("picamera2")
            except ImportError as exc:
                raise CameraError(
                    "picamera2 is not installed (apt install python3-picamera2; "
                    "the venv needs --system-site-packages)"
                ) from exc
        return self._module

    def open(self) -> None:
        """Find the camera, configure the preview stream with no preview window, and start."""
        if self._camera is not None:
            return
        module = self._picamera2()
        cameras = module.Picamera2.global_camera_info()
        if len(cameras) <= self.camera_num:
            raise CameraError("no camera connected: check the ribbon cable and its orientation")
        try:
            camera = module.Picamera2(self.camera_num)
        except Exception as exc:  # picamera2 raises RuntimeError/IndexError/OSError here
            raise CameraError(f"cannot open the camera: {exc}") from exc
        try:
            # Controls in a configuration apply whenever it is used, so the still
            # taken by a mode switch keeps the same white balance as the live view.
            extra = {"controls": self._controls()} if self.colour_gains else {}
            preview = camera.create_preview_configuration(
                main={"size": tuple(self.preview_size), "format": RGB_FORMAT}, **extra
            )
            self._still_config = camera.create_still_configuration(
                main={"size": tuple(self.still_size), "format": RGB_FORMAT}, **extra
            )
            camera.configure(preview)
            camera.start_preview(module.Preview.NULL)
            camera.start()
        except Exception as exc:
            # A constructor that fails releases what it grabbed before re-raising.
            _close_quietly(camera)
            raise CameraError(f"cannot start the camera: {exc}") from exc
        self._camera = camera
        log.info("Pi camera open: preview %s, still %s", self.preview_size, self.still_size)

    def _controls(self) -> dict[str, Any]:
        """libcamera controls for a fixed white balance."""
        red, blue = self.colour_gains or (1.0, 1.0)
        return {"AwbEnable": False, "ColourGains": (float(red), float(blue))}

    def _read(self, request: Any) -> np.ndarray:
        try:
            array = np.array(request.make_array("main"), copy=True)
        finally:
            request.release()
        if array.ndim != 3 or array.shape[2] < 3:
            raise CameraError(f"camera returned an unexpected frame shape {array.shape}")
        return np.ascontiguousarray(array[:, :, :3])

    def _require(self) -> Any:
        if self._camera is None:
            raise CameraError("camera is not open")
        return self._camera

    def preview_frame(self) -> np.ndarray:
        """One live-view frame, RGB."""
        camera = self._require()
        try:
            request = camera.capture_request()
        except Exception as exc:
            raise CameraError(f"camera stopped responding: {exc}") from exc
        return self._read(request)

    def capture_still(self) -> np.ndarray:
        """One full-resolution still, RGB; the preview mode resumes afterwards."""
        camera = self._require()
        try:
            request = camera.switch_mode_and_capture_request(self._still_config)
        except Exception as exc:
            raise CameraError(f"still capture failed: {exc}") from exc
        return self._read(request)

    def close(self) -> None:
        """Stop and release the camera."""
        if self._camera is None:
            return
        camera, self._camera = self._camera, None
        _close_quietly(camera)
        log.info("Pi camera closed")


def _close_quietly(camera: Any) -> None:
    for step in ("stop", "close"):
        try:
            getattr(camera, step)()
        except Exception as exc:  # closing must never mask the original problem
            log.warning("camera %s failed: %s", step, exc)
