"""Keyboard buttons in the simulator window: key presses become button events."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

from device.hw.buttons import BUTTON_EVENTS, FAULT_PREFIX
from device.hw.buttons_keys import KEYMAP, KeyButtons
from device.hw.display import PygameDisplay, import_pygame


@pytest.fixture
def window():
    display = PygameDisplay("headless", (480, 320))
    display.open()
    yield import_pygame()
    display.close()


def press(pygame, key_name: str) -> None:
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.key.key_code(key_name)))


def test_keys_map_to_events_in_order(window):
    buttons = KeyButtons()
    for key in ("space", "h", "s", "n", "escape", "x", "c", "2"):
        press(window, key)
    assert buttons.poll() == [
        "capture", "toggle", "save", "next", "back", "shutdown", "patient", "fault:blur"
    ]  # fmt: skip
    assert buttons.poll() == []


def test_unmapped_keys_are_ignored_and_closing_the_window_quits(window):
    buttons = KeyButtons()
    press(window, "z")
    window.event.post(window.event.Event(window.QUIT))
    assert buttons.poll() == ["quit"]


def test_every_button_has_a_key_and_a_printed_label():
    events = set(KEYMAP.values())
    named = ("capture", "toggle", "next", "save", "back", "shutdown", "patient", "history", "quit")
    for name in named:
        assert name in events
        assert KeyButtons.labels[name]
    assert KeyButtons.labels["capture"] == "Space"
    assert all(e in BUTTON_EVENTS or e.startswith(FAULT_PREFIX) for e in events)
