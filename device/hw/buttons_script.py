"""Scripted button presses, so a hardware tester can replay a session.

A script is a list of steps separated by commas, semicolons or new lines, for
example ``capture, wait 1.5, toggle, next, save``. ``#`` starts a comment.
Steps:

- an event name: ``capture``, ``toggle``, ``next``, ``save``, ``back``,
  ``power``, ``shutdown``, ``history``, ``quit``;
- ``wait SECONDS``: let the live view run that long;
- ``fault KIND``: make the simulated camera fail (black, blur, exception,
  disconnect, reconnect).

One event is released per poll, so the app handles and draws each in turn.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from device.errors import ConfigError
from device.hw.buttons import BUTTON_EVENTS, FAULT_PREFIX, button_labels

log = logging.getLogger(__name__)

SCRIPT_FAULTS = ("black", "blur", "exception", "disconnect", "reconnect")


@dataclass(frozen=True)
class Step:
    """One script step: an event to send, or a pause of ``seconds``."""

    event: str | None = None
    seconds: float = 0.0


def parse_script(text: str) -> tuple[Step, ...]:
    """Parse a script; raises ConfigError naming the bad step and its position."""
    steps: list[Step] = []
    lines = [line.split("#", 1)[0] for line in text.splitlines()]
    tokens = [t.strip() for t in re.split(r"[,;\n]", "\n".join(lines))]
    for position, token in enumerate((t for t in tokens if t), start=1):
        words = token.lower().split()
        if words[0] == "wait":
            if len(words) != 2:
                raise ConfigError(f"script step {position} {token!r}: write 'wait SECONDS'")
            try:
                seconds = float(words[1])
            except ValueError:
                raise ConfigError(
                    f"script step {position} {token!r}: {words[1]!r} is not a number of seconds"
                ) from None
            if not 0 <= seconds <= 3600:
                raise ConfigError(f"script step {position} {token!r}: wait 0 to 3600 seconds")
            steps.append(Step(seconds=seconds))
        elif words[0] == "fault":
            if len(words) != 2 or words[1] not in SCRIPT_FAULTS:
                raise ConfigError(
                    f"script step {position} {token!r}: write 'fault KIND' with KIND one of "
                    f"{', '.join(SCRIPT_FAULTS)}"
                )
            steps.append(Step(event=FAULT_PREFIX + words[1]))
        elif len(words) == 1 and words[0] in BUTTON_EVENTS:
            steps.append(Step(event=words[0]))
        else:
            raise ConfigError(
                f"script step {position} {token!r} is unknown; steps are "
                f"{', '.join(BUTTON_EVENTS)}, 'wait SECONDS', 'fault KIND'"
            )
    return tuple(steps)


def load_script(spec: str) -> tuple[Step, ...]:
    """Parse ``spec``: a path to a script file when one exists there, else the script itself."""
    path = Path(spec)
    if "\n" not in spec and "," not in spec and path.is_file():
        return parse_script(path.read_text())
    return parse_script(spec)


class ScriptButtons:
    """Replays a parsed script, one event per poll, honouring waits.

    Args:
        steps: the parsed script.
        clock: monotonic clock in seconds.
    """

    labels: ClassVar[dict[str, str]] = button_labels(BUTTON_EVENTS)

    def __init__(
        self, steps: tuple[Step, ...], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.steps = steps
        self._clock = clock
        self._next = 0
        self._resume_at: float | None = None

    @property
    def finished(self) -> bool:
        """True once every step has been sent."""
        return self._next >= len(self.steps) and self._resume_at is None

    def poll(self) -> list[str]:
        """The next event when it is due, or nothing while waiting."""
        now = self._clock()
        if self._resume_at is not None:
            if now < self._resume_at:
                return []
            self._resume_at = None
        while self._next < len(self.steps):
            step = self.steps[self._next]
            self._next += 1
            if step.event is not None:
                log.info("script: %s", step.event)
                return [step.event]
            if step.seconds > 0:
                self._resume_at = now + step.seconds
                return []
        return []

    def close(self) -> None:
        """Nothing to release."""
