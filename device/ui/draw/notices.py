"""Problems and notices (what went wrong and what to do), and the power screens."""

from __future__ import annotations

from typing import Any

from device.ui.draw.header_footer import HeaderFooter
from device.ui.draw.theme import BAD, MUTED, TEXT, WARN
from device.ui.screens import ErrorScreen, ShutdownScreen


class NoticeScreens(HeaderFooter):
    """Draws the error and notice screens and the shutdown screens."""

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
        if screen.reason == "battery":
            self.draw_header(surface, "Battery empty", colour=BAD)
            title = "Shutting down"
            detail = (
                "The battery is almost empty. Saved scans are kept. "
                "Charge the battery, then switch the scanner on again."
            )
        elif screen.confirmed:
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
        self.draw_block(surface, detail, rect, 14, MUTED, max_lines=4, align="center")
