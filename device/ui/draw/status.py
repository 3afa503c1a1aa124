"""The live view's title bar with the battery gauge and the free storage in scans."""

from __future__ import annotations

from typing import Any

from device.ui.draw.header_footer import HeaderFooter
from device.ui.draw.theme import BAD, GOOD, MUTED, TEXT, WARN
from device.ui.screens import DeviceStatus

# More scans than this read as "9999+": the exact count means nothing that far out.
MAX_SCANS_SHOWN = 9999


def storage_wordings(scans_left: int) -> tuple[str, ...]:
    """How the free storage reads in the title bar, longest first."""
    if scans_left <= 0:
        return ("Storage full", "Full")
    count = f"{MAX_SCANS_SHOWN}+" if scans_left > MAX_SCANS_SHOWN else str(scans_left)
    noun = "scan" if scans_left == 1 else "scans"
    return (f"Space for {count} {noun}", f"{count} {noun} left", f"{count} left")


def battery_text(status: DeviceStatus) -> str:
    """The charge as shown beside the battery icon ("62%", "62% charging")."""
    return f"{status.battery_percent}%"


class StatusBar(HeaderFooter):
    """Draws a title bar whose right end shows the battery and the free storage."""

    def battery_colour(self, status: DeviceStatus) -> tuple[int, int, int]:
        """Green, amber when low, red at 5 % or less."""
        percent = status.battery_percent or 0
        if status.battery_low and percent <= 5:
            return BAD
        return WARN if status.battery_low else GOOD

    def _battery_gauge_width(self, font: Any, status: DeviceStatus) -> int:
        if status.battery_percent is None:
            return 0
        return self.px(22) + self.px(4) + font.size(battery_text(status))[0]

    def _draw_battery(self, surface: Any, status: DeviceStatus, font: Any, right: int) -> None:
        """The battery icon, filled to the charge, a bolt while charging, then the percent."""
        pygame = self.pygame
        height = self.title_height()
        text = battery_text(status)
        colour = self.battery_colour(status)
        text_w = font.size(text)[0]
        with self.within(pygame.Rect(0, 0, self.size[0], height)):
            self.draw_text(surface, text, font, colour, (right, height // 2), "midright")
        body_w, body_h = self.px(19), self.px(11)
        nub_w = max(2, self.px(2))
        body = pygame.Rect(0, 0, body_w, body_h)
        body.midright = (right - text_w - self.px(4) - nub_w, height // 2)
        line = max(1, self.px(1))
        pygame.draw.rect(surface, TEXT, body, width=line, border_radius=max(1, self.px(2)))
        nub = pygame.Rect(body.right, body.centery - body_h // 4, nub_w, body_h // 2)
        pygame.draw.rect(surface, TEXT, nub)
        inner = body.inflate(-2 * (line + 1), -2 * (line + 1))
        fill = round(inner.width * max(0, min(100, status.battery_percent or 0)) / 100)
        if fill:
            pygame.draw.rect(surface, colour, (inner.left, inner.top, fill, inner.height))
        if status.charging:
            # A lightning bolt across the icon.
            cx, cy, w, h = body.centerx, body.centery, body_w // 3, body_h
            bolt = [
                (cx + w // 3, cy - h // 2 + line),
                (cx - w // 2, cy + line),
                (cx, cy),
                (cx - w // 3, cy + h // 2 - line),
                (cx + w // 2, cy - line),
                (cx, cy),
            ]
            pygame.draw.polygon(surface, TEXT, bolt)
            pygame.draw.polygon(surface, (20, 20, 20), bolt, width=1)

    def draw_status_header(
        self, surface: Any, title: str, status: DeviceStatus | None, extras: tuple[str, ...] = ()
    ) -> None:
        """The title bar with the battery gauge at the right and the free storage before it.

        ``extras`` are wordings of less important text (the frame rate), longest first;
        they give way first, then the storage shortens, then the title shrinks.
        """
        pad = self.px(8)
        font = self.font(12)
        gauge_w = self._battery_gauge_width(font, status) if status else 0
        storage: tuple[str, ...] = ()
        if status is not None and status.scans_left is not None:
            storage = storage_wordings(status.scans_left)
        candidates: list[str] = []
        for store_text in storage or ("",):
            for extra in (*extras, ""):
                candidates.append(" · ".join(t for t in (store_text, extra) if t))
        # The title keeps a comfortable size if a shorter right-hand text allows it, else
        # at least its legible minimum; the right-hand text shortens first.
        free = self.size[0] - 3 * pad - gauge_w - (self.px(8) if gauge_w else 0)
        right = ""
        for title_font in (self.font(13, True), self.font(0, True)):
            room = min(free - title_font.size(title)[0], self.size[0] // 2)
            fitting = [c for c in candidates if font.size(c)[0] <= room]
            if fitting:
                right = fitting[0]
                break
        reserve = gauge_w + (self.px(8) if gauge_w and right else 0)
        low = status is not None and status.storage_low and bool(storage)
        self.draw_header(
            surface, title, right, right_reserve=reserve, right_colour=WARN if low else MUTED
        )
        if gauge_w:
            self._draw_battery(surface, status, font, self.size[0] - pad)  # type: ignore[arg-type]
