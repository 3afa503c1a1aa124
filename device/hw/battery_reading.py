"""What every battery backend returns or raises (its own module, so that the seam in
:mod:`device.hw.battery` and the backends share it without importing each other)."""

from __future__ import annotations

from dataclasses import dataclass

from device.errors import SkinScanError


class BatteryError(SkinScanError, OSError):
    """The battery gauge cannot be opened or read."""


@dataclass(frozen=True)
class BatteryReading:
    """One reading of the gauge.

    Attributes:
        percent: state of charge, 0 to 100.
        voltage: cell voltage in volts, or None when the backend does not measure it.
        charging: True while charging, False while discharging, None when it cannot tell.
    """

    percent: float
    voltage: float | None = None
    charging: bool | None = None
