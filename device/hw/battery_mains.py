"""Whether the UPS runs on mains, from the pin the UPS board drives for it.

The recommended UPS boards (hardware/bom.md, item 11) drive GPIO 6 high while the
power supply is present and low when it fails. A fuel gauge without a charge-rate
register (the MAX17040 family) cannot say whether it is charging; this pin can,
and it keeps the device from shutting itself down while it is plugged in.

gpiozero is imported when the pin is opened, never at module import.
"""

from __future__ import annotations

import logging
from typing import Any

from device.hw.battery_reading import BatteryError

log = logging.getLogger(__name__)


class MainsSense:
    """The UPS's "power supply OK" pin through gpiozero.

    Args:
        pin: BCM pin number.
        pin_factory: a gpiozero pin factory (tests pass ``MockFactory()``); None for
            gpiozero's default (lgpio on a Pi 5).
    """

    def __init__(self, pin: int, pin_factory: Any = None) -> None:
        self.pin = pin
        self._pin_factory = pin_factory
        self._device: Any = None

    def present(self) -> bool:
        """True while the UPS has mains power. Raises BatteryError when the pin cannot be read."""
        if self._device is None:
            try:
                from gpiozero import DigitalInputDevice

                # The UPS drives the pin both ways: no pull-up or pull-down of our own.
                self._device = DigitalInputDevice(
                    self.pin, pull_up=None, active_state=True, pin_factory=self._pin_factory
                )
            except Exception as exc:  # gpiozero raises its own types for a busy or bad pin
                raise BatteryError(
                    f"cannot read the UPS's mains pin GPIO{self.pin}: {exc}"
                ) from exc
        return bool(self._device.is_active)

    def close(self) -> None:
        """Release the pin."""
        device, self._device = self._device, None
        if device is not None:
            device.close()
