"""Battery and storage in the app: the readings become the live view's gauge and alerts,
a low battery and a nearly full store are warned about, and a critical battery shuts the
device down cleanly through the confirmed-shutdown path (simulated battery, real store)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
from app_fakes import FillableStore, analyzer_loader
from bundle_factory import make_bundle

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

from device.app.controller import initial_state, step
from device.app.events import Frame, PowerStatus
from device.app.power import (
    BATTERY_LOW,
    DEFAULT_SCAN_BYTES,
    ROW_BYTES,
    STORAGE_FULL,
    STORAGE_LOW,
    PowerLimits,
    PowerMonitor,
    device_status,
    scan_bytes,
    scans_left,
    storage_scans_left,
)
from device.app.runner import App
from device.app.systemd import Notifier
from device.hw.battery import BatteryError, BatteryReading, SimBattery
from device.hw.buttons_script import ScriptButtons, parse_script
from device.hw.camera_sim import SimCamera
from device.hw.display import PygameDisplay
from device.phantoms import make_phantom
from device.ui.screens import DeviceStatus, PreviewScreen, ShutdownScreen

LIMITS = PowerLimits(low_percent=15, critical_percent=5, storage_low_scans=50)


# ---- what the live view is told --------------------------------------------------------------


def test_status_warns_at_the_low_level_and_not_while_charging():
    assert device_status(BatteryReading(16.0), 500, LIMITS).alerts == ()
    low = device_status(BatteryReading(15.0, 3.6, False), 500, LIMITS)
    assert low.battery_low and low.alerts == (BATTERY_LOW,) and low.battery_percent == 15
    charging = device_status(BatteryReading(12.0, 3.9, True), 500, LIMITS)
    assert not charging.battery_low and charging.charging is True


def test_status_warns_before_the_storage_is_full():
    assert device_status(None, 50, LIMITS).alerts == ()
    full_soon = device_status(None, 49, LIMITS)
    assert full_soon.storage_low and full_soon.alerts == (STORAGE_LOW,)
    assert full_soon.battery_percent is None
    both = device_status(BatteryReading(4.0), 1, LIMITS)
    assert both.alerts == (BATTERY_LOW, STORAGE_LOW)
    assert device_status(None, 0, LIMITS).alerts == (STORAGE_FULL,)


def test_scans_left_counts_only_the_space_above_the_reserve():
    assert scans_left(free=10_000, reserve=4_000, per_scan=1_000) == 6
    assert scans_left(free=3_000, reserve=4_000, per_scan=1_000) == 0


def test_scan_size_is_measured_on_the_saved_scans_once_there_are_a_few(tmp_path):
    assert scan_bytes(None) == DEFAULT_SCAN_BYTES
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        (images / f"{i}.image").write_bytes(b"x" * 100_000)
        (images / f"{i}.heatmap").write_bytes(b"x" * 50_000)
    assert scan_bytes(tmp_path) == DEFAULT_SCAN_BYTES  # two scans are too few
    (images / "2.image").write_bytes(b"x" * 100_000)
    (images / "2.heatmap").write_bytes(b"x" * 50_000)
    assert scan_bytes(tmp_path) == 150_000 + ROW_BYTES


def test_a_real_store_says_how_many_scans_fit(tmp_path):
    from device.records.space import free_bytes
    from device.records.store import SqliteScanStore

    with SqliteScanStore(tmp_path / "data") as store:
        left = storage_scans_left(store)
        expected = (free_bytes(store.data_dir) - store.reserve_bytes) // DEFAULT_SCAN_BYTES
        assert left is not None and abs(left - expected) <= 2  # other writers on the disk
    assert storage_scans_left(FillableStore()) is None  # a memory store does not say


# ---- the monitor ---------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Flaky:
    """A gauge that fails on cue."""

    name = "flaky"

    def __init__(self, percent: float) -> None:
        self.percent = percent
        self.fail = False
        self.closed = False

    def read(self) -> BatteryReading:
        if self.fail:
            raise BatteryError("no answer")
        return BatteryReading(self.percent, 3.7, None)

    def close(self) -> None:
        self.closed = True


def test_monitor_reads_when_due_and_reports_only_changes():
    clock = Clock()
    battery = Flaky(60.0)
    monitor = PowerMonitor(battery, FillableStore(), LIMITS, poll_s=10, clock=clock)
    first = monitor.poll()
    assert first is not None and first.status.battery_percent == 60 and not first.critical
    clock.now += 5
    battery.percent = 40.0
    assert monitor.poll() is None  # not due yet
    clock.now += 5
    assert monitor.poll().status.battery_percent == 40
    clock.now += 10
    assert monitor.poll() is None  # due, but nothing changed
    battery.fail = True
    clock.now += 10
    failed = monitor.poll()
    assert failed is not None and failed.status.battery_percent is None and not failed.critical
    monitor.close()
    assert battery.closed


def test_monitor_shuts_down_after_two_critical_readings_on_battery_only():
    clock = Clock()
    battery = SimBattery(4.0, clock=clock)
    monitor = PowerMonitor(battery, FillableStore(), LIMITS, poll_s=10, clock=clock)
    assert not monitor.poll().critical  # one low reading can be a dip under load
    clock.now += 10
    assert monitor.poll().critical
    battery.inject("battery-charge")  # plugged in: no shutdown, even at 4 %
    clock.now += 10
    event = monitor.poll()
    assert event is not None and not event.critical and event.status.charging is True


# ---- the controller ------------------------------------------------------------------------------


def live_state():
    frame = Frame(make_phantom(1).image, None, True, None, 30.0)
    state, _ = step(initial_state(), frame)
    return state


def test_the_live_view_carries_the_status():
    status = DeviceStatus(62, False, 480)
    state, screen = step(live_state(), PowerStatus(status))
    assert isinstance(screen, PreviewScreen) and screen.status == status
    assert state.mode == "preview"


@pytest.mark.parametrize("poweroff", [True, False])
def test_a_critical_battery_takes_the_shutdown_path_from_any_screen(poweroff):
    state = replace(live_state(), mode="history", poweroff=poweroff)
    status = DeviceStatus(3, False, 480, battery_low=True)
    state, screen = step(state, PowerStatus(status, critical=True))
    assert state.mode == "exit"
    assert [type(c).__name__ for c in state.commands] == ["PowerOff" if poweroff else "Exit"]
    assert isinstance(screen, ShutdownScreen) and screen.reason == "battery"
    assert screen.snapshot_key == "shutdown-battery"


# ---- the whole app -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundle") / "bundle")


def make_app(tmp_path, script, bundle_dir, battery, store=None) -> App:
    return App(
        camera=SimCamera(preview_size=(640, 480)),
        buttons=ScriptButtons(parse_script(script)),
        display=PygameDisplay("headless", (480, 320), tmp_path / "screens"),
        store=store if store is not None else FillableStore(),
        load_analyzer=analyzer_loader(bundle_dir),
        max_fps=0,
        notifier=Notifier(environ={}),
        keep_screens=1000,
        battery=battery,
        power_limits=LIMITS,
        power_poll_s=0.05,
    )


def test_app_warns_then_shuts_down_cleanly_on_a_critical_battery(tmp_path, bundle_dir):
    from device.records.store import SqliteScanStore

    store = SqliteScanStore(tmp_path / "data")
    battery = SimBattery(14.0)
    script = "wait 0.3, fault battery-critical, wait 2, capture, wait 2"
    app = make_app(tmp_path, script, bundle_dir, battery, store)
    app.state = replace(app.state, poweroff=True)
    commands: list[str] = []

    def run_command(command, check=False):
        commands.append(" ".join(command))

        class Done:
            returncode = 0

        return Done()

    app.run_command = run_command
    assert app.run() == 0
    previews = [s for s in app.screens_shown if isinstance(s, PreviewScreen) and s.status]
    assert previews and previews[0].status.alerts == (BATTERY_LOW,)
    assert previews[0].status.scans_left is not None and previews[0].status.scans_left > 0
    assert isinstance(app.screens_shown[-1], ShutdownScreen)
    assert app.screens_shown[-1].reason == "battery"
    assert app.stop_reason == "battery empty"
    assert commands == ["systemctl poweroff"]
    assert (tmp_path / "screens").is_dir()
    assert any("shutdown-battery" in p.name for p in (tmp_path / "screens").iterdir())


def test_app_without_a_battery_shows_no_gauge_and_keeps_running(tmp_path, bundle_dir):
    app = make_app(tmp_path, "wait 0.3", bundle_dir, battery=None)
    app.run()
    previews = [s for s in app.screens_shown if isinstance(s, PreviewScreen)]
    assert previews and all(s.status is None or s.status.battery_percent is None for s in previews)
    assert app.stop_reason == "script finished"
