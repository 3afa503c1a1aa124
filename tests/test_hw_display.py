"""The pygame display in headless mode: a PNG for every new screen, and clean release."""

from __future__ import annotations

import os

import cv2
import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

from device.hw.display import DisplayError, PygameDisplay, has_desktop


def test_headless_writes_a_png_per_new_key(tmp_path):
    display = PygameDisplay("headless", (480, 320), tmp_path)
    display.open()
    try:
        assert display.size == (480, 320)
        display.surface.fill((255, 0, 0))
        first = display.present("preview")
        assert display.present("preview") is None  # same screen: no new file
        display.surface.fill((0, 0, 255))
        second = display.present("result scan/1")
        assert display.present(None) is None
    finally:
        display.close()
    assert first.name == "001-preview.png"
    assert second.name == "002-result-scan-1.png"
    image = cv2.imread(str(second))
    assert image.shape == (320, 480, 3)
    assert image[0, 0].tolist() == [255, 0, 0]  # BGR: blue


def test_headless_without_screenshot_folder_writes_nothing(tmp_path):
    display = PygameDisplay("headless", (800, 480))
    display.open()
    try:
        assert display.present("preview") is None
        assert display.written == []
    finally:
        display.close()


def test_present_before_open_is_an_error():
    with pytest.raises(DisplayError, match="not open"):
        PygameDisplay("headless").present("x")


def test_unknown_mode_is_refused():
    with pytest.raises(DisplayError, match="unknown display mode"):
        PygameDisplay("hologram")  # type: ignore[arg-type]


def test_close_is_idempotent():
    display = PygameDisplay("headless", (480, 320))
    display.open()
    display.close()
    display.close()
    assert display.surface is None


def test_desktop_detection():
    assert has_desktop({"DISPLAY": ":0"})
    assert has_desktop({"WAYLAND_DISPLAY": "wayland-0"})
    assert not has_desktop({})
