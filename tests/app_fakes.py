"""Helpers for the app tests: a headless App on the simulated camera, and fakes with verbs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

from device.app.events import ResultView
from device.app.runner import App
from device.app.systemd import Notifier
from device.errors import DiskFullError
from device.hw.buttons_script import ScriptButtons, parse_script
from device.hw.camera_sim import SimCamera
from device.hw.display import PygameDisplay
from device.records.api import ScanRecord
from device.records.store import MemoryScanStore
from device.ui.screens import RankedName


class FillableStore:
    """A memory store whose disk can be filled and emptied on cue."""

    def __init__(self) -> None:
        self.inner = MemoryScanStore(device_id="test-device")
        self.device_id = "test-device"
        self.full = False
        self.closed = False
        self.notices: list[Any] = []

    def fill_disk(self) -> None:
        """Make every save fail with DiskFullError."""
        self.full = True

    def free_disk(self) -> None:
        """Let saves succeed again."""
        self.full = False

    def save(self, record: ScanRecord) -> str:
        if self.full:
            raise DiskFullError("no space left on /var/lib/skinscan (simulated)")
        return self.inner.save(record)

    def get(self, scan_id: str) -> ScanRecord:
        return self.inner.get(scan_id)

    def history(self, patient_ref=None, body_site=None, limit: int = 100):
        return self.inner.history(patient_ref=patient_ref, body_site=body_site, limit=limit)

    def close(self) -> None:
        # The records stay readable after the app closes, for the test's assertions.
        self.closed = True


class BrokenBundle(Exception):
    """Stands in for a loader failure that is not a BundleError."""


def analyzer_loader(bundle_dir: Path | str | None) -> Any:
    """A loader for the App: the real Analyzer on ``bundle_dir``."""

    def load() -> Any:
        from device.runtime.analyzer import Analyzer

        return Analyzer.from_path(bundle_dir)

    return load


def make_app(
    tmp_path: Path,
    script: str,
    *,
    bundle_dir: Path | str | None,
    source: Path | str | None = None,
    store: Any = None,
    size: tuple[int, int] = (480, 320),
    retry_s: float = 0.1,
    load_analyzer: Any = None,
    notifier: Notifier | None = None,
) -> App:
    """A headless App on the simulated camera, driven by ``script``, saving PNGs in tmp_path."""
    return App(
        camera=SimCamera(source=source, preview_size=(640, 480)),
        buttons=ScriptButtons(parse_script(script)),
        display=PygameDisplay("headless", size, tmp_path / "screens"),
        store=store if store is not None else FillableStore(),
        load_analyzer=load_analyzer or analyzer_loader(bundle_dir),
        max_fps=0,
        camera_retry_s=retry_s,
        notifier=notifier or Notifier(environ={}),
        keep_screens=1000,
    )


def kinds(screens: Sequence[Any]) -> list[str]:
    """Screen kinds in order, with consecutive repeats collapsed."""
    out: list[str] = []
    for screen in screens:
        if not out or out[-1] != screen.kind:
            out.append(screen.kind)
    return out


def sample_result(
    key: str = "scan1", p_malignant: float = 0.1, tier: str = "monitor"
) -> ResultView:
    """A ResultView with a small image and overlay, for controller and renderer tests."""
    image = np.full((32, 32, 3), 120, np.uint8)
    overlay = image.copy()
    overlay[8:24, 8:24] = (250, 230, 30)
    return ResultView(
        scan_key=key,
        image=image,
        overlay=overlay,
        legend=np.stack([np.linspace(0, 255, 16)] * 3, axis=1).astype(np.uint8),
        heatmap=None,
        label="nv",
        top3=(
            RankedName("Melanocytic nevus (mole)", "nv", 0.7),
            RankedName("Melanoma", "mel", 0.1, True),
            RankedName("Benign keratosis", "bkl", 0.1),
        ),
        probabilities={
            "nv": 0.7,
            "mel": 0.1,
            "bkl": 0.1,
            "akiec": 0.0,
            "bcc": 0.0,
            "df": 0.05,
            "vasc": 0.05,
        },
        p_malignant=p_malignant,
        risk_tier=tier,
        referral_threshold=0.4,
    )


def screen_lines(
    screen: Any, size: tuple[int, int], labels: dict[str, str] | None = None
) -> list[str]:
    """The lines of text the renderer draws for ``screen`` at ``size``, in drawing order."""
    from device.ui.render import Renderer

    lines: list[str] = []

    class Recording(Renderer):
        def draw_text(self, surface, text, font, colour, pos, anchor="topleft"):
            lines.append(text)
            return super().draw_text(surface, text, font, colour, pos, anchor)

    Recording(size, labels or {}).render(screen)
    return lines
