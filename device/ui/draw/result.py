"""The result screen: the photo or heatmap with its legend, and the risk panel."""

from __future__ import annotations

from typing import Any

import numpy as np

from device.result_text import (
    CLOSEST_CLASS_CAPTION,
    closest_class_line,
    percent,
    referral_figures,
)
from device.ui.draw.header_footer import HeaderFooter
from device.ui.draw.theme import (
    BAD,
    GOOD,
    MUTED,
    PANEL,
    TEXT,
    WARN,
    background_of,
    foreground_of,
)
from device.ui.screens import UNUSUAL_LIGHT_NOTES, ResultScreen


class ResultScreens(HeaderFooter):
    """Draws a result (also the body of a saved scan in history)."""

    def _photo_with_legend(self, surface: Any, screen: ResultScreen, area: Any) -> Any:
        """The analysed photo (or its heatmap overlay) with the colormap legend under it."""
        pygame = self.pygame
        legend_h = self.px(22)
        # Landscape: at most half the width, so the diagnosis panel beside it keeps room for
        # the class names. Portrait: the whole width, centred (the panel goes below).
        side = min(
            area.height - legend_h - self.px(4), area.width if self.portrait else area.width // 2
        )
        left = area.centerx - side // 2 if self.portrait else area.left
        photo = pygame.Rect(left, area.top, side, side)
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

        # P(malignant), with a bar and the referral threshold marked on it. The figures
        # come from the referral rule itself, so they never contradict the banner.
        figures = referral_figures(screen.p_malignant, screen.referral_threshold)
        uncertain = screen.risk_tier == "uncertain"
        self.draw_text(surface, "P(malignant)", body, MUTED, (panel.left, y))
        self.draw_text(surface, figures.p_text, bold, TEXT, (panel.right, y), "topright")
        y += self.line_step(body)
        track = pygame.Rect(panel.left, y, panel.width, bar_h)
        pygame.draw.rect(surface, PANEL, track)
        fill = round(track.width * min(1.0, max(0.0, screen.p_malignant)))
        fill_colour = BAD if figures.above else GOOD
        pygame.draw.rect(surface, fill_colour, (track.left, track.top, fill, bar_h))
        tick_x = track.left + round(track.width * screen.referral_threshold)
        pygame.draw.line(
            surface, TEXT, (tick_x, track.top - 1), (tick_x, track.bottom + self.px(3)), 2
        )
        y = track.bottom + self.px(3)
        if not compact:
            label = figures.threshold_label
            half = small.size(label)[0] // 2
            x = min(max(tick_x, panel.left + half), panel.right - half)
            self.draw_text(surface, label, small, MUTED, (x, y), "midtop")
            y += self.line_step(small) + gap
            # Top-3 with calibrated confidences; an Uncertain result does not lead with
            # a confident class: it names the closest one, muted, with no percentage.
            caption = CLOSEST_CLASS_CAPTION if uncertain else "Most likely"
            self.draw_text(surface, caption, small, MUTED, (panel.left, y))
            y += self.line_step(small)
        else:
            y += gap
        if uncertain and screen.top3:
            name = screen.top3[0].name
            rect = pygame.Rect(panel.left, y, panel.width, panel.bottom - y)
            text = closest_class_line(name) if compact else name
            y = self.draw_block(surface, text, rect, 12, MUTED, max_lines=name_lines) + gap
        for rank in () if uncertain else screen.top3:
            pct = percent(rank.probability)
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
                y = self.draw_block(
                    surface, screen.saved, rect, 12, colour, bold=True, max_lines=lines
                )
        if screen.bundle:
            self._bundle_line(surface, screen.bundle, panel, y)

    def _bundle_line(self, surface: Any, text: str, panel: Any, y: int) -> None:
        """Which bundle made the scan, at the foot of the panel (where it has the room)."""
        font, lines = self.fit_lines(text, panel.width, 10, 3)
        lines = self.clip_lines(lines, 3, font, panel.width)
        top = panel.bottom - self.line_step(font) * len(lines)
        if top < y:
            return
        for line in lines:
            self.draw_text(surface, line, font, MUTED, (panel.left, top))
            top += self.line_step(font)

    def _result_body(self, surface: Any, screen: ResultScreen, content: Any = None) -> None:
        area = (content or self.content_rect()).inflate(-2 * self.px(6), -2 * self.px(5))
        if self.portrait:
            # The photo on top (a little over half the height), the panel below it.
            photo_area = self.pygame.Rect(area.left, area.top, area.width, area.height * 11 // 20)
            photo = self._photo_with_legend(surface, screen, photo_area)
            top = photo.bottom + self.px(22) + self.px(10)
            panel = self.pygame.Rect(area.left, top, area.width, area.bottom - top)
        else:
            photo = self._photo_with_legend(surface, screen, area)
            left = photo.right + self.px(10)
            panel = self.pygame.Rect(left, area.top, area.right - left, area.height)
        self._result_panel(surface, screen, panel)

    def _result(self, surface: Any, screen: ResultScreen) -> None:
        self.draw_header(surface, screen.title, screen.notice, colour=TEXT)
        self._result_body(surface, screen)
