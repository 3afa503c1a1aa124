"""The live view, the "Analysing" screen and the retake screen."""

from __future__ import annotations

from typing import Any

from device.ui.draw.header_footer import HeaderFooter
from device.ui.draw.theme import BAD, BOX, GOOD, MUTED, TEXT, WARN
from device.ui.screens import AnalyzingScreen, PreviewScreen, RetakeScreen


class LiveScreens(HeaderFooter):
    """Draws the screens around the camera: live view, analysing, retake."""

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
