"""The UPS's fuel gauge: a MAX17048 (or register-compatible MAX17040/41/43/49) on I2C.

The recommended UPS boards (hardware/bom.md, item 11) carry this gauge at address
0x36 on the header's I2C bus (GPIO 2 and 3). Registers are 16 bits, most
significant byte first (MAX17048/MAX17049 datasheet, "Register Summary"):

====  =======  ====================================================================
0x02  VCELL    cell voltage, 78.125 uV per bit (the MAX17040's 12-bit value at
               1.25 mV in the top 12 bits is the same scale)
0x04  SOC      state of charge, 1/256 % per bit (the high byte is whole percent)
0x08  VERSION  0x001_ on a MAX17048/49
0x16  CRATE    charge or discharge rate, signed, 0.208 %/hour per bit
               (MAX17048/49 only)
====  =======  ====================================================================

smbus2 is imported when the gauge is opened, never at module import, so the
module loads (and is tested against a fake bus) on any machine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from device.hw.battery_reading import BatteryError, BatteryReading

log = logging.getLogger(__name__)

REG_VCELL = 0x02
REG_SOC = 0x04
REG_VERSION = 0x08
REG_CRATE = 0x16
VCELL_VOLTS_PER_BIT = 78.125e-6
SOC_PERCENT_PER_BIT = 1 / 256
CRATE_PERCENT_PER_HOUR_PER_BIT = 0.208
# A rate within +-1 %/hour is neither charging nor discharging to the eye (full on the
# charger, or idle): reported as unknown rather than guessed.
CHARGING_RATE_PERCENT_PER_HOUR = 1.0
# A lithium cell outside these volts is not a cell the gauge measures (no cell, a bad bus).
PLAUSIBLE_VOLTS = (2.5, 4.6)


def _open_smbus(bus: int) -> Any:
    """An smbus2 bus (imported here: only the Pi needs it)."""
    try:
        from smbus2 import SMBus
    except ImportError as exc:
        raise BatteryError(
            "smbus2 is not installed: on the Pi run 'sudo apt install python3-smbus2' "
            "(setup.sh on a Pi installs it)"
        ) from exc
    try:
        return SMBus(bus)
    except OSError as exc:
        raise BatteryError(
            f"cannot open I2C bus {bus} (/dev/i2c-{bus}): {exc}; enable I2C with "
            "'sudo raspi-config nonint do_i2c 0'"
        ) from exc


def word(data: list[int] | bytes) -> int:
    """A register's two bytes (most significant first) as an unsigned 16-bit number."""
    return (int(data[0]) << 8) | int(data[1])


def signed(value: int) -> int:
    """An unsigned 16-bit register value as two's complement."""
    return value - 0x10000 if value & 0x8000 else value


class Max17048Gauge:
    """The MAX17048-family fuel gauge over I2C.

    Args:
        bus: the I2C bus number (1 on the 40-pin header).
        address: the gauge's 7-bit address (0x36).
        open_bus: opens the bus (tests pass a fake with ``read_i2c_block_data``).
        mains: the UPS's mains sense (:class:`device.hw.battery_mains.MainsSense`), or
            None. With it, "charging" means on mains, whatever the gauge's rate says.
    """

    name = "MAX17048 fuel gauge"

    def __init__(
        self,
        bus: int = 1,
        address: int = 0x36,
        open_bus: Callable[[int], Any] = _open_smbus,
        mains: Any = None,
    ) -> None:
        self.bus_number = bus
        self.address = address
        self._open_bus = open_bus
        self.mains = mains
        self._bus: Any = None
        self.version: int | None = None
        self.has_rate = False

    def _register(self, register: int) -> int:
        if self._bus is None:
            self._bus = self._open_bus(self.bus_number)
            self.version = self._read(REG_VERSION)
            # Only the MAX17048/49 have CRATE; on a MAX17040 that address is not a register.
            self.has_rate = (self.version & 0xFFF0) == 0x0010
            log.info(
                "battery gauge at 0x%02x on I2C bus %d: version 0x%04x%s",
                self.address, self.bus_number, self.version,
                "" if self.has_rate else " (no charge rate: charging is not shown)",
            )  # fmt: skip
        return self._read(register)

    def _read(self, register: int) -> int:
        try:
            data = self._bus.read_i2c_block_data(self.address, register, 2)
        except OSError as exc:
            raise BatteryError(
                f"no answer from the battery gauge at 0x{self.address:02x} on I2C bus "
                f"{self.bus_number} (register 0x{register:02x}): {exc}"
            ) from exc
        if len(data) != 2:
            raise BatteryError(f"battery gauge register 0x{register:02x}: {len(data)} bytes")
        return word(data)

    def read(self) -> BatteryReading:
        """The state of charge, cell voltage and whether it is charging (from the mains pin
        when there is one, else from a MAX17048's charge rate).

        Raises:
            BatteryError: the gauge does not answer, or reads an implausible voltage.
        """
        volts = self._register(REG_VCELL) * VCELL_VOLTS_PER_BIT
        if not PLAUSIBLE_VOLTS[0] <= volts <= PLAUSIBLE_VOLTS[1]:
            raise BatteryError(f"battery gauge reads {volts:.2f} V: no cell, or a bad reading")
        # SOC can read above 100 % before the gauge has learnt the cell.
        percent = min(100.0, self._register(REG_SOC) * SOC_PERCENT_PER_BIT)
        charging: bool | None = None
        if self.mains is not None:
            charging = self.mains.present()
        elif self.has_rate:
            rate = signed(self._register(REG_CRATE)) * CRATE_PERCENT_PER_HOUR_PER_BIT
            if abs(rate) >= CHARGING_RATE_PERCENT_PER_HOUR:
                charging = rate > 0
        return BatteryReading(percent, round(volts, 4), charging)

    def close(self) -> None:
        """Close the I2C bus and the mains pin."""
        bus, self._bus = self._bus, None
        if bus is not None:
            bus.close()
        if self.mains is not None:
            self.mains.close()
