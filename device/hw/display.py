"""The Display seam: a pygame-ce surface that the renderer draws on.

Modes:

- ``fullscreen``: the whole panel. On a Pi with no X this is KMS/DRM
  (``SDL_VIDEODRIVER=kmsdrm``; the pygame-ce aarch64 wheel has the driver).
- ``window``: a window of the configured size on a laptop.
- ``headless``: SDL's dummy driver; every new screen is written to a PNG.

:meth:`Display.present` takes a ``snapshot_key``: a PNG is written whenever the
key differs from the previous one, so a live view makes one file, not thirty a
second.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from device.errors import SkinScanError

log = logging.getLogger(__name__)

DisplayMode = Literal["fullscreen", "window", "headless"]
DISPLAY_MODES: tuple[str, ...] = ("fullscreen", "window", "headless")


class DisplayError(SkinScanError, OSError):
    """No screen can be opened in the requested mode."""


@runtime_checkable
class Display(Protocol):
    """A screen with a drawing surface."""

    mode: str
    size: tuple[int, int]
    surface: Any

    def open(self) -> None:
        """Acquire the screen. Raises DisplayError."""
        ...

    def present(self, snapshot_key: str | None = None) -> Path | None:
        """Show what was drawn on :attr:`surface`; returns the PNG written, if any."""
        ...

    def close(self) -> None:
        """Release the screen."""
        ...


def has_desktop(environ: dict[str, str] | None = None) -> bool:
    """True when an X11 or Wayland session is reachable."""
    environ = dict(os.environ) if environ is None else environ
    return bool(environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"))


def import_pygame() -> Any:
    """Import pygame-ce quietly (no banner on stdout).

    SDL would otherwise install its own SIGINT/SIGTERM handlers, which turn the
    signals into window-close events; the app handles signals itself.
    """
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    os.environ.setdefault("SDL_NO_SIGNAL_HANDLERS", "1")
    import pygame

    return pygame


class PygameDisplay:
    """A pygame-ce screen in one of the three modes.

    Args:
        mode: "fullscreen", "window" or "headless".
        size: window or headless size (width, height); full screen uses the panel's.
        screenshots: folder for PNGs of each new screen; None writes none.
        title: the window title.
    """

    def __init__(
        self,
        mode: DisplayMode = "window",
        size: tuple[int, int] = (800, 480),
        screenshots: str | Path | None = None,
        title: str = "SkinScan",
    ) -> None:
        if mode not in DISPLAY_MODES:
            raise DisplayError(f"unknown display mode {mode!r}; use {', '.join(DISPLAY_MODES)}")
        self.mode = mode
        self.size = tuple(size)
        self.screenshots = Path(screenshots) if screenshots else None
        self.title = title
        self.surface: Any = None
        self.written: list[Path] = []
        self._pygame: Any = None
        self._last_key: str | None = None

    def open(self) -> None:
        """Initialise SDL in this mode and create the surface."""
        if self.surface is not None:
            return
        if self.mode == "headless":
            os.environ["SDL_VIDEODRIVER"] = "dummy"
        elif self.mode == "fullscreen" and not has_desktop():
            os.environ.setdefault("SDL_VIDEODRIVER", "kmsdrm")
        pygame = import_pygame()
        try:
            pygame.display.init()
            pygame.font.init()
            if self.mode == "fullscreen":
                surface = pygame.display.set_mode((0, 0), pygame.FULLSCREEN)
                pygame.mouse.set_visible(False)
            else:
                surface = pygame.display.set_mode(self.size)
                pygame.display.set_caption(self.title)
        except pygame.error as exc:
            pygame.display.quit()
            driver = os.environ.get("SDL_VIDEODRIVER", "default")
            raise DisplayError(
                f"cannot open a {self.mode} screen (SDL driver {driver}): {exc}"
            ) from exc
        self._pygame = pygame
        self.surface = surface
        self.size = surface.get_size()
        if self.screenshots is not None:
            self.screenshots.mkdir(parents=True, exist_ok=True)
        log.info("display open: %s %dx%d", self.mode, *self.size)

    def present(self, snapshot_key: str | None = None) -> Path | None:
        """Flip the drawn surface to the screen and write a PNG for a new ``snapshot_key``."""
        if self.surface is None:
            raise DisplayError("display is not open")
        pygame = self._pygame
        pygame.display.flip()
        if self.mode != "headless":
            pygame.event.pump()
        if snapshot_key is None or snapshot_key == self._last_key:
            return None
        self._last_key = snapshot_key
        if self.screenshots is None:
            return None
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", snapshot_key).strip("-") or "screen"
        path = self.screenshots / f"{len(self.written) + 1:03d}-{name}.png"
        pygame.image.save(self.surface, str(path))
        self.written.append(path)
        log.info("screenshot %s", path)
        return path

    def close(self) -> None:
        """Release the screen (and the KMS master on a Pi)."""
        if self._pygame is None:
            return
        pygame, self._pygame = self._pygame, None
        self.surface = None
        pygame.display.quit()
        pygame.quit()
        log.info("display closed")
