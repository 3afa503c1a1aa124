"""Saved scans: the history screen and the follow-up comparison of one site."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from device.ui.draw.result import ResultScreens
from device.ui.draw.theme import MUTED, TEXT, WARN, background_of, foreground_of
from device.ui.screens import NOTICE, CompareScreen, CompareSide, HistoryScreen, tier_action


class HistoryScreens(ResultScreens):
    """Draws the history of saved scans and the side-by-side comparison."""

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
