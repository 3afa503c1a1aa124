"""The Battery seam: how much charge the UPS has left, and whether it is charging.

Backends:

- ``max17048``: the fuel gauge of the recommended UPS (hardware/bom.md, item 11), read
  over I2C (:mod:`device.hw.battery_max17048`; smbus2 is imported only there).
- ``sim``: :class:`SimBattery`, which drains at a configured rate and can be drained
  or put on charge from the keyboard or a script (the simulator and tests).
- ``none``: no battery is read (mains power); the live view shows no gauge.

A reading that fails raises :class:`BatteryError`; the app logs it and shows no
gauge rather than stopping (a loose UPS must not stop a scan).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

from device.hw.battery_reading import BatteryError, BatteryReading

__all__ = [
    "BATTERY_GAUGES",
    "Battery",
    "BatteryError",
    "BatteryReading",
    "SimBattery",
    "make_battery",
]

log = logging.getLogger(__name__)

BATTERY_GAUGES = ("auto", "none", "sim", "max17048")
# The I2C bus on the 40-pin header (GPIO 2 = SDA, GPIO 3 = SCL).
I2C_PINS = (2, 3)
# What the simulator's keys and script verbs do to a SimBattery.
SIM_BATTERY_FAULTS = ("battery-drain", "battery-charge", "battery-critical")


@runtime_checkable
class Battery(Protocol):
    """A battery whose charge can be read."""

    name: str

    def read(self) -> BatteryReading:
        """The charge now. Raises BatteryError."""
        ...

    def close(self) -> None:
        """Release the bus; safe to call twice."""
        ...


class SimBattery:
    """A simulated battery: starts at ``percent`` and loses ``drain_per_min`` each minute.

    Args:
        percent: the charge at start.
        drain_per_min: percentage points lost per minute (0 keeps it steady).
        charging: start on charge (it then gains what it would have lost).
        clock: monotonic clock in seconds (tests replace it).
    """

    name = "simulated battery"

    def __init__(
        self,
        percent: float = 80.0,
        drain_per_min: float = 0.0,
        charging: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._percent = float(percent)
        self.drain_per_min = float(drain_per_min)
        self.charging = charging
        self._clock = clock
        self._since = clock()

    def _settle(self) -> None:
        now = self._clock()
        change = self.drain_per_min * (now - self._since) / 60.0
        self._percent += change if self.charging else -change
        self._percent = min(100.0, max(0.0, self._percent))
        self._since = now

    def read(self) -> BatteryReading:
        """The simulated charge now."""
        self._settle()
        return BatteryReading(self._percent, None, self.charging)

    def inject(self, fault: str) -> None:
        """``battery-drain``: lose 10 points; ``battery-charge``: plug in or unplug the
        charger; ``battery-critical``: drop to 3 %."""
        self._settle()
        if fault == "battery-drain":
            self._percent = max(0.0, self._percent - 10.0)
        elif fault == "battery-charge":
            self.charging = not self.charging
        elif fault == "battery-critical":
            self._percent = 3.0
        else:
            raise BatteryError(f"unknown battery fault {fault!r}")
        log.info("simulated battery: %s -> %.0f%%", fault, self._percent)

    def close(self) -> None:
        """Nothing to release."""


def i2c_device(bus: int) -> Path:
    """The device file of I2C bus ``bus``."""
    return Path(f"/dev/i2c-{bus}")


def make_battery(
    gauge: str,
    *,
    backend: str,
    i2c_bus: int = 1,
    i2c_address: int = 0x36,
    button_pins: tuple[int, ...] = (),
    sim_percent: float = 80.0,
    sim_drain_per_min: float = 0.0,
    mains_pin: int | None = None,
) -> Battery | None:
    """The battery for ``gauge``, or None when none is read.

    ``auto``: the simulated battery with the sim backend; with the pi backend the
    I2C gauge when its bus exists and no button uses the I2C pins (else none, said
    in the log); none with the usb backend (a laptop). ``mains_pin``: the pin the UPS
    drives high while on mains (GPIO 6 on the recommended boards), or None.

    Raises:
        BatteryError: ``gauge`` is unknown.
    """
    if gauge not in BATTERY_GAUGES:
        raise BatteryError(f"unknown battery gauge {gauge!r}; use one of {BATTERY_GAUGES}")
    if gauge == "auto":
        if backend == "sim":
            gauge = "sim"
        elif backend == "pi":
            clash = sorted(set(button_pins) & set(I2C_PINS))
            if clash:
                log.warning(
                    "battery not read: buttons use GPIO %s, the I2C pins of the UPS's fuel "
                    "gauge (move them, see docs/device.md)",
                    ", ".join(map(str, clash)),
                )
                return None
            if not i2c_device(i2c_bus).exists():
                log.warning("battery not read: %s is missing (I2C off?)", i2c_device(i2c_bus))
                return None
            gauge = "max17048"
        else:
            return None
    if gauge == "none":
        return None
    if gauge == "sim":
        return SimBattery(sim_percent, sim_drain_per_min)
    from device.hw.battery_max17048 import Max17048Gauge

    mains = None
    if mains_pin is not None:
        from device.hw.battery_mains import MainsSense

        mains = MainsSense(mains_pin)
    return Max17048Gauge(bus=i2c_bus, address=i2c_address, mains=mains)
