"""The patient's card screen and the body-site list."""

from __future__ import annotations

from typing import Any

from device.ui.draw.header_footer import HeaderFooter
from device.ui.draw.theme import BAD, BG, BOX, GOOD, MUTED, PANEL, TEXT
from device.ui.screens import CardScreen, SiteScreen


class PatientScreens(HeaderFooter):
    """Draws the screens that set the patient and the body site."""

    def _card(self, surface: Any, screen: CardScreen) -> None:
        """The live view beside what to do; the reason in red when a card was refused."""
        pygame = self.pygame
        self.draw_header(surface, "Scan patient card")
        area = self.content_rect().inflate(-2 * self.px(6), -2 * self.px(5))
        text = area
        if screen.frame is not None:
            view_area, text = self.image_and_text(area, 0.5)
            rect = self.fit_image(screen.frame, view_area)
            rect.top = view_area.top
            surface.blit(self.image_surface(screen.frame, rect.size), rect)
            pygame.draw.rect(surface, BOX, rect, width=max(2, self.px(2)))
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
        self.draw_header(surface, screen.title)
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
