"""Scripted button presses, so a hardware tester can replay a session.

A script is a list of steps separated by commas, semicolons or new lines, for
example ``capture, wait 1.5, toggle, next, save``. ``#`` starts a comment.
The verbs are listed, with what each does, in :data:`SCRIPT_HELP` (which
``skinscan run --help`` prints).

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
from device.hw.battery import SIM_BATTERY_FAULTS
from device.hw.buttons import BUTTON_EVENTS, FAULT_PREFIX, MENU_SHORTCUTS, button_labels

log = logging.getLogger(__name__)

SCRIPT_FAULTS = ("black", "blur", "exception", "disconnect", "reconnect", *SIM_BATTERY_FAULTS)

SCRIPT_HELP = """\
script verbs (--script 'patient, wait 0.5, capture, wait 1, capture, wait 1.5, save'):
  capture   the CAPTURE button: scan (live view), read the card (patient card screen),
            choose (body-site list), compare (history), new scan (result), continue
  toggle    TOGGLE: body-site list (live view), heatmap on/off (result, history),
            next patient: clear the patient (patient card screen), up (body-site list)
  next      NEXT: saved scans (live view, result), older scan (history), down (list)
  save      SAVE: save the result; in history, this patient's scans or all scans
  back      BACK: back to the live view, cancel
  power     a short press of POWER: cancels the power-off question; nothing else, so
            a brush against the button never powers off
  shutdown  a long hold of POWER (shown as "Hold POWER"): asks "Power off?" on a Pi or
            "Quit SkinScan?" in the simulator; capture (or shutdown again) confirms,
            anything else cancels. Confirming powers off a Pi (config system.shutdown)
            or ends the program. Saved scans are kept.
  patient   a long hold of BACK ("Hold BACK"): the "Scan patient card" screen; in the
            simulator the card is the next image of --images, used up by the capture
            that reads it
  history   open the saved scans (the keyboard's L)
  menu      a long hold of NEXT ("Hold NEXT"): the menu; next/toggle move, capture
            chooses, back closes
  export    the menu's Export to USB: every saved scan, sealed for the clinic, onto
            the stick (--usb DIR stands for one in the simulator)
  free-space     the menu's Free space: the clinic's receipts on the stick are
                 recorded, and the scans they confirm move onto the stick
  update-model   the menu's Update model: install the signed model bundle on the stick
  rollback-model the menu's Roll back model: back to the model used before
  quit      leave the program at once, without powering off (closing the window)
  wait SECONDS   let the live view run that long (0 to 3600)
  fault KIND     make the simulated camera fail: black, blur, exception, disconnect,
                 reconnect; or change the simulated battery: battery-drain (10 points
                 less), battery-charge (charger in or out), battery-critical (3 %)
A script is one argument (steps separated by commas, semicolons or new lines, '#'
starts a comment) or the path of a file holding one. The program ends when the
script does; an empty script is refused.
"""


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
        elif len(words) == 1 and (words[0] in BUTTON_EVENTS or words[0] in MENU_SHORTCUTS):
            steps.append(Step(event=words[0]))
        else:
            raise ConfigError(
                f"script step {position} {token!r} is unknown; steps are "
                f"{', '.join((*BUTTON_EVENTS, *MENU_SHORTCUTS))}, 'wait SECONDS', 'fault KIND'"
            )
    return tuple(steps)


def load_script(spec: str) -> tuple[Step, ...]:
    """Parse ``spec``: a path to a script file when one exists there, else the script itself.

    Raises:
        ConfigError: a step is unknown, ``spec`` names a file that does not exist
            (a single word with a ``/`` or a ``.`` that is not a step), or the
            script has no steps at all (it would run forever).
    """
    single = not re.search(r"[,;\n]", spec)
    path = Path(spec.strip())
    if single and spec.strip() and path.is_file():
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"script file {spec}: cannot read it ({exc})") from None
        steps = parse_script(text)
        where = f"script file {spec}: the script"
    else:
        try:
            steps = parse_script(spec)
        except ConfigError:
            if single and _looks_like_path(spec.strip()):
                raise ConfigError(f"script file not found: {spec.strip()}") from None
            raise
        where = "the script"
    if not steps:
        raise ConfigError(
            f"{where} is empty; give at least one step, "
            "e.g. 'capture, wait 1.5, save' (see skinscan run --help)"
        )
    return steps


def _looks_like_path(text: str) -> bool:
    """A single word that names a file rather than a step: it has a folder or a suffix."""
    return len(text.split()) == 1 and ("/" in text or "." in text or "\\" in text)


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
