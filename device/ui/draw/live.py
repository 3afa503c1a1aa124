"""The live view, the "Analysing" screen and the retake screen."""

from __future__ import annotations

from typing import Any

from device.ui.draw.status import StatusBar
from device.ui.draw.theme import BAD, BOX, GOOD, MUTED, PANEL, TEXT, WARN
from device.ui.screens import AnalyzingScreen, PreviewScreen, RetakeScreen


class LiveScreens(StatusBar):
    """Draws the screens around the camera: live view, analysing, retake."""

    def _preview(self, surface: Any, screen: PreviewScreen) -> None:
        """The camera frame with the lesion box, the quality light and its reason, and any
        warnings. Landscape: all over the frame. Portrait: the frame on top, the light and
        the warnings below it."""
        pygame = self.pygame
        fps = f"{screen.fps:.0f} fps" if screen.fps > 0 else "– fps"
        extras = ((f"{fps} · {screen.source}",) if screen.source else ()) + (fps,)
        self.draw_status_header(surface, screen.message or "Live view", screen.status, extras)
        area = self.content_rect()
        if self.portrait:
            frame_area = pygame.Rect(area.left, area.top, area.width, area.height * 3 // 5)
            rect = self.fit_image(screen.frame, frame_area)
            rect.top = area.top
        else:
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
        alerts = "\n".join(
            [
                *(screen.status.alerts if screen.status else ()),
                *([screen.warning] if screen.warning else []),
            ]
        )
        if self.portrait:
            strip = pygame.Rect(area.left, rect.bottom, area.width, self.px(30))
            self._quality_strip(surface, screen, strip, opaque=True)
            if alerts:
                below = pygame.Rect(area.left, strip.bottom + self.px(6), area.width, 0)
                below.height = area.bottom - below.top
                self._warning_band(surface, alerts, below)
            return
        strip = pygame.Rect(rect.left, rect.bottom - self.px(26), rect.width, self.px(26))
        self._quality_strip(surface, screen, strip, opaque=False)
        if alerts:
            self._warning_band(surface, alerts, rect)

    def _warning_band(self, surface: Any, text: str, rect: Any) -> None:
        """Notices across the top of ``rect`` (one paragraph each), at most four lines."""
        pygame = self.pygame
        pad = self.px(6)
        text = "\n".join(p[:1].upper() + p[1:] for p in text.split("\n"))
        width = rect.width - 2 * pad
        font, lines = self.fit_lines(text, width, 13, 4, True)
        band_h = self.line_step(font) * min(4, len(lines)) + 2 * pad
        pygame.draw.rect(surface, WARN, (rect.left, rect.top, rect.width, band_h))
        inner = pygame.Rect(rect.left + pad, rect.top + pad, width, band_h - 2 * pad)
        self.draw_block(surface, text, inner, 13, (20, 20, 20), bold=True, max_lines=4)

    def _quality_strip(self, surface: Any, screen: PreviewScreen, strip: Any, opaque: bool) -> None:
        """The quality light (green or red) and what to fix, across ``strip``."""
        pygame = self.pygame
        if opaque:
            pygame.draw.rect(surface, PANEL, strip)
        else:
            shade = pygame.Surface(strip.size, pygame.SRCALPHA)
            shade.fill((0, 0, 0, 170))
            surface.blit(shade, strip.topleft)
        colour = GOOD if screen.quality_ok else BAD
        radius = self.px(8)
        centre = (strip.left + self.px(6) + radius, strip.centery)
        pygame.draw.circle(surface, colour, centre, radius)
        pygame.draw.circle(surface, TEXT, centre, radius, width=1)
        reason = screen.reason or "not ready"
        label = "Ready to scan" if screen.quality_ok else reason[:1].upper() + reason[1:]
        text_left = centre[0] + radius + self.px(6)
        font, line = self.fit_one_line(label, strip.right - text_left - self.px(4), 14, True)
        with self.within(strip):
            self.draw_text(surface, line, font, TEXT, (text_left, centre[1]), "midleft")

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
        text = area
        if screen.frame is not None:
            thumb_area, text = self.image_and_text(area, 0.4)
            rect = self.fit_image(screen.frame, thumb_area)
            rect.top = thumb_area.top
            surface.blit(self.image_surface(screen.frame, rect.size), rect)
            pygame.draw.rect(surface, WARN, rect, width=max(2, self.px(2)))
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
