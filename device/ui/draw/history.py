"""Saved scans: the history screen and the follow-up comparison of one site."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from device.result_text import referral_figures
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
            saved += f" · {screen.earlier} earlier of this lesion"
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
        """One scan: the date, the photo as large as the room allows, the tier, P and name.

        The class name wraps (up to three lines) rather than being cut; the photo
        gives up the room it needs.
        """
        pygame = self.pygame
        width = area.width
        when = side.when
        small, heading = self.fit_one_line(
            (f"{heading}: {when}", when, when.split(" ")[0]), width, 11
        )  # a narrow screen: the date and time, then the date alone
        step = self.line_step(small)
        y = area.top
        with self.within(area):
            self.draw_text(surface, heading, small, MUTED, (area.centerx, y), "midtop")
        y += step
        action = tier_action(side.risk_tier, side.unfamiliar)
        banner_font, action = self.fit_one_line(action, width - self.px(6), 12, True)
        banner_h = self.line_step(banner_font) + self.px(4)
        detail = f"P(malignant) {_p_text(side)} · {side.label}"
        detail_h = self.block_height(detail, width, 11, 3)
        below = self.px(4) + banner_h + detail_h
        photo_side = max(1, min(width, area.bottom - y - below))
        photo = pygame.Rect(area.centerx - photo_side // 2, y, photo_side, photo_side)
        image = side.overlay if show_heatmap and side.overlay is not None else side.image
        surface.blit(self.image_surface(image, photo.size), photo)
        y = photo.bottom + self.px(4)
        banner = pygame.Rect(area.left, y, width, banner_h)
        pygame.draw.rect(surface, background_of(side.risk_tier), banner, border_radius=self.px(4))
        with self.within(banner):
            self.draw_text(
                surface, action, banner_font, foreground_of(side.risk_tier), banner.center, "center"
            )
        y = banner.bottom
        rect = pygame.Rect(area.left, y, width, area.bottom - y)
        self.draw_block(surface, detail, rect, 11, TEXT, max_lines=3, align="center")

    def _compare(self, surface: Any, screen: CompareScreen) -> None:
        """Two scans of one site, older first (left, or on top on a portrait screen), and
        what changed."""
        pygame = self.pygame
        title = f"Follow-up: {screen.site}" if screen.site else "Follow-up"
        if screen.position:
            title += f" ({screen.position})"
        self.draw_header(surface, title, NOTICE)
        area = self.content_rect().inflate(-2 * self.px(6), -2 * self.px(4))
        change = "\n".join(x for x in (screen.change, screen.area) if x)
        change_h = self.block_height(change, area.width, 13, 3, True) + self.px(4)
        gap = self.px(10)
        body_h = area.height - change_h
        if self.portrait:
            half = (body_h - gap) // 2
            first = pygame.Rect(area.left, area.top, area.width, half)
            second = pygame.Rect(area.left, area.top + half + gap, area.width, half)
        else:
            half = (area.width - gap) // 2
            first = pygame.Rect(area.left, area.top, half, body_h)
            second = pygame.Rect(area.left + half + gap, area.top, half, body_h)
        self._compare_side(surface, screen.earlier, screen.show_heatmap, first, "Earlier")
        self._compare_side(surface, screen.later, screen.show_heatmap, second, "Later")
        rect = pygame.Rect(area.left, area.bottom - change_h + self.px(2), area.width, change_h)
        self.draw_block(surface, change, rect, 13, TEXT, bold=True, max_lines=3, align="center")


def _p_text(side: CompareSide) -> str:
    """P(malignant) as text that sits on the same side of the scan's threshold as its tier."""
    if side.referral_threshold is None:
        return f"{side.p_malignant:.0%}"
    return referral_figures(side.p_malignant, side.referral_threshold).p_text
