"""The keyboard of the simulator window standing in for the buttons.

The key for each button is printed on screen next to what it does. Number keys
1-5 inject simulated camera faults, so a tester can see every error screen; 6, 7
and 8 drain the simulated battery by 10 points, plug or unplug its charger, and
drop it to 3 % (the battery shutdown).
"""

from __future__ import annotations

import logging
from typing import ClassVar

log = logging.getLogger(__name__)

# pygame key name (pygame.key.name) -> event. The first key of each event is the
# one printed on screen.
KEYMAP: dict[str, str] = {
    "space": "capture",
    "return": "capture",
    "h": "toggle",
    "n": "next",
    "right": "next",
    "s": "save",
    "b": "back",
    "escape": "back",
    "backspace": "back",
    "l": "history",
    "c": "patient",
    "m": "menu",
    "p": "power",
    "x": "shutdown",
    "q": "quit",
    "1": "fault:black",
    "2": "fault:blur",
    "3": "fault:exception",
    "4": "fault:disconnect",
    "5": "fault:reconnect",
    "6": "fault:battery-drain",
    "7": "fault:battery-charge",
    "8": "fault:battery-critical",
}
KEY_LABELS: dict[str, str] = {"space": "Space", "escape": "Esc", "return": "Enter"}


def _labels() -> dict[str, str]:
    labels: dict[str, str] = {}
    for key, event in KEYMAP.items():
        labels.setdefault(event, KEY_LABELS.get(key, key.upper()))
    return labels


class KeyButtons:
    """Keyboard events from the pygame window (the display must already be open)."""

    labels: ClassVar[dict[str, str]] = _labels()

    def __init__(self) -> None:
        import pygame

        self._pygame = pygame

    def poll(self) -> list[str]:
        """Translate the window's pending key presses (and its close button) into events."""
        pygame = self._pygame
        events: list[str] = []
        for event in pygame.event.get((pygame.KEYDOWN, pygame.QUIT)):
            if event.type == pygame.QUIT:
                events.append("quit")
                continue
            name = KEYMAP.get(pygame.key.name(event.key))
            if name is not None:
                events.append(name)
        return events

    def close(self) -> None:
        """Nothing to release: the display owns the window."""
