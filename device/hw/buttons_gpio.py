"""Physical buttons on GPIO pins through gpiozero (lgpio pin factory on a Pi 5).

Each button connects its BCM pin to ground; the internal pull-up holds it high.
gpiozero calls back on its own thread; the callbacks only push event names into
a thread-safe queue that the main loop drains with :meth:`GpioButtons.poll`.

Debounce happens twice: gpiozero's ``bounce_time`` on the pin where the pin
factory supports it, and a software filter here (some factories, including
``MockFactory``, ignore ``bounce_time``): a press within ``bounce_time_s`` of
the button's previous press or release is contact bounce and is dropped.

Buttons with a second meaning (:data:`device.hw.buttons.HOLD_EVENTS`): a hold
of ``hold_time_s`` sends the held event (POWER: ``shutdown``, BACK: ``patient``);
a shorter press sends the button's own event when it is released.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from device.errors import SkinScanError
from device.hw.buttons import HOLD_EVENTS, button_labels

log = logging.getLogger(__name__)


class GpioError(SkinScanError, OSError):
    """The GPIO buttons cannot be set up (no pin factory, pin busy)."""


class GpioButtons:
    """Buttons on GPIO pins.

    Args:
        pins: button name -> BCM pin number.
        hold_time_s: hold of POWER that means shutdown (and of BACK that means patient).
        bounce_time_s: debounce window.
        pin_factory: a gpiozero pin factory (tests pass ``MockFactory()``); None
            means gpiozero's default choice.
        clock: monotonic clock in seconds (tests may replace it).
    """

    def __init__(
        self,
        pins: Mapping[str, int],
        hold_time_s: float = 2.0,
        bounce_time_s: float = 0.05,
        pin_factory: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pins = dict(pins)
        self.hold_time_s = hold_time_s
        self.bounce_time_s = bounce_time_s
        self.labels = button_labels(self.pins)
        self._clock = clock
        self._queue: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._last_edge: dict[str, float] = {}
        self._held: set[str] = set()
        self._buttons: list[Any] = []
        try:
            from gpiozero import Button
        except ImportError as exc:
            raise GpioError("gpiozero is not installed (pip install gpiozero)") from exc
        try:
            for name, pin in self.pins.items():
                self._buttons.append(self._make_button(Button, name, pin, pin_factory))
        except Exception as exc:
            # Release the pins already claimed before reporting the failure.
            self.close()
            raise GpioError(f"cannot set up GPIO buttons: {exc}") from exc
        log.info("GPIO buttons ready: %s", ", ".join(f"{n}=BCM{p}" for n, p in self.pins.items()))

    def _make_button(self, button_class: Any, name: str, pin: int, factory: Any) -> Any:
        button = button_class(
            pin,
            pull_up=True,
            bounce_time=self.bounce_time_s or None,
            hold_time=self.hold_time_s,
            pin_factory=factory,
        )
        button.when_pressed = lambda: self._pressed(name)
        button.when_released = lambda: self._released(name)
        if name in HOLD_EVENTS:
            button.when_held = lambda: self._held_down(name)
        return button

    def _debounced(self, name: str) -> bool:
        now = self._clock()
        last = self._last_edge.get(name)
        self._last_edge[name] = now
        return last is None or now - last >= self.bounce_time_s

    def _pressed(self, name: str) -> None:
        with self._lock:
            accepted = self._debounced(name)
        if accepted and name not in HOLD_EVENTS:
            self._queue.put(name)

    def _released(self, name: str) -> None:
        with self._lock:
            accepted = self._debounced(name)
            was_held = name in self._held
            self._held.discard(name)
        if name in HOLD_EVENTS and accepted and not was_held:
            self._queue.put(name)

    def _held_down(self, name: str) -> None:
        with self._lock:
            self._held.add(name)
        self._queue.put(HOLD_EVENTS[name])

    def poll(self) -> list[str]:
        """Drain the queue of events pushed by gpiozero's thread."""
        events: list[str] = []
        while True:
            try:
                events.append(self._queue.get_nowait())
            except queue.Empty:
                return events

    def close(self) -> None:
        """Release every pin."""
        buttons, self._buttons = self._buttons, []
        for button in buttons:
            try:
                button.close()
            except Exception as exc:  # closing one pin must not keep the others claimed
                log.warning("closing button failed: %s", exc)
        if buttons:
            log.info("GPIO buttons closed")
