"""The picamera2 backend against a fake module with the same calls.

The fake records every call, hands out requests that must be released, and can
be told to have no camera or to fail a capture.
"""

from __future__ import annotations

import sys
from enum import Enum

import numpy as np
import pytest

from device.errors import CameraError
from device.hw.camera_picamera2 import Picamera2Camera


class FakePreview(Enum):
    NULL = 0
    DRM = 1
    QTGL = 3


class FakeRequest:
    def __init__(self, module: FakePicamera2Module, array: np.ndarray) -> None:
        self.module = module
        self.array = array
        self.released = False

    def make_array(self, name: str) -> np.ndarray:
        self.module.calls.append(("make_array", name))
        if self.module.fail_make_array:
            raise RuntimeError("buffer mapping failed")
        return self.array

    def release(self) -> None:
        assert not self.released, "request released twice"
        self.released = True
        self.module.calls.append(("release",))


class FakeCamera:
    def __init__(self, module: FakePicamera2Module, num: int) -> None:
        self.module = module
        self.num = num
        self.mode = None

    def create_preview_configuration(self, main, controls=None):
        self.module.calls.append(("create_preview_configuration", main))
        return {"kind": "preview", "main": main, "controls": controls}

    def create_still_configuration(self, main, controls=None):
        self.module.calls.append(("create_still_configuration", main))
        return {"kind": "still", "main": main, "controls": controls}

    def configure(self, config):
        self.module.calls.append(("configure", config["kind"]))
        if self.module.fail_configure:
            raise RuntimeError("camera busy")
        self.mode = config

    def start_preview(self, preview):
        self.module.calls.append(("start_preview", preview))

    def start(self):
        self.module.calls.append(("start",))

    def _request(self, config) -> FakeRequest:
        width, height = config["main"]["size"]
        # The fake fills R=10, G=20, B=30: the backend must not swap channels for BGR888.
        array = np.empty((height, width, 3), np.uint8)
        array[:] = (10, 20, 30)
        request = FakeRequest(self.module, array)
        self.module.requests.append(request)
        return request

    def capture_request(self):
        self.module.calls.append(("capture_request",))
        if self.module.unplugged:
            raise RuntimeError("camera timed out")
        return self._request(self.mode)

    def switch_mode_and_capture_request(self, config):
        self.module.calls.append(("switch_mode_and_capture_request", config["kind"]))
        return self._request(config)

    def stop(self):
        self.module.calls.append(("stop",))

    def close(self):
        self.module.calls.append(("close",))


class FakePicamera2Module:
    """Stands in for the ``picamera2`` module."""

    Preview = FakePreview

    def __init__(self, cameras: int = 1) -> None:
        self.cameras = cameras
        self.calls: list[tuple] = []
        self.requests: list[FakeRequest] = []
        self.fail_make_array = False
        self.fail_configure = False
        self.unplugged = False
        module = self

        class Picamera2:
            @staticmethod
            def global_camera_info():
                return [{"Model": "imx708", "Num": i} for i in range(module.cameras)]

            def __new__(cls, num=0):
                module.calls.append(("Picamera2", num))
                return FakeCamera(module, num)

        self.Picamera2 = Picamera2

    def unplug(self) -> None:
        self.unplugged = True

    def names(self) -> list[str]:
        return [call[0] for call in self.calls]


@pytest.fixture
def fake():
    return FakePicamera2Module()


def opened(fake, **kw) -> Picamera2Camera:
    camera = Picamera2Camera(preview_size=(64, 48), still_size=(320, 240), module=fake, **kw)
    camera.open()
    return camera


def test_open_configures_preview_with_no_preview_window(fake):
    opened(fake)
    assert fake.names() == [
        "Picamera2",
        "create_preview_configuration",
        "create_still_configuration",
        "configure",
        "start_preview",
        "start",
    ]
    assert ("configure", "preview") in fake.calls
    assert ("start_preview", FakePreview.NULL) in fake.calls
    for call in fake.calls:
        if call[0].startswith("create_"):
            assert call[1]["format"] == "BGR888"


def test_fixed_white_balance_goes_into_both_configurations(fake):
    camera = opened(fake, colour_gains=(1.9, 1.7))
    fixed = {"AwbEnable": False, "ColourGains": (1.9, 1.7)}
    assert camera._camera.mode["kind"] == "preview"
    assert camera._camera.mode["controls"] == fixed
    assert camera._still_config["controls"] == fixed  # the still keeps the live view's colour


def test_auto_white_balance_is_left_on_by_default(fake):
    camera = opened(fake)
    assert camera._camera.mode["controls"] is None
    assert camera._still_config["controls"] is None


def test_preview_frame_is_rgb_from_a_released_request(fake):
    camera = opened(fake)
    frame = camera.preview_frame()
    assert frame.shape == (48, 64, 3)
    assert frame[0, 0].tolist() == [10, 20, 30]
    assert fake.names()[-3:] == ["capture_request", "make_array", "release"]
    assert all(r.released for r in fake.requests)


def test_still_uses_the_still_configuration_and_is_released(fake):
    camera = opened(fake)
    still = camera.capture_still()
    assert still.shape == (240, 320, 3)
    assert ("switch_mode_and_capture_request", "still") in fake.calls
    assert fake.names()[-1] == "release"
    assert all(r.released for r in fake.requests)


def test_frames_outlive_their_request(fake):
    camera = opened(fake)
    frame = camera.preview_frame()
    fake.requests[-1].array[:] = 0  # the buffer is reused after release
    assert frame[0, 0].tolist() == [10, 20, 30]


def test_request_is_released_even_when_reading_fails(fake):
    camera = opened(fake)
    fake.fail_make_array = True
    with pytest.raises(RuntimeError):
        camera.preview_frame()
    assert fake.requests and all(r.released for r in fake.requests)


def test_many_frames_release_every_request(fake):
    camera = opened(fake)
    for _ in range(10):
        camera.preview_frame()
    camera.capture_still()
    assert len(fake.requests) == 11
    assert all(r.released for r in fake.requests)


def test_no_camera_is_a_camera_error_naming_the_cable():
    fake = FakePicamera2Module(cameras=0)
    with pytest.raises(CameraError, match="ribbon cable"):
        Picamera2Camera(module=fake).open()
    assert "Picamera2" not in fake.names()


def test_failed_start_closes_the_camera(fake):
    fake.fail_configure = True
    with pytest.raises(CameraError, match="camera busy"):
        Picamera2Camera(module=fake).open()
    assert fake.names()[-2:] == ["stop", "close"]


def test_unplugged_camera_raises_camera_error(fake):
    camera = opened(fake)
    fake.unplug()
    with pytest.raises(CameraError, match="stopped responding"):
        camera.preview_frame()


def test_close_stops_and_closes_once(fake):
    camera = opened(fake)
    camera.close()
    camera.close()
    assert fake.names().count("close") == 1
    assert fake.names()[-2:] == ["stop", "close"]
    with pytest.raises(CameraError, match="not open"):
        camera.preview_frame()


def test_missing_picamera2_is_a_camera_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # makes the import fail
    with pytest.raises(CameraError, match="python3-picamera2"):
        Picamera2Camera().open()
