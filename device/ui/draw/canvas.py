"""Layout primitives: scaled lengths, fonts, wrapped and fitted text, images.

Every length is a multiple of a unit ``u``: ``min(width / 480, height / 320)`` on a
landscape screen and ``min(width / 320, height / 480)`` on a portrait one, so the
3.5" 480x320 LCD, the 800x480 panel and the 7" 720x1280 panel show the same
layout at different scales (portrait screens stack what landscape ones put side
by side). Text that does not fit is wrapped, then shrunk down to a legible
minimum, and only then, deliberately, shortened with "…"; never clipped in the
middle of a word.

For tests, :attr:`Canvas.text_log` records every line drawn with the box it had to
stay in, and :attr:`Canvas.cut_log` every text that had to be shortened.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from device.hw.display import import_pygame
from device.ui.draw.theme import BASE_SIZE, MIN_FONT_PX, PORTRAIT_BASE_SIZE, find_font


@dataclass(frozen=True)
class DrawnText:
    """One line of text as drawn: where it went, the box it had to stay in, its size."""

    text: str
    rect: Any
    box: Any
    font_px: int


class Canvas:
    """Text and image primitives on one surface size (it caches fonts, text and images).

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
        self.portrait = self.size[1] > self.size[0]
        base = PORTRAIT_BASE_SIZE if self.portrait else BASE_SIZE
        self.u = min(self.size[0] / base[0], self.size[1] / base[1])
        # Off unless a test or tool sets them to lists (see the module docstring).
        self.text_log: list[DrawnText] | None = None
        self.cut_log: list[tuple[str, str]] | None = None
        self._box: Any = None
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
        """Draw one line of text; returns its rect.

        The line must stay inside the box set by :meth:`within` (the whole screen
        when none is set); :attr:`text_log` records both when it is on.
        """
        rendered = self.text_surface(text, font, colour)
        rect = rendered.get_rect(**{anchor: pos})
        surface.blit(rendered, rect)
        if self.text_log is not None:
            box = self._box if self._box is not None else self.pygame.Rect(0, 0, *self.size)
            self.text_log.append(DrawnText(text, rect.copy(), box.copy(), font.get_height()))
        return rect

    @contextmanager
    def within(self, box: Any) -> Iterator[None]:
        """Text drawn inside the ``with`` block belongs in ``box`` (a pygame Rect)."""
        outer, self._box = self._box, self.pygame.Rect(box)
        try:
            yield
        finally:
            self._box = outer

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

    def ellipsize(self, text: str, font: Any, width: int) -> str:
        """``text`` cut at a word boundary with "…" so that it fits ``width``.

        The last resort: callers first wrap, shrink or choose a shorter wording
        (:meth:`fit_one_line`). Every cut is recorded in :attr:`cut_log` when it is on.
        """
        if font.size(text)[0] <= width:
            return text
        words = text.split()
        while words and font.size(" ".join(words) + "…")[0] > width:
            words.pop()
        shown = (" ".join(words) + "…") if words else "…"
        if self.cut_log is not None:
            self.cut_log.append((text, shown))
        return shown

    def fit_one_line(
        self, wordings: str | tuple[str, ...], width: int, size: float, bold: bool = False
    ) -> tuple[Any, str]:
        """A font and one line for the box: the first wording (longest first) that fits at a
        size between ``size`` and the legible minimum; the last one cut with "…" if none does.
        """
        options = (wordings,) if isinstance(wordings, str) else tuple(wordings)
        for text in options:
            font, lines = self.fit_lines(text, width, size, 1, bold)
            if len(lines) == 1 and font.size(lines[0])[0] <= width:
                return font, lines[0]
        font = self.font(0, bold)
        return font, self.ellipsize(options[-1], font, width)

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
        with self.within(rect):
            for line in lines:
                if align == "center":
                    self.draw_text(surface, line, font, colour, (rect.centerx, y), "midtop")
                else:
                    self.draw_text(surface, line, font, colour, (rect.left, y))
                y += step
        return y

    def block_height(self, text: str, width: int, size: float, max_lines: int, bold=False) -> int:
        """How tall :meth:`draw_block` draws ``text`` in a box ``width`` wide."""
        font, lines = self.fit_lines(text, width, size, max_lines, bold)
        return self.line_step(font) * min(len(lines), max_lines)

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

    def image_and_text(self, area: Any, image_share: float) -> tuple[Any, Any]:
        """Split ``area`` into a room for an image and one for text beside it.

        Landscape: the image on the left, ``image_share`` of the width. Portrait: the
        image on top, the whole width and at most ``image_share`` of the height (the
        text below gets the rest). The rooms are separated by a gap.
        """
        gap = self.px(10)
        if self.portrait:
            height = min(area.width, round(area.height * image_share))
            image = self.pygame.Rect(area.left, area.top, area.width, height)
            top = image.bottom + gap
            return image, self.pygame.Rect(area.left, top, area.width, area.bottom - top)
        image = self.pygame.Rect(area.left, area.top, round(area.width * image_share), area.height)
        left = image.right + gap
        return image, self.pygame.Rect(left, area.top, area.right - left, area.height)

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
