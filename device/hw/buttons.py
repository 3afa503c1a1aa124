"""The Buttons seam: sources of button events, drained by the main loop.

A backend turns presses into event names and queues them; the main loop calls
:meth:`Buttons.poll` once per frame and feeds each event to the controller.
Callbacks on other threads (gpiozero) only ever push into a queue.

Event names:

- ``capture``, ``toggle``, ``next``, ``save``, ``back``: the buttons;
- ``power``: a short press of the power button; ``shutdown``: a long hold;
- ``patient``: a long hold of BACK: scan a patient card, or clear the patient;
- ``menu``: a long hold of NEXT: the menu (export to USB, free space, update model);
- ``history``: open the saved scans (keyboard and scripts);
- ``quit``: leave the program without powering off (window closed, ``q``);
- ``fault:<kind>``: tell the simulated camera to fail (see camera_sim.FAULTS).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, runtime_checkable

log = logging.getLogger(__name__)

BUTTON_EVENTS: tuple[str, ...] = (
    "capture",
    "toggle",
    "next",
    "save",
    "back",
    "power",
    "shutdown",
    "patient",
    "history",
    "quit",
    "menu",
)
# Script verbs that run a menu entry at once (device.app.menu_state.MENU_TASKS).
MENU_SHORTCUTS: tuple[str, ...] = ("export", "free-space", "update-model", "rollback-model")
FAULT_PREFIX = "fault:"
# Physical buttons with a second meaning when held: button -> event sent on a long hold.
# Such a button sends its own event on release instead of on press.
HOLD_EVENTS: dict[str, str] = {"power": "shutdown", "back": "patient", "next": "menu"}


@runtime_checkable
class Buttons(Protocol):
    """A source of button events."""

    labels: Mapping[str, str]
    """Button event -> what to print on screen for it (a key name or the button's label)."""

    def poll(self) -> list[str]:
        """Return the events that arrived since the last poll, oldest first."""
        ...

    def close(self) -> None:
        """Release the buttons."""
        ...


class MultiButtons:
    """Several button sources read as one (e.g. a script plus the window's keyboard)."""

    def __init__(self, sources: Sequence[Buttons]) -> None:
        self.sources = list(sources)
        labels: dict[str, str] = {}
        for source in reversed(self.sources):
            labels.update(source.labels)
        self.labels = labels

    def poll(self) -> list[str]:
        """Events from every source, in source order."""
        events: list[str] = []
        for source in self.sources:
            events.extend(source.poll())
        return events

    @property
    def finished(self) -> bool:
        """True when a finite source (a script) has nothing left to send."""
        return any(getattr(source, "finished", False) for source in self.sources)

    def close(self) -> None:
        """Close every source."""
        for source in self.sources:
            source.close()


def button_labels(names: Iterable[str]) -> dict[str, str]:
    """Labels for physical buttons: the button's own name in capitals.

    Shutdown, patient and menu are not buttons of their own but long holds of POWER,
    BACK and NEXT (:data:`HOLD_EVENTS`), and say so.
    """
    labels = {name: name.upper() for name in names}
    for button, held in HOLD_EVENTS.items():
        labels[held] = f"Hold {button.upper()}"
    return labels
