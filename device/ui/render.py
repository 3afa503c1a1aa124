"""Draws a Screen onto a pygame surface of any size.

Every length is a multiple of a unit ``u = min(width / 480, height / 320)``, so
the 3.5" 480x320 LCD and the 7" 800x480 panel show the same layout at
different scales. Text that does not fit is wrapped, then shrunk down to a
legible minimum, never clipped in the middle of a word.

Fonts: DejaVu Sans when installed (Raspberry Pi OS ships it), else the
FreeSans Bold that comes inside pygame.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from device.hw.display import import_pygame
from device.ui.screens import (
    NOTICE,
    UNUSUAL_LIGHT_NOTES,
    AnalyzingScreen,
    CardScreen,
    CompareScreen,
    CompareSide,
    ErrorScreen,
    Hint,
    HistoryScreen,
    PreviewScreen,
    ResultScreen,
    RetakeScreen,
    Screen,
    ShutdownScreen,
    SiteScreen,
    tier_action,
)

log = logging.getLogger(__name__)

FONT_DIRS = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/dejavu"),
    Path("/usr/share/fonts/TTF"),
)
BASE_SIZE = (480, 320)
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


class Renderer:
    """Draws screens; create once per display and reuse (it caches fonts and text).

    Args:
        size: surface size (width, height).
        key_labels: button event -> label printed in hints, e.g. {"capture": "Space"}.
    """

    def __init__(self, size: tuple[int, int], key_labels: Mapping[str, str] | None = None) -> None:
        self.pygame = import_pygame()
        if not self.pygame.font.get_init():
            self.pygame.font.init()
        self.size = (int(size[0]), int(size[1]))
        self.key_labels = dict(key_labels or {})
        self.u = min(self.size[0] / BASE_SIZE[0], self.size[1] / BASE_SIZE[1])
        self._font_paths = {False: find_font(False), True: find_font(True)}
        self._fonts: dict[tuple[int, bool], Any] = {}
        self._text_cache: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._image_cache: OrderedDict[tuple[Any, ...], tuple[np.ndarray, Any]] = OrderedDict()
        # Set per screen by draw(): the patient line under the title, and the footer rows.
        self._patient = ""
        self._hint_rows: list[list[tuple[str, int]]] = []
        self._hint_font: Any = None

    # ---- primitives -------------------------------------------------------------------------

    def px(self, value: float) -> int:
        """A base-layout length (at 480x320) scaled to this surface."""
        return max(1, round(value * self.u))

    def font(self, size: float, bold: bool = False) -> Any:
        """A font of ``size`` base pixels (scaled, never below the legible minimum)."""
        pixels = max(MIN_FONT_PX, self.px(size))
        key = (pixels, bold)
        if key not in self._fonts:
            path = self._font_paths[bold] or self._font_paths[not bold]
            self._fonts[key] = self.pygame.font.Font(path, pixels)
        return self._fonts[key]

    def text_surface(self, text: str, font: Any, colour: tuple[int, int, int]) -> Any:
        """Rendered text, cached."""
        key = (text, id(font), colour)
        cached = self._text_cache.get(key)
        if cached is None:
            cached = font.render(text, True, colour)
            self._text_cache[key] = cached
            if len(self._text_cache) > 512:
                self._text_cache.popitem(last=False)
        return cached

    def draw_text(
        self,
        surface: Any,
        text: str,
        font: Any,
        colour: tuple[int, int, int],
        pos: tuple[int, int],
        anchor: str = "topleft",
    ) -> Any:
        """Draw one line of text; returns its rect."""
        rendered = self.text_surface(text, font, colour)
        rect = rendered.get_rect(**{anchor: pos})
        surface.blit(rendered, rect)
        return rect

    @staticmethod
    def wrap(text: str, font: Any, width: int) -> list[str]:
        """Split ``text`` into lines no wider than ``width`` (a lone long word stays whole)."""
        lines: list[str] = []
        for paragraph in text.split("\n"):
            words = paragraph.split()
            line = ""
            for word in words:
                candidate = f"{line} {word}".strip()
                if not line or font.size(candidate)[0] <= width:
                    line = candidate
                else:
                    lines.append(line)
                    line = word
            lines.append(line)
        return lines

    @staticmethod
    def line_step(font: Any) -> int:
        """Vertical distance between wrapped lines (never less than the glyph box)."""
        return max(font.get_linesize(), font.size("ÁgÅ")[1])

    @staticmethod
    def ellipsize(text: str, font: Any, width: int) -> str:
        """``text`` cut at a word boundary with "…" so that it fits ``width``."""
        if font.size(text)[0] <= width:
            return text
        words = text.split()
        while words and font.size(" ".join(words) + "…")[0] > width:
            words.pop()
        return (" ".join(words) + "…") if words else "…"

    def fit_lines(
        self, text: str, width: int, size: float, max_lines: int, bold: bool = False
    ) -> tuple[Any, list[str]]:
        """The largest font (from ``size`` down to the minimum) that fits ``text`` in the box."""
        current = size
        while True:
            font = self.font(current, bold)
            lines = self.wrap(text, font, width)
            fits = len(lines) <= max_lines and all(font.size(ln)[0] <= width for ln in lines)
            if fits or self.px(current) <= MIN_FONT_PX:
                return font, lines
            current -= 0.5

    def draw_block(
        self,
        surface: Any,
        text: str,
        rect: Any,
        size: float,
        colour: tuple[int, int, int],
        *,
        bold: bool = False,
        max_lines: int = 3,
        align: str = "left",
    ) -> int:
        """Draw wrapped text at the top of ``rect``; returns the y below the last line."""
        font, lines = self.fit_lines(text, rect.width, size, max_lines, bold)
        if len(lines) > max_lines:
            tail = self.ellipsize(" ".join(lines[max_lines - 1 :]), font, rect.width)
            lines = [*lines[: max_lines - 1], tail]
        y = rect.top
        step = self.line_step(font)
        for line in lines:
            if align == "center":
                self.draw_text(surface, line, font, colour, (rect.centerx, y), "midtop")
            else:
                self.draw_text(surface, line, font, colour, (rect.left, y))
            y += step
        return y

    def image_surface(self, image: np.ndarray, size: tuple[int, int]) -> Any:
        """An RGB array resized to ``size`` as a pygame surface (cached per array)."""
        key = (id(image), size)
        cached = self._image_cache.get(key)
        if cached is not None and cached[0] is image:
            return cached[1]
        width = image.shape[1]
        interpolation = cv2.INTER_AREA if size[0] < width else cv2.INTER_LINEAR
        resized = cv2.resize(image, size, interpolation=interpolation)
        resized = np.ascontiguousarray(resized[:, :, :3])
        surface = self.pygame.image.frombuffer(resized.tobytes(), size, "RGB")
        self._image_cache[key] = (image, surface)
        if len(self._image_cache) > 16:
            self._image_cache.popitem(last=False)
        return surface

    def fit_image(self, image: np.ndarray, rect: Any) -> Any:
        """The rect of ``image`` scaled to fit inside ``rect`` with its aspect ratio, centred."""
        height, width = image.shape[:2]
        scale = min(rect.width / width, rect.height / height)
        size = (max(1, int(width * scale)), max(1, int(height * scale)))
        return self.pygame.Rect(0, 0, *size).move(
            rect.left + (rect.width - size[0]) // 2, rect.top + (rect.height - size[1]) // 2
        )

    # ---- frame: header and hints --------------------------------------------------------------

    def header_height(self) -> int:
        """The title bar, plus the patient line under it while a patient is set."""
        return self.px(24) + (self.patient_height() if self._patient else 0)

    def title_height(self) -> int:
        """The title bar alone."""
        return self.px(24)

    def patient_height(self) -> int:
        """The patient line under the title bar."""
        return self.px(17)

    def footer_height(self) -> int:
        """One row of hint chips, or two when one row cannot hold them legibly."""
        return self.px(24) * max(1, len(self._hint_rows))

    def draw_patient(self, surface: Any) -> None:
        """The patient's reference and body site, on every screen while one is set."""
        if not self._patient:
            return
        top = self.title_height()
        height = self.patient_height()
        self.pygame.draw.rect(surface, PATIENT_BG, (0, top, self.size[0], height))
        pad = self.px(8)
        font, _ = self.fit_lines(self._patient, self.size[0] - 2 * pad, 12, 1, True)
        text = self.ellipsize(self._patient, font, self.size[0] - 2 * pad)
        self.draw_text(surface, text, font, TEXT, (pad, top + height // 2), "midleft")

    def draw_header(self, surface: Any, title: str, right: str = "", colour=TEXT) -> None:
        """The title bar, with optional text on the right.

        The right-hand text (the "not a diagnosis" notice) is never cut: the
        title gives way first, shrinking and then ending in "…".
        """
        pygame = self.pygame
        height = self.title_height()
        pygame.draw.rect(surface, PANEL, (0, 0, self.size[0], height))
        pad = self.px(8)
        right_w = 0
        if right:
            font, _ = self.fit_lines(right, self.size[0] // 2, 12, 1)
            right_w = font.size(right)[0]
            self.draw_text(
                surface, right, font, MUTED, (self.size[0] - pad, height // 2), "midright"
            )
        room = self.size[0] - right_w - 3 * pad
        size = 15.0
        title_font = self.font(size, True)
        while title_font.size(title)[0] > room and self.px(size) > MIN_FONT_PX:
            size -= 0.5
            title_font = self.font(size, True)
        title = self.ellipsize(title, title_font, room)
        self.draw_text(surface, title, title_font, colour, (pad, height // 2), "midleft")

    def hint_text(self, hint: Hint) -> str:
        """How a hint reads: the key or button label, then the action."""
        return f"{self.key_labels.get(hint.button, hint.button.upper())}: {hint.action}"

    def layout_hints(self, hints: Sequence[Hint]) -> None:
        """Choose the footer's font and rows: one row if it fits at a legible size, else two."""
        self._hint_rows = []
        if not hints:
            return
        pad, gap = self.px(6), self.px(6)
        room = self.size[0] - 2 * gap
        texts = [self.hint_text(h) for h in hints]

        def rows_at(font: Any, count: int) -> list[list[tuple[str, int]]] | None:
            """Chips flowed into at most ``count`` rows, or None when they need more."""
            rows: list[list[tuple[str, int]]] = [[]]
            used = 0
            for text in texts:
                width = font.size(text)[0] + 2 * pad
                if rows[-1] and used + gap + width > room:
                    rows.append([])
                    used = 0
                if width > room or len(rows) > count:
                    return None
                used += width + (gap if rows[-1] else 0)
                rows[-1].append((text, width))
            return rows

        for count in (1, 2):
            size = 12.0
            while True:
                font = self.font(size)
                laid = rows_at(font, count)
                if laid is not None:
                    self._hint_rows, self._hint_font = laid, font
                    return
                if self.px(size) <= MIN_FONT_PX:
                    break
                size -= 0.5
        # Still too wide on two rows at the smallest font: the keys only, on one row.
        font = self.font(12.0)
        keys = [self.key_labels.get(h.button, h.button.upper()) for h in hints]
        self._hint_rows = [[(k, font.size(k)[0] + 2 * pad) for k in keys]]
        self._hint_font = font

    def draw_hints(self, surface: Any, hints: Sequence[Hint]) -> None:
        """The footer: one chip per button that does something on this screen."""
        pygame = self.pygame
        if hints and not self._hint_rows:
            self.layout_hints(hints)
        height = self.footer_height()
        top = self.size[1] - height
        pygame.draw.rect(surface, PANEL, (0, top, self.size[0], height))
        if not hints:
            return
        gap = self.px(6)
        row_h = self.px(24)
        chip_h = row_h - self.px(6)
        for number, row in enumerate(self._hint_rows):
            total = sum(w for _, w in row) + gap * (len(row) - 1)
            x = (self.size[0] - total) // 2
            row_top = top + number * row_h
            for text, width in row:
                chip = pygame.Rect(x, row_top + (row_h - chip_h) // 2, width, chip_h)
                pygame.draw.rect(surface, BG, chip, border_radius=self.px(4))
                self.draw_text(surface, text, self._hint_font, TEXT, chip.center, "center")
                x += width + gap

    def content_rect(self) -> Any:
        """The area between the header and the footer."""
        top = self.header_height()
        return self.pygame.Rect(0, top, self.size[0], self.size[1] - top - self.footer_height())

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
        }
        drawers[screen.kind](surface, screen)
        self.draw_patient(surface)
        self.draw_hints(surface, screen.hints)

    def _preview(self, surface: Any, screen: PreviewScreen) -> None:
        pygame = self.pygame
        fps = f"{screen.fps:.0f} fps" if screen.fps > 0 else "– fps"
        right = fps + (f" · {screen.source}" if screen.source else "")
        self.draw_header(surface, screen.message or "Live view", right)
        area = self.content_rect()
        rect = self.fit_image(screen.frame, area)
        surface.blit(self.image_surface(screen.frame, rect.size), rect)
        if screen.lesion_box is not None:
            height, width = screen.frame.shape[:2]
            sx, sy = rect.width / width, rect.height / height
            x0, y0, x1, y1 = screen.lesion_box
            box = pygame.Rect(
                rect.left + round(x0 * sx),
                rect.top + round(y0 * sy),
                max(1, round((x1 - x0) * sx)),
                max(1, round((y1 - y0) * sy)),
            )
            pygame.draw.rect(surface, BOX, box, width=max(2, self.px(2)))
        # The quality light and its reason, on a strip across the bottom of the frame.
        strip_h = self.px(26)
        strip = pygame.Surface((rect.width, strip_h), pygame.SRCALPHA)
        strip.fill((0, 0, 0, 170))
        surface.blit(strip, (rect.left, rect.bottom - strip_h))
        colour = GOOD if screen.quality_ok else BAD
        radius = self.px(8)
        centre = (rect.left + self.px(6) + radius, rect.bottom - strip_h // 2)
        pygame.draw.circle(surface, colour, centre, radius)
        pygame.draw.circle(surface, TEXT, centre, radius, width=1)
        reason = screen.reason or "not ready"
        label = "Ready to scan" if screen.quality_ok else reason[:1].upper() + reason[1:]
        text_left = centre[0] + radius + self.px(6)
        font, lines = self.fit_lines(label, rect.right - text_left - self.px(4), 14, 1, True)
        self.draw_text(surface, lines[0], font, TEXT, (text_left, centre[1]), "midleft")
        if screen.warning:
            self._warning_band(surface, screen.warning, rect)

    def _warning_band(self, surface: Any, text: str, rect: Any) -> None:
        """A notice across the top of the live image, wrapped to at most three lines."""
        pygame = self.pygame
        pad = self.px(6)
        inner = pygame.Rect(rect.left + pad, rect.top + pad, rect.width - 2 * pad, rect.height)
        text = text[:1].upper() + text[1:]
        font, lines = self.fit_lines(text, inner.width, 13, 3, True)
        lines = lines[:3]
        band_h = self.line_step(font) * len(lines) + 2 * pad
        pygame.draw.rect(surface, WARN, (rect.left, rect.top, rect.width, band_h))
        self.draw_block(surface, text, inner, 13, (20, 20, 20), bold=True, max_lines=3)

    def _analyzing(self, surface: Any, screen: AnalyzingScreen) -> None:
        pygame = self.pygame
        self.draw_header(surface, screen.title)
        area = self.content_rect()
        if screen.frame is not None:
            rect = self.fit_image(screen.frame, area)
            surface.blit(self.image_surface(screen.frame, rect.size), rect)
            shade = pygame.Surface(rect.size, pygame.SRCALPHA)
            shade.fill((0, 0, 0, 160))
            surface.blit(shade, rect)
        self.draw_text(surface, screen.text, self.font(24, True), TEXT, area.center, "center")

    def _photo_with_legend(self, surface: Any, screen: ResultScreen, area: Any) -> Any:
        """The analysed photo (or its heatmap overlay) with the colormap legend under it."""
        pygame = self.pygame
        legend_h = self.px(22)
        # At most half the width, so the diagnosis panel keeps room for the class names.
        side = min(area.height - legend_h - self.px(4), area.width // 2)
        photo = pygame.Rect(area.left, area.top, side, side)
        showing = screen.show_heatmap and screen.overlay is not None
        image = screen.overlay if showing else screen.image
        surface.blit(self.image_surface(image, (side, side)), photo)
        small = self.font(11)
        legend_top = photo.bottom + self.px(4)
        if showing and screen.legend is not None:
            low = self.text_surface("low", small, MUTED)
            high = self.text_surface("high", small, MUTED)
            bar_left = photo.left + low.get_width() + self.px(4)
            bar_right = photo.right - high.get_width() - self.px(4)
            bar_h = self.px(8)
            bar_top = legend_top + (legend_h - bar_h) // 2
            colours = np.asarray(screen.legend, dtype=np.uint8).reshape(1, -1, 3)
            bar = self.image_surface(colours, (max(1, bar_right - bar_left), bar_h))
            surface.blit(bar, (bar_left, bar_top))
            mid = legend_top + legend_h // 2
            self.draw_text(surface, "low", small, MUTED, (photo.left, mid), "midleft")
            self.draw_text(surface, "high", small, MUTED, (photo.right, mid), "midright")
        else:
            if showing:
                label = "Heatmap"
            elif screen.overlay is not None:
                label = "Photo (heatmap off)"
            else:
                label = "No heatmap"
            self.draw_text(
                surface, label, small, MUTED, (photo.centerx, legend_top + legend_h // 2), "center"
            )
        return photo

    def _result_panel(self, surface: Any, screen: ResultScreen, panel: Any) -> None:
        """Risk banner, P(malignant) with the threshold, top-3, saved status.

        On a short panel (a 320x240 screen) the captions go and the class names
        keep to one line, so nothing runs off the bottom.
        """
        pygame = self.pygame
        gap = self.px(6)
        body = self.font(13)
        bold = self.font(13, True)
        small = self.font(11)
        pct_w = bold.size("100%")[0] + self.px(4)
        banner_font, banner_lines = self.fit_lines(
            screen.action, panel.width - 2 * gap, 16, 2, True
        )
        banner_h = self.line_step(banner_font) * len(banner_lines) + 2 * gap
        bar_h = self.px(6)

        def names_height(max_lines: int) -> int:
            total = 0
            for rank in screen.top3:
                font, lines = self.fit_lines(rank.name, panel.width - pct_w, 13, max_lines)
                total += self.line_step(font) * min(len(lines), max_lines) + self.px(3) + gap
            return total

        full = (
            banner_h + gap + self.line_step(body) + bar_h + self.px(3)
            + 2 * self.line_step(small) + gap + names_height(2) + self.line_step(small)
        )  # fmt: skip
        compact = full > panel.height
        name_lines = 1 if compact else 2

        banner = pygame.Rect(panel.left, panel.top, panel.width, banner_h)
        pygame.draw.rect(surface, background_of(screen.risk_tier), banner, border_radius=self.px(5))
        y = banner.top + gap
        for line in banner_lines:
            self.draw_text(
                surface, line, banner_font, foreground_of(screen.risk_tier), (banner.centerx, y),
                "midtop",
            )  # fmt: skip
            y += self.line_step(banner_font)
        y = banner.bottom + gap

        # P(malignant), with a bar and the referral threshold marked on it.
        self.draw_text(surface, "P(malignant)", body, MUTED, (panel.left, y))
        self.draw_text(
            surface, f"{screen.p_malignant:.0%}", bold, TEXT, (panel.right, y), "topright"
        )
        y += self.line_step(body)
        track = pygame.Rect(panel.left, y, panel.width, bar_h)
        pygame.draw.rect(surface, PANEL, track)
        fill = round(track.width * min(1.0, max(0.0, screen.p_malignant)))
        fill_colour = BAD if screen.p_malignant >= screen.referral_threshold else GOOD
        pygame.draw.rect(surface, fill_colour, (track.left, track.top, fill, bar_h))
        tick_x = track.left + round(track.width * screen.referral_threshold)
        pygame.draw.line(
            surface, TEXT, (tick_x, track.top - 1), (tick_x, track.bottom + self.px(3)), 2
        )
        y = track.bottom + self.px(3)
        if not compact:
            label = f"refer at ≥ {screen.referral_threshold:.0%}"
            half = small.size(label)[0] // 2
            x = min(max(tick_x, panel.left + half), panel.right - half)
            self.draw_text(surface, label, small, MUTED, (x, y), "midtop")
            y += self.line_step(small) + gap
            # Top-3 with calibrated confidences.
            self.draw_text(surface, "Most likely", small, MUTED, (panel.left, y))
            y += self.line_step(small)
        else:
            y += gap
        for rank in screen.top3:
            pct = f"{rank.probability:.0%}"
            name_rect = pygame.Rect(panel.left, y, panel.width - pct_w, panel.bottom - y)
            self.draw_text(surface, pct, bold, TEXT, (panel.right, y), "topright")
            colour = TEXT if rank is screen.top3[0] else MUTED
            y = self.draw_block(surface, rank.name, name_rect, 13, colour, max_lines=name_lines)
            pygame.draw.rect(surface, PANEL, (panel.left, y + 1, panel.width, self.px(3)))
            pygame.draw.rect(
                surface,
                BAD if rank.malignant else MUTED,
                (panel.left, y + 1, round(panel.width * rank.probability), self.px(3)),
            )
            y += self.px(3) + gap
        if screen.unusual_light:
            note = self.font(11, True)
            fitting = [t for t in UNUSUAL_LIGHT_NOTES if note.size(t)[0] <= panel.width]
            if fitting and y + 2 * self.line_step(note) <= panel.bottom:
                self.draw_text(surface, fitting[0], note, WARN, (panel.left, y))
                y += self.line_step(note)
        if screen.saved:
            font = self.font(12, True)
            colour = GOOD if screen.is_saved else WARN
            lines = 2 if y + 2 * self.line_step(font) <= panel.bottom else 1
            if y + font.get_height() <= panel.bottom:
                rect = pygame.Rect(panel.left, y, panel.width, panel.bottom - y)
                self.draw_block(surface, screen.saved, rect, 12, colour, bold=True, max_lines=lines)

    def _result_body(self, surface: Any, screen: ResultScreen, content: Any = None) -> None:
        area = (content or self.content_rect()).inflate(-2 * self.px(6), -2 * self.px(5))
        photo = self._photo_with_legend(surface, screen, area)
        left = photo.right + self.px(10)
        panel = self.pygame.Rect(left, area.top, area.right - left, area.height)
        self._result_panel(surface, screen, panel)

    def _result(self, surface: Any, screen: ResultScreen) -> None:
        self.draw_header(surface, screen.title, screen.notice, colour=TEXT)
        self._result_body(surface, screen)

    def _history(self, surface: Any, screen: HistoryScreen) -> None:
        content = self.content_rect()
        if screen.unreadable_text:
            # Above the scans, so that it is read before them; the scans take the rest.
            band = self._top_band(surface, screen.unreadable_text, content)
            content = self.pygame.Rect(
                content.left, band.bottom, content.width, content.bottom - band.bottom
            )
        if screen.result is None:
            self.draw_header(surface, "Saved scans")
            area = content.inflate(-2 * self.px(12), -2 * self.px(12))
            text = "No saved scans yet"
            if screen.unreadable:
                text = "No saved scans can be shown"
            elif screen.scope.startswith("Patient"):
                text = "No saved scans for this patient yet"
            font, lines = self.fit_lines(text, area.width, 18, 3, True)
            top = area.centery - self.line_step(font) * len(lines) // 2
            self.draw_block(
                surface, text, self.pygame.Rect(area.left, top, area.width, area.bottom - top),
                18, MUTED, bold=True, align="center",
            )  # fmt: skip
            return
        # The date goes with the saved status, where it wraps rather than being cut.
        self.draw_header(surface, f"Saved scan {screen.index + 1}/{screen.total}", NOTICE)
        saved = " · ".join(x for x in (screen.created_at or "Saved", screen.subject) if x)
        if screen.earlier:
            saved += f" · {screen.earlier} earlier of this site"
        self._result_body(surface, replace(screen.result, saved=saved), content)

    def _top_band(self, surface: Any, text: str, area: Any) -> Any:
        """A warning band across the top of ``area``, at most two lines; returns its rect."""
        pygame = self.pygame
        pad = self.px(5)
        width = area.width - 2 * self.px(8)
        font, lines = self.fit_lines(text, width, 13, 2, True)
        band = pygame.Rect(
            area.left, area.top, area.width, self.line_step(font) * min(2, len(lines)) + 2 * pad
        )
        pygame.draw.rect(surface, WARN, band)
        inner = pygame.Rect(band.left + self.px(8), band.top + pad, width, band.height)
        self.draw_block(surface, text, inner, 13, (20, 20, 20), bold=True, max_lines=2)
        return band

    def _retake(self, surface: Any, screen: RetakeScreen) -> None:
        pygame = self.pygame
        self.draw_header(surface, "Retake the photo", "No diagnosis for this photo")
        area = self.content_rect().inflate(-2 * self.px(6), -2 * self.px(6))
        left = area.left
        if screen.frame is not None:
            thumb_area = pygame.Rect(area.left, area.top, area.width * 2 // 5, area.height)
            rect = self.fit_image(screen.frame, thumb_area)
            rect.top = thumb_area.top
            surface.blit(self.image_surface(screen.frame, rect.size), rect)
            pygame.draw.rect(surface, WARN, rect, width=max(2, self.px(2)))
            left = thumb_area.right + self.px(10)
        text = pygame.Rect(left, area.top, area.right - left, area.height)
        y = self.draw_block(surface, "Retake", text, 22, WARN, bold=True, max_lines=1)
        y += self.px(4)
        for reason in screen.reasons:
            sentence = reason[:1].upper() + reason[1:]
            y = self.draw_block(
                surface,
                "• " + sentence,
                pygame.Rect(text.left, y, text.width, text.bottom - y),
                15,
                TEXT,
                max_lines=3,
            )
            y += self.px(4)
        self.draw_block(
            surface,
            "The photo did not pass the quality check, so it was not analysed.",
            pygame.Rect(text.left, y + self.px(6), text.width, text.bottom - y),
            12,
            MUTED,
            max_lines=3,
        )

    @staticmethod
    def wrap_path(path: str, font: Any, width: int) -> list[str]:
        """Break a file path after "/" so that every line fits ``width``; nothing is cut.

        A single name too long for a line is broken between characters. The lines
        joined give ``path`` back exactly.
        """
        lines: list[str] = []
        line = ""
        for part in re.findall(r"[^/]*/|[^/]+$", path):
            if font.size(line + part)[0] <= width:
                line += part
                continue
            if line:
                lines.append(line)
            while len(part) > 1 and font.size(part)[0] > width:
                cut = len(part) - 1
                while cut > 1 and font.size(part[:cut])[0] > width:
                    cut -= 1
                lines.append(part[:cut])
                part = part[cut:]
            line = part
        if line:
            lines.append(line)
        return lines

    def clip_lines(self, lines: list[str], max_lines: int, font: Any, width: int) -> list[str]:
        """At most ``max_lines`` lines; the last one ends in "…" when text was left out."""
        if len(lines) <= max_lines:
            return lines
        tail = self.ellipsize(" ".join(lines[max_lines - 1 :]), font, width)
        return [*lines[: max_lines - 1], tail]

    def _error_blocks(self, screen: ErrorScreen, width: int, scale: float) -> list[tuple]:
        """The error screen's blocks at ``scale``, in order: (kind, font, lines, colour)."""
        blocks: list[tuple] = []

        def add(kind: str, text: str, size: float, colour, bold: bool, max_lines: int) -> None:
            font, lines = self.fit_lines(text, width, size * scale, max_lines, bold)
            if kind != "detail":  # the detail is cut to the room left when drawn
                lines = self.clip_lines(lines, max_lines, font, width)
            blocks.append((kind, font, lines, colour))

        add("title", screen.title, 20, BAD, True, 2)
        add("action", screen.action, 15, TEXT, False, 6)
        for step in screen.steps:
            add("step", step, 13, TEXT, False, 3)
        if screen.path:
            if screen.path_label:
                add("label", screen.path_label, 12, MUTED, False, 2)
            font = self.font(13 * scale, True)
            blocks.append(("path", font, self.wrap_path(screen.path, font, width), TEXT))
        if screen.detail:
            add("detail", screen.detail, 12, MUTED, False, 4)
        return blocks

    def _error(self, surface: Any, screen: ErrorScreen) -> None:
        """What went wrong and what to do. Steps and a path are shown whole: when room is
        short the text gets smaller, and the technical detail gives way first."""
        pygame = self.pygame
        heading = "Notice" if screen.problem == "notice" else "Problem"
        self.draw_header(surface, heading, "Retrying automatically…" if screen.retrying else "")
        area = self.content_rect().inflate(-2 * self.px(12), -2 * self.px(8))
        stripe = pygame.Rect(area.left, area.top, self.px(6), area.height)
        pygame.draw.rect(surface, WARN if screen.problem == "notice" else BAD, stripe)
        text = pygame.Rect(stripe.right + self.px(10), area.top, 0, 0)
        text.width = area.right - text.left
        text.height = area.height
        gaps = {"title": 6, "action": 6, "step": 3, "label": 1, "path": 6, "detail": 0}

        def needed(blocks: list[tuple]) -> int:
            kept = [b for b in blocks if b[0] != "detail"]
            return sum(self.line_step(font) * len(lines) + self.px(gaps[kind])
                       for kind, font, lines, _ in kept)  # fmt: skip

        for scale in (1.0, 0.85, 0.7, 0.55):
            blocks = self._error_blocks(screen, text.width, scale)
            if needed(blocks) <= text.height:
                break
        y = text.top
        for kind, font, lines, colour in blocks:
            step = self.line_step(font)
            if kind == "detail":
                room = (text.bottom - y) // step
                if room < 1:
                    break
                lines = self.clip_lines(lines, min(4, room), font, text.width)
            for line in lines:
                self.draw_text(surface, line, font, colour, (text.left, y))
                y += step
            y += self.px(gaps[kind])

    def _shutdown(self, surface: Any, screen: ShutdownScreen) -> None:
        area = self.content_rect().inflate(-2 * self.px(16), -2 * self.px(16))
        if screen.confirmed:
            self.draw_header(surface, "Shutting down")
            title = "Powering off…" if screen.poweroff else "Closing SkinScan…"
            detail = (
                "Wait until the screen goes dark before unplugging. Saved scans are kept."
                if screen.poweroff
                else "Saved scans are kept."
            )
        else:
            self.draw_header(surface, "Power")
            title = "Power off?" if screen.poweroff else "Quit SkinScan?"
            detail = "Saved scans are kept. Unsaved results are lost."
        y = self.draw_block(surface, title, area, 24, TEXT, bold=True, align="center")
        rect = self.pygame.Rect(area.left, y + self.px(10), area.width, area.bottom - y)
        self.draw_block(surface, detail, rect, 14, MUTED, max_lines=3, align="center")

    def _card(self, surface: Any, screen: CardScreen) -> None:
        """The live view beside what to do; the reason in red when a card was refused."""
        pygame = self.pygame
        self.draw_header(surface, "Scan patient card")
        area = self.content_rect().inflate(-2 * self.px(6), -2 * self.px(5))
        left = area.left
        if screen.frame is not None:
            view_area = pygame.Rect(area.left, area.top, area.width // 2, area.height)
            rect = self.fit_image(screen.frame, view_area)
            rect.top = view_area.top
            surface.blit(self.image_surface(screen.frame, rect.size), rect)
            pygame.draw.rect(surface, BOX, rect, width=max(2, self.px(2)))
            left = view_area.right + self.px(10)
        text = pygame.Rect(left, area.top, area.right - left, area.height)
        y = text.top
        if screen.problem:
            y = self.draw_block(surface, "Card not read", text, 18, BAD, bold=True, max_lines=1)
            y += self.px(4)
            y = self.draw_block(
                surface, screen.problem, pygame.Rect(text.left, y, text.width, text.bottom - y),
                13, TEXT, max_lines=5,
            )  # fmt: skip
        else:
            y = self.draw_block(
                surface, "Hold the patient's card under the lens, the whole QR code in view.",
                text, 15, TEXT, max_lines=4,
            )  # fmt: skip
        y += self.px(8)
        note = "The card holds a reference, never a name."
        if screen.current:
            note = f"Now: {screen.current}. Next patient clears it."
        self.draw_block(
            surface, note, pygame.Rect(text.left, y, text.width, text.bottom - y), 12, MUTED,
            max_lines=3,
        )  # fmt: skip

    def _site(self, surface: Any, screen: SiteScreen) -> None:
        """The body sites in a grid; the highlighted one boxed, the chosen one ticked."""
        pygame = self.pygame
        self.draw_header(surface, "Body site")
        area = self.content_rect().inflate(-2 * self.px(8), -2 * self.px(6))
        columns = 3 if area.width >= self.px(300) else 2
        rows = -(-len(screen.sites) // columns)
        cell_w = area.width // columns
        cell_h = area.height // rows
        font, _ = self.fit_lines("upper arm ✓", cell_w - 2 * self.px(6), 14, 1, True)
        for i, site in enumerate(screen.sites):
            column, row = i // rows, i % rows
            cell = pygame.Rect(
                area.left + column * cell_w, area.top + row * cell_h, cell_w, cell_h
            ).inflate(-self.px(4), -self.px(3))
            chosen = site == screen.current
            if i == screen.index:
                pygame.draw.rect(surface, BOX, cell, border_radius=self.px(4))
                colour = BG
            else:
                pygame.draw.rect(surface, PANEL, cell, border_radius=self.px(4))
                colour = GOOD if chosen else TEXT
            label = self.ellipsize(site + (" ✓" if chosen else ""), font, cell.width - self.px(8))
            self.draw_text(surface, label, font, colour, cell.center, "center")

    def _compare_side(
        self, surface: Any, side: CompareSide, show_heatmap: bool, area: Any, heading: str
    ) -> None:
        pygame = self.pygame
        small = self.font(11)
        step = self.line_step(small)
        y = area.top
        heading = f"{heading}: {side.when}"
        for shorter in (side.when, side.when.split(" ")[0]):
            if small.size(heading)[0] <= area.width:
                break
            heading = shorter  # a narrow screen: the date and time, then the date alone
        self.draw_text(surface, heading, small, MUTED, (area.centerx, y), "midtop")
        y += step
        banner_font, _ = self.fit_lines(
            tier_action(side.risk_tier, side.unfamiliar), area.width, 12, 1, True
        )
        action = self.ellipsize(
            tier_action(side.risk_tier, side.unfamiliar), banner_font, area.width - self.px(6)
        )
        banner_h = self.line_step(banner_font) + self.px(4)
        below = banner_h + step + self.px(4)
        photo_side = max(1, min(area.width, area.bottom - y - below))
        photo = pygame.Rect(area.centerx - photo_side // 2, y, photo_side, photo_side)
        image = side.overlay if show_heatmap and side.overlay is not None else side.image
        surface.blit(self.image_surface(image, photo.size), photo)
        y = photo.bottom + self.px(4)
        banner = pygame.Rect(area.left, y, area.width, banner_h)
        pygame.draw.rect(surface, background_of(side.risk_tier), banner, border_radius=self.px(4))
        self.draw_text(
            surface, action, banner_font, foreground_of(side.risk_tier), banner.center, "center"
        )
        y = banner.bottom
        line = self.ellipsize(
            f"P(malignant) {side.p_malignant:.0%} · {side.label}", small, area.width
        )
        self.draw_text(surface, line, small, TEXT, (area.centerx, y), "midtop")

    def _compare(self, surface: Any, screen: CompareScreen) -> None:
        """Two scans of one site side by side, older on the left, and what changed."""
        pygame = self.pygame
        title = f"Follow-up: {screen.site}" if screen.site else "Follow-up"
        if screen.position:
            title += f" ({screen.position})"
        self.draw_header(surface, title, NOTICE)
        area = self.content_rect().inflate(-2 * self.px(6), -2 * self.px(4))
        change_font, _ = self.fit_lines(screen.change, area.width, 13, 1, True)
        change_h = self.line_step(change_font) + self.px(4)
        gap = self.px(10)
        half = (area.width - gap) // 2
        body_h = area.height - change_h
        left = pygame.Rect(area.left, area.top, half, body_h)
        right = pygame.Rect(area.left + half + gap, area.top, half, body_h)
        self._compare_side(surface, screen.earlier, screen.show_heatmap, left, "Earlier")
        self._compare_side(surface, screen.later, screen.show_heatmap, right, "Later")
        change = self.ellipsize(screen.change, change_font, area.width)
        self.draw_text(
            surface, change, change_font, TEXT, (area.centerx, area.bottom - change_h + self.px(2)),
            "midtop",
        )  # fmt: skip

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
