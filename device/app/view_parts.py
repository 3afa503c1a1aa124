"""Small pieces every screen view uses: hint chips, the power label, a result screen."""

from __future__ import annotations

from device.app.events import ResultView
from device.app.results import bundle_text
from device.app.state import AppState
from device.ui.screens import Hint, ResultScreen


def power_label(state: AppState) -> str:
    """What the shutdown button does here: power off a Pi, quit the simulator."""
    return "Power off" if state.poweroff else "Quit"


def make_hints(*pairs: tuple[str, str]) -> tuple[Hint, ...]:
    """Hints from (button, action) pairs."""
    return tuple(Hint(button, action) for button, action in pairs)


def result_screen(result: ResultView, show_heatmap: bool, title: str, hints) -> ResultScreen:
    """The screen for one result (live or saved) under ``title``."""
    return ResultScreen(
        image=result.image,
        overlay=result.overlay,
        show_heatmap=show_heatmap,
        top3=result.top3,
        p_malignant=result.p_malignant,
        referral_threshold=result.referral_threshold,
        risk_tier=result.risk_tier,
        unfamiliar=result.unfamiliar,
        unusual_light=result.unusual_light,
        legend=result.legend,
        saved="Saved" if result.saved_id else "Not saved yet",
        is_saved=result.saved_id is not None,
        title=title,
        scan_key=result.scan_key,
        hints=hints,
        bundle=bundle_text(result.bundle_id, result.bundle_label),
    )
