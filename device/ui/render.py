"""Draws a Screen onto a pygame surface of any size.

The parts live in :mod:`device.ui.draw`: the theme (colours, fonts), the canvas
(scaled lengths, fitted text, images), the header and footer, and one module per
family of screens. This module puts them together in :class:`Renderer`, and keeps
the names other modules import from here.

Every length is a multiple of a unit ``u = min(width / 480, height / 320)``, so
the 3.5" 480x320 LCD and the 7" 800x480 panel show the same layout at
different scales. Text that does not fit is wrapped, then shrunk down to a
legible minimum, never clipped in the middle of a word.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from device.hw.display import import_pygame
from device.ui.draw.history import HistoryScreens
from device.ui.draw.live import LiveScreens
from device.ui.draw.menu import MenuScreens
from device.ui.draw.notices import NoticeScreens
from device.ui.draw.patient import PatientScreens
from device.ui.draw.theme import (
    BAD,
    BASE_SIZE,
    BG,
    BOX,
    FONT_DIRS,
    GOOD,
    MIN_FONT_PX,
    MUTED,
    PANEL,
    PATIENT_BG,
    TEXT,
    TIER_COLOURS,
    WARN,
    background_of,
    find_font,
    foreground_of,
)
from device.ui.screens import Screen

__all__ = [
    "BAD",
    "BASE_SIZE",
    "BG",
    "BOX",
    "FONT_DIRS",
    "GOOD",
    "MIN_FONT_PX",
    "MUTED",
    "PANEL",
    "PATIENT_BG",
    "TEXT",
    "TIER_COLOURS",
    "WARN",
    "Renderer",
    "background_of",
    "find_font",
    "foreground_of",
    "surface_to_array",
]


class Renderer(LiveScreens, HistoryScreens, PatientScreens, NoticeScreens, MenuScreens):
    """Draws screens; create once per display and reuse (it caches fonts and text).

    Args:
        size: surface size (width, height).
        key_labels: button event -> label printed in hints, e.g. {"capture": "Space"}.
    """

    # ---- screens ----------------------------------------------------------------------------

    def draw(self, surface: Any, screen: Screen) -> None:
        """Draw ``screen`` over the whole surface."""
        surface.fill(BG)
        self._patient = getattr(screen, "patient", "")
        self.layout_hints(screen.hints)
        drawers = {
            "preview": self._preview,
            "analyzing": self._analyzing,
            "result": self._result,
            "retake": self._retake,
            "error": self._error,
            "history": self._history,
            "shutdown": self._shutdown,
            "card": self._card,
            "site": self._site,
            "compare": self._compare,
            "menu": self._menu,
            "usb_busy": self._usb_busy,
            "usb_done": self._usb_done,
        }
        drawers[screen.kind](surface, screen)
        self.draw_patient(surface)
        self.draw_hints(surface, screen.hints)

    # ---- whole frame ------------------------------------------------------------------------

    def render(self, screen: Screen) -> Any:
        """Draw ``screen`` on a new surface of this renderer's size (for tests and tools)."""
        surface = self.pygame.Surface(self.size)
        self.draw(surface, screen)
        return surface


def surface_to_array(surface: Any) -> np.ndarray:
    """A pygame surface as an HxWx3 RGB uint8 array (for tests and screenshots)."""
    pygame = import_pygame()
    return np.ascontiguousarray(pygame.surfarray.array3d(surface).swapaxes(0, 1))
