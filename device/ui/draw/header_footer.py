"""The frame around every screen: the title bar, the patient line, the footer of hints."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from device.ui.draw.canvas import Canvas
from device.ui.draw.theme import BG, MIN_FONT_PX, MUTED, PANEL, PATIENT_BG, TEXT
from device.ui.screens import Hint


class HeaderFooter(Canvas):
    """The title bar, the patient line under it and the footer of hint chips."""

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

    def draw_header(
        self,
        surface: Any,
        title: str,
        right: str = "",
        colour=TEXT,
        right_reserve: int = 0,
        right_colour=MUTED,
    ) -> None:
        """The title bar, with optional text on the right.

        The right-hand text (the "not a diagnosis" notice) is never cut: the
        title gives way first, shrinking and then ending in "…". ``right_reserve``
        pixels at the right edge are left free (for the battery gauge).
        """
        pygame = self.pygame
        height = self.title_height()
        pygame.draw.rect(surface, PANEL, (0, 0, self.size[0], height))
        pad = self.px(8)
        right_w = right_reserve
        if right:
            font, _ = self.fit_lines(right, self.size[0] // 2, 12, 1)
            right_w += font.size(right)[0]
            self.draw_text(
                surface,
                right,
                font,
                right_colour,
                (self.size[0] - pad - right_reserve, height // 2),
                "midright",
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
