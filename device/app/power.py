"""Battery and storage for the live view: read them every few seconds, warn before either
runs out, and say when the battery is so low that the device must shut down.

The free space is counted in scans: what the data folder still holds above the
store's reserve (:mod:`device.records.space`), divided by what a scan costs. A
scan's cost is measured on the store's own saved files once there are a few
(photo and heatmap, encrypted PNGs), else :data:`DEFAULT_SCAN_BYTES`: three
HAM10000 scans saved in the simulator took 100-122 KB for the photo and
105-122 KB for the heatmap each, so 256 KiB with the database row leaves a margin.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device.app.events import PowerStatus
from device.hw.battery import BatteryError, BatteryReading
from device.records.space import free_bytes
from device.ui.screens import DeviceStatus

log = logging.getLogger(__name__)

BATTERY_LOW = "Battery low — charge soon"
STORAGE_LOW = "Storage almost full — export to USB"
STORAGE_FULL = "Storage full — new scans can NOT be saved: export to USB"
DEFAULT_SCAN_BYTES = 256 * 1024
# The database row, its index entries and the WAL's share, per scan.
ROW_BYTES = 8 * 1024
# Scans measured before the measured size replaces the default.
MIN_SCANS_MEASURED = 3


@dataclass(frozen=True)
class PowerLimits:
    """When to warn and when to shut down.

    Attributes:
        low_percent: warn at or below this charge.
        critical_percent: shut down at or below this charge, when not charging.
        storage_low_scans: warn when fewer scans than this still fit.
        critical_readings: consecutive critical readings before shutting down (one
            reading can dip while the camera and model draw current).
    """

    low_percent: int = 15
    critical_percent: int = 5
    storage_low_scans: int = 50
    critical_readings: int = 2


def scan_bytes(data_dir: str | Path | None) -> int:
    """What one saved scan costs on the data folder: measured on its saved scans (photo
    and heatmap files under ``images/``) when there are enough, else the default."""
    if data_dir is None:
        return DEFAULT_SCAN_BYTES
    folder = Path(data_dir) / "images"
    try:
        sizes = [p.stat().st_size for p in folder.iterdir() if p.is_file()]
        scans = sum(1 for p in folder.iterdir() if p.suffix == ".image")
    except OSError:
        return DEFAULT_SCAN_BYTES
    if scans < MIN_SCANS_MEASURED:
        return DEFAULT_SCAN_BYTES
    return sum(sizes) // scans + ROW_BYTES


def scans_left(free: int, reserve: int, per_scan: int) -> int:
    """How many scans of ``per_scan`` bytes fit in ``free`` bytes above ``reserve``."""
    return max(0, free - reserve) // max(1, per_scan)


def storage_scans_left(store: Any) -> int | None:
    """How many more scans ``store`` can save, or None when it does not say (memory store)."""
    folder = getattr(store, "data_dir", None)
    reserve = getattr(store, "reserve_bytes", None)
    if folder is None or not isinstance(reserve, int):
        return None
    free = free_bytes(folder)
    if free is None:
        return None
    return scans_left(free, reserve, scan_bytes(folder))


def device_status(
    reading: BatteryReading | None, scans: int | None, limits: PowerLimits
) -> DeviceStatus:
    """What the live view shows for a battery reading and the scans that still fit."""
    percent = None if reading is None else round(reading.percent)
    battery_low = percent is not None and percent <= limits.low_percent and not reading.charging
    storage_low = scans is not None and scans < limits.storage_low_scans
    storage_alert = STORAGE_FULL if scans == 0 else STORAGE_LOW
    alerts = ((BATTERY_LOW,) if battery_low else ()) + ((storage_alert,) if storage_low else ())
    return DeviceStatus(
        battery_percent=percent,
        charging=None if reading is None else reading.charging,
        scans_left=scans,
        battery_low=battery_low,
        storage_low=storage_low,
        alerts=alerts,
    )


class PowerMonitor:
    """Reads the battery and the free storage every ``poll_s`` seconds.

    Args:
        battery: the battery seam, or None when none is read.
        store: the scan store (for its data folder and reserve).
        limits: when to warn and shut down.
        poll_s: seconds between readings.
        clock: monotonic clock in seconds (tests replace it).
    """

    def __init__(
        self,
        battery: Any,
        store: Any,
        limits: PowerLimits | None = None,
        poll_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.battery = battery
        self.store = store
        self.limits = limits or PowerLimits()
        self.poll_s = poll_s
        self._clock = clock
        self._next = 0.0
        self._critical_count = 0
        self._last: PowerStatus | None = None
        self._battery_failing = False

    def read_now(self) -> None:
        """Read at the next :meth:`poll` (after a simulated battery changed, or a save)."""
        self._next = 0.0

    def _reading(self) -> BatteryReading | None:
        if self.battery is None:
            return None
        try:
            reading = self.battery.read()
        except BatteryError as exc:
            if not self._battery_failing:
                log.warning("battery not read: %s", exc)
            self._battery_failing = True
            return None
        self._battery_failing = False
        return reading

    def poll(self) -> PowerStatus | None:
        """A new status when a reading is due and something changed, else None."""
        now = self._clock()
        if now < self._next:
            return None
        self._next = now + self.poll_s
        reading = self._reading()
        status = device_status(reading, storage_scans_left(self.store), self.limits)
        on_battery = reading is not None and not reading.charging
        if on_battery and reading.percent <= self.limits.critical_percent:
            self._critical_count += 1
        else:
            self._critical_count = 0
        critical = self._critical_count >= self.limits.critical_readings
        if critical:
            log.warning("battery at %.0f%%: shutting down", reading.percent)  # type: ignore[union-attr]
        event = PowerStatus(status, critical)
        if event == self._last:
            return None
        self._last = event
        return event

    def close(self) -> None:
        """Release the battery gauge."""
        if self.battery is not None:
            self.battery.close()
