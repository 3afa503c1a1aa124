"""Colours and fonts shared by every screen.

Fonts: DejaVu Sans when installed (Raspberry Pi OS ships it), else the
FreeSans Bold that comes inside pygame.
"""

from __future__ import annotations

from pathlib import Path

FONT_DIRS = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/dejavu"),
    Path("/usr/share/fonts/TTF"),
)
# The layouts are drawn for these sizes and scaled: landscape, and portrait (width < height).
BASE_SIZE = (480, 320)
PORTRAIT_BASE_SIZE = (320, 480)
MIN_FONT_PX = 11

BG = (16, 20, 24)
PANEL = (32, 38, 46)
TEXT = (240, 242, 245)
MUTED = (165, 172, 182)
GOOD = (46, 170, 80)
BAD = (220, 60, 50)
WARN = (245, 180, 40)
BOX = (0, 220, 255)
PATIENT_BG = (24, 60, 96)
TIER_COLOURS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    # tier -> (background, text)
    "refer": ((200, 40, 40), (255, 255, 255)),
    "uncertain": ((245, 180, 40), (20, 20, 20)),
    "monitor": ((40, 140, 70), (255, 255, 255)),
}


def background_of(tier: str) -> tuple[int, int, int]:
    """The banner colour of a risk tier (unknown tiers look "uncertain")."""
    return TIER_COLOURS.get(tier, TIER_COLOURS["uncertain"])[0]


def foreground_of(tier: str) -> tuple[int, int, int]:
    """The text colour on a risk tier's banner."""
    return TIER_COLOURS.get(tier, TIER_COLOURS["uncertain"])[1]


def find_font(bold: bool = False) -> str | None:
    """Path of DejaVu Sans (bold or regular), or None to use pygame's bundled font."""
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    for folder in FONT_DIRS:
        path = folder / name
        if path.is_file():
            return str(path)
    return None
