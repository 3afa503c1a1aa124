"""GPIO buttons under gpiozero's MockFactory: pins, debounce, long hold, clean release."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("gpiozero")
from gpiozero.pins.mock import MockFactory

from device.config import load_config
from device.hw.buttons_gpio import GpioButtons, GpioError

PINS = dict(load_config(environ={}).buttons.pins.items())


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def factory():
    factory = MockFactory()
    yield factory
    factory.reset()


def press(factory, pin: int) -> None:
    factory.pin(pin).drive_low()


def release(factory, pin: int) -> None:
    factory.pin(pin).drive_high()


def wait_for(buttons: GpioButtons, timeout: float = 2.0) -> list[str]:
    deadline = time.monotonic() + timeout
    events: list[str] = []
    while time.monotonic() < deadline:
        events += buttons.poll()
        if events:
            return events
        time.sleep(0.01)
    return events


def test_each_configured_pin_yields_its_event(factory):
    clock = FakeClock()
    buttons = GpioButtons(PINS, pin_factory=factory, clock=clock)
    try:
        for name, pin in PINS.items():
            if name == "power":
                continue
            press(factory, pin)
            clock.advance(0.2)
            release(factory, pin)
            clock.advance(0.2)
            assert buttons.poll() == [name], name
    finally:
        buttons.close()


def test_short_power_press_is_power_not_shutdown(factory):
    clock = FakeClock()
    buttons = GpioButtons(PINS, hold_time_s=5.0, pin_factory=factory, clock=clock)
    try:
        press(factory, PINS["power"])
        assert buttons.poll() == []  # nothing until released
        clock.advance(0.3)
        release(factory, PINS["power"])
        assert buttons.poll() == ["power"]
    finally:
        buttons.close()


def test_bounce_is_filtered(factory):
    clock = FakeClock()
    buttons = GpioButtons(PINS, bounce_time_s=0.05, pin_factory=factory, clock=clock)
    pin = PINS["capture"]
    try:
        press(factory, pin)
        for _ in range(3):  # contacts chattering within 5 ms
            clock.advance(0.002)
            release(factory, pin)
            clock.advance(0.002)
            press(factory, pin)
        clock.advance(0.3)
        release(factory, pin)
        assert buttons.poll() == ["capture"]
        # A real second press, well after the bounce window, counts.
        clock.advance(0.3)
        press(factory, pin)
        assert buttons.poll() == ["capture"]
    finally:
        buttons.close()


def test_long_hold_of_power_yields_shutdown_once(factory):
    buttons = GpioButtons(PINS, hold_time_s=0.5, pin_factory=factory)
    try:
        press(factory, PINS["power"])
        events = wait_for(buttons, timeout=3.0)
        assert events == ["shutdown"]
        release(factory, PINS["power"])
        time.sleep(0.05)
        assert buttons.poll() == []  # the release after a hold is not also a short press
    finally:
        buttons.close()


def test_short_back_press_is_back_on_release(factory):
    clock = FakeClock()
    buttons = GpioButtons(PINS, hold_time_s=5.0, pin_factory=factory, clock=clock)
    try:
        press(factory, PINS["back"])
        assert buttons.poll() == []  # BACK has a second meaning when held: wait for the release
        clock.advance(0.3)
        release(factory, PINS["back"])
        assert buttons.poll() == ["back"]
    finally:
        buttons.close()


def test_long_hold_of_back_yields_patient_once(factory):
    buttons = GpioButtons(PINS, hold_time_s=0.5, pin_factory=factory)
    try:
        press(factory, PINS["back"])
        assert wait_for(buttons, timeout=3.0) == ["patient"]
        release(factory, PINS["back"])
        time.sleep(0.05)
        assert buttons.poll() == []  # not also "back"
    finally:
        buttons.close()


def test_close_releases_every_pin(factory):
    buttons = GpioButtons(PINS, pin_factory=factory)
    buttons.close()
    # The same pins can be claimed again: nothing was left reserved.
    again = GpioButtons(PINS, pin_factory=factory)
    again.close()


def test_a_busy_pin_fails_cleanly_and_releases_the_others(factory):
    from gpiozero import Button

    squatter = Button(PINS["save"], pin_factory=factory)
    try:
        with pytest.raises(GpioError, match="cannot set up GPIO buttons"):
            GpioButtons(PINS, pin_factory=factory)
        # The pins claimed before the failure were released.
        Button(PINS["capture"], pin_factory=factory).close()
    finally:
        squatter.close()


def test_labels_name_the_physical_buttons(factory):
    buttons = GpioButtons(PINS, pin_factory=factory)
    try:
        assert buttons.labels["capture"] == "CAPTURE"
        assert buttons.labels["shutdown"] == "Hold POWER"
        assert buttons.labels["patient"] == "Hold BACK"
    finally:
        buttons.close()
