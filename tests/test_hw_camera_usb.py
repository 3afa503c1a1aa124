"""The USB camera backend against a fake VideoCapture."""

from __future__ import annotations

import numpy as np
import pytest

from device.errors import CameraError
from device.hw.camera_usb import UsbCamera


class FakeCapture:
    """Stands in for cv2.VideoCapture: BGR frames, numbered so staleness shows."""

    def __init__(self, index: int, present: bool = True) -> None:
        self.index = index
        self.present = present
        self.released = False
        self.counter = 0
        self.settings: dict[int, float] = {}

    def isOpened(self) -> bool:
        return self.present

    def set(self, prop: int, value: float) -> bool:
        self.settings[prop] = value
        return True

    def grab(self) -> bool:
        self.counter += 1
        return self.present

    def read(self):
        if not self.present:
            return False, None
        self.counter += 1
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[..., 0] = 200  # blue in BGR
        frame[0, 0, 1] = self.counter
        return True, frame

    def unplug(self) -> None:
        self.present = False

    def release(self) -> None:
        self.released = True


def test_frames_are_converted_to_rgb():
    captures: list[FakeCapture] = []
    camera = UsbCamera(0, capture_factory=lambda i: captures.append(FakeCapture(i)) or captures[-1])
    camera.open()
    frame = camera.preview_frame()
    assert frame[1, 1].tolist() == [0, 0, 200]


def test_still_skips_buffered_frames():
    capture = FakeCapture(0)
    camera = UsbCamera(0, capture_factory=lambda i: capture)
    camera.open()
    camera.preview_frame()
    still = camera.capture_still()
    assert still[0, 0, 1] == 4  # 1 preview read, 2 grabs, then this read


def test_absent_camera_is_a_camera_error_and_is_released():
    capture = FakeCapture(3, present=False)
    with pytest.raises(CameraError, match="no USB camera at index 3"):
        UsbCamera(3, capture_factory=lambda i: capture).open()
    assert capture.released


def test_unplugged_camera_raises_and_reopens():
    captures: list[FakeCapture] = []

    def factory(index: int) -> FakeCapture:
        captures.append(FakeCapture(index))
        return captures[-1]

    camera = UsbCamera(0, capture_factory=factory)
    camera.open()
    captures[-1].unplug()
    with pytest.raises(CameraError, match="no frame"):
        camera.preview_frame()
    assert captures[0].released
    camera.open()
    assert camera.preview_frame().shape == (48, 64, 3)
    camera.close()
    assert captures[1].released
