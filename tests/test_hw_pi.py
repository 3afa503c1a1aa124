"""Real-hardware checks: run on a Raspberry Pi with the camera, buttons and panel attached.

Elsewhere every test here skips itself. Run them on a Pi with ``pytest -m pi``
(stop the skinscan service first: it owns the camera, the pins and the screen).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from device.config import is_raspberry_pi, load_config

pytestmark = [
    pytest.mark.pi,
    pytest.mark.skipif(not is_raspberry_pi(), reason="needs a Raspberry Pi"),
]

CONFIG = load_config(environ={})


def test_camera_gives_rgb_preview_and_still():
    pytest.importorskip("picamera2")
    from device.hw.camera_picamera2 import Picamera2Camera

    camera = Picamera2Camera(CONFIG.camera.preview_size, CONFIG.camera.still_size)
    camera.open()
    try:
        preview = camera.preview_frame()
        still = camera.capture_still()
        # Live view resumes after the still.
        again = camera.preview_frame()
    finally:
        camera.close()
    width, height = CONFIG.camera.preview_size
    assert preview.shape == (height, width, 3) and preview.dtype == np.uint8
    assert again.shape == preview.shape
    width, height = CONFIG.camera.still_size
    assert still.shape == (height, width, 3)
    assert still.std() > 1  # not a blank frame


def test_camera_colour_order_with_a_red_card():
    """Hold a red card in front of the lens: the red channel must dominate (RGB, not BGR)."""
    pytest.importorskip("picamera2")
    if not os.environ.get("SKINSCAN_RED_CARD"):
        pytest.skip("set SKINSCAN_RED_CARD=1 and hold a red card to the lens")
    from device.hw.camera_picamera2 import Picamera2Camera

    camera = Picamera2Camera(CONFIG.camera.preview_size, CONFIG.camera.still_size)
    camera.open()
    try:
        frame = camera.capture_still().reshape(-1, 3).mean(axis=0)
    finally:
        camera.close()
    assert frame[0] > 1.3 * frame[2]


def test_gpio_buttons_claim_and_release_the_configured_pins():
    pytest.importorskip("gpiozero")
    from device.hw.buttons_gpio import GpioButtons

    pins = dict(CONFIG.buttons.pins.items())
    buttons = GpioButtons(pins, CONFIG.buttons.hold_time_s, CONFIG.buttons.bounce_time_s)
    assert buttons.poll() == []  # nothing pressed
    buttons.close()
    GpioButtons(pins).close()  # released: they can be claimed again


def test_panel_opens_full_screen_through_kms():
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        pytest.skip("a desktop session owns the screen; run from a console")
    from device.hw.display import PygameDisplay

    display = PygameDisplay("fullscreen")
    display.open()
    try:
        width, height = display.size
        assert width >= 320 and height >= 240
        display.surface.fill((0, 0, 0))
        display.present()
    finally:
        display.close()
