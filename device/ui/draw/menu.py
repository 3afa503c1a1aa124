"""The menu, a USB task under way, and what it did."""

from __future__ import annotations

import contextlib
from typing import Any

from device.ui.draw.header_footer import HeaderFooter
from device.ui.draw.theme import BAD, BG, BOX, GOOD, MUTED, PANEL, TEXT, WARN
from device.ui.screens import MenuScreen, UsbBusyScreen, UsbResultScreen

# Gaps after each kind of block on the result screen (base pixels).
_GAPS = {"title": 6, "line": 3, "label": 1, "file": 2, "next": 6, "remove": 0}


class MenuScreens(HeaderFooter):
    """Draws the menu and the USB task screens."""

    def _inside(self, rect: Any) -> Any:
        """Text drawn in the block belongs in ``rect`` (for the text-fits checks)."""
        within = getattr(self, "within", None)
        return within(rect) if within is not None else contextlib.nullcontext()

    def _menu(self, surface: Any, screen: MenuScreen) -> None:
        """The USB line, the entries (the highlighted one boxed), and what it does."""
        pygame = self.pygame
        self.draw_header(surface, "Menu")
        area = self.content_rect().inflate(-2 * self.px(10), -2 * self.px(6))
        stick = pygame.Rect(area.left, area.top, area.width, area.height // 4)
        colour = GOOD if screen.stick_found else WARN
        y = self.draw_block(surface, screen.stick, stick, 13, colour, bold=True, max_lines=2)
        help_font, help_lines = self.fit_lines(screen.help, area.width, 12, 2)
        help_h = self.line_step(help_font) * min(2, len(help_lines))
        top = y + self.px(4)
        room = area.bottom - help_h - self.px(6) - top
        row_h = min(self.px(40), room // max(1, len(screen.items)))
        for i, label in enumerate(screen.items):
            cell = pygame.Rect(area.left, top + i * row_h, area.width, row_h)
            cell = cell.inflate(0, -self.px(4))
            chosen = i == screen.index
            pygame.draw.rect(surface, BOX if chosen else PANEL, cell, border_radius=self.px(4))
            font, _ = self.fit_lines(label, cell.width - 2 * self.px(10), 15, 1, True)
            step = self.line_step(font)
            text = pygame.Rect(cell.left + self.px(10), cell.centery - step // 2,
                               cell.width - 2 * self.px(10), step)  # fmt: skip
            self.draw_block(
                surface, label, text, 15, BG if chosen else TEXT, bold=True, max_lines=1
            )
        # What the entry does, right under the list (not at the foot of a tall screen).
        below_top = top + row_h * len(screen.items) + self.px(4)
        below = pygame.Rect(area.left, below_top, area.width, area.bottom - below_top)
        self.draw_block(surface, screen.help, below, 12, MUTED, max_lines=2)

    def _usb_busy(self, surface: Any, screen: UsbBusyScreen) -> None:
        """What is under way, a progress bar when the total is known, and the warning."""
        pygame = self.pygame
        self.draw_header(surface, screen.title)
        area = self.content_rect().inflate(-2 * self.px(16), -2 * self.px(12))
        y = area.top + area.height // 6
        y = self.draw_block(
            surface, screen.text, pygame.Rect(area.left, y, area.width, area.bottom - y),
            16, TEXT, max_lines=3, align="center",
        )  # fmt: skip
        y += self.px(10)
        if screen.total > 0:
            bar = pygame.Rect(area.left, y, area.width, self.px(12))
            pygame.draw.rect(surface, PANEL, bar, border_radius=self.px(3))
            share = min(1.0, max(0.0, screen.done / screen.total))
            filled = pygame.Rect(bar.left, bar.top, round(bar.width * share), bar.height)
            if filled.width:
                pygame.draw.rect(surface, BOX, filled, border_radius=self.px(3))
            y = bar.bottom + self.px(4)
            y = self.draw_block(
                surface, f"{screen.done} of {screen.total}",
                pygame.Rect(area.left, y, area.width, area.bottom - y), 12, MUTED,
                max_lines=1, align="center",
            )  # fmt: skip
            y += self.px(10)
        self.draw_block(
            surface, screen.note, pygame.Rect(area.left, y, area.width, area.bottom - y),
            15, WARN, bold=True, max_lines=2, align="center",
        )  # fmt: skip

    def _usb_blocks(self, screen: UsbResultScreen, width: int, scale: float) -> list[tuple]:
        """The result's blocks at ``scale``, in order: (kind, font, lines, colour)."""
        blocks: list[tuple] = []

        def add(kind: str, text: str, size: float, colour, bold: bool, max_lines: int) -> None:
            font, lines = self.fit_lines(text, width, size * scale, max_lines, bold)
            blocks.append((kind, font, self.clip_lines(lines, max_lines, font, width), colour))

        add("title", screen.title, 20, GOOD if screen.ok else BAD, True, 2)
        for line in screen.lines:
            add("line", line, 13, TEXT, False, 3)
        if screen.files:
            add("label", "On the stick:", 12, MUTED, False, 1)
            font = self.font(13 * scale, True)
            for name in screen.files:
                blocks.append(("file", font, self.wrap_path(name, font, width), TEXT))
        if screen.next_step:
            add("next", f"Next: {screen.next_step}", 14, TEXT, True, 3)
        if screen.removable:
            add("remove", "You may remove the stick.", 15, GOOD, True, 1)
        return blocks

    def _usb_done(self, surface: Any, screen: UsbResultScreen) -> None:
        """What the task did, the files on the stick (whole), what next, and whether the
        stick may be removed. When room is short the text gets smaller."""
        pygame = self.pygame
        self.draw_header(surface, screen.heading)
        area = self.content_rect().inflate(-2 * self.px(12), -2 * self.px(8))
        stripe = pygame.Rect(area.left, area.top, self.px(6), area.height)
        text = pygame.Rect(stripe.right + self.px(10), area.top, 0, area.height)
        text.width = area.right - text.left

        def needed(blocks: list[tuple]) -> int:
            return sum(self.line_step(font) * len(lines) + self.px(_GAPS[kind])
                       for kind, font, lines, _ in blocks)  # fmt: skip

        for scale in (1.0, 0.85, 0.7, 0.6):
            blocks = self._usb_blocks(screen, text.width, scale)
            if needed(blocks) <= text.height:
                break
        # Whatever happens, the last two blocks (what next, may it be removed) are drawn:
        # the facts above give way first.
        tail = [b for b in blocks if b[0] in ("next", "remove")]
        reserved = needed(tail)
        y = text.top
        with self._inside(text):
            for kind, font, lines, colour in blocks:
                step = self.line_step(font)
                if kind not in ("next", "remove"):
                    room = (text.bottom - reserved - y) // step
                    if room < 1:
                        continue
                    if kind == "file":  # a file name is never cut: it wraps, whole
                        lines = lines[:room]
                    else:  # what does not fit ends in "…" (and the text checks see it)
                        lines = self.clip_lines(lines, room, font, text.width)
                for line in lines:
                    self.draw_text(surface, line, font, colour, (text.left, y))
                    y += step
                y += self.px(_GAPS[kind])
        # The stripe as tall as what it marks.
        stripe.height = min(area.height, max(self.px(24), y - area.top))
        pygame.draw.rect(surface, GOOD if screen.ok else BAD, stripe)
