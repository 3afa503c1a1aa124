"""The battery seam: the MAX17048 fuel gauge's registers read from a fake I2C bus, the
simulated battery, and which battery a configuration gets."""

from __future__ import annotations

import subprocess
import sys

import pytest

from device.hw import battery as battery_module
from device.hw.battery import BatteryError, SimBattery, make_battery
from device.hw.battery_max17048 import Max17048Gauge, signed, word

ADDRESS = 0x36


class FakeBus:
    """An I2C bus with one MAX17048 on it: register -> 16-bit value, sent MSB first."""

    def __init__(self, registers: dict[int, int], fail: bool = False) -> None:
        self.registers = registers
        self.fail = fail
        self.reads: list[tuple[int, int, int]] = []
        self.closed = False

    def read_i2c_block_data(self, address: int, register: int, length: int) -> list[int]:
        self.reads.append((address, register, length))
        if self.fail or address != ADDRESS:
            raise OSError(121, "Remote I/O error")
        value = self.registers.get(register, 0xFFFF)
        return [value >> 8, value & 0xFF]

    def close(self) -> None:
        self.closed = True


def gauge(registers: dict[int, int], **kwargs) -> tuple[Max17048Gauge, FakeBus]:
    bus = FakeBus(registers, **kwargs)
    return Max17048Gauge(bus=1, address=ADDRESS, open_bus=lambda number: bus), bus


# Register values as the datasheet's scales give them:
# VCELL 0xC800 = 51200 x 78.125 uV = 4.000 V; SOC 0x3A80 = 58.5 %; VERSION 0x0012 (MAX17048);
# CRATE 0xFFCE = -50 x 0.208 %/h = -10.4 %/h (discharging).
DISCHARGING = {0x02: 0xC800, 0x04: 0x3A80, 0x08: 0x0012, 0x16: 0xFFCE}


def test_reads_charge_voltage_and_discharging_from_the_registers():
    meter, bus = gauge(DISCHARGING)
    reading = meter.read()
    assert reading.percent == pytest.approx(58.5)
    assert reading.voltage == pytest.approx(4.000)
    assert reading.charging is False
    assert all(address == ADDRESS and length == 2 for address, _, length in bus.reads)
    assert {register for _, register, _ in bus.reads} == {0x02, 0x04, 0x08, 0x16}


def test_a_positive_rate_is_charging_and_a_tiny_one_is_unknown():
    meter, _ = gauge({**DISCHARGING, 0x16: 0x0019})  # +25 x 0.208 = +5.2 %/h
    assert meter.read().charging is True
    meter, _ = gauge({**DISCHARGING, 0x16: 0x0002})  # +0.4 %/h: full on the charger, or idle
    assert meter.read().charging is None


def test_a_max17040_has_no_rate_register_and_reads_the_same_scales():
    # MAX17040: 12-bit VCELL at 1.25 mV in the top bits: 3300 x 1.25 mV = 4.125 V.
    meter, bus = gauge({0x02: 3300 << 4, 0x04: 0x1200, 0x08: 0x0003})
    reading = meter.read()
    assert reading.voltage == pytest.approx(4.125)
    assert reading.percent == pytest.approx(18.0)
    assert reading.charging is None
    assert 0x16 not in {register for _, register, _ in bus.reads}


def test_charge_above_100_before_the_gauge_has_learnt_the_cell_reads_100():
    meter, _ = gauge({**DISCHARGING, 0x04: 0x6E00})  # 110 %
    assert meter.read().percent == 100.0


def test_no_answer_or_no_cell_is_a_battery_error():
    meter, _ = gauge(DISCHARGING, fail=True)
    with pytest.raises(BatteryError, match="no answer from the battery gauge at 0x36"):
        meter.read()
    meter, _ = gauge({**DISCHARGING, 0x02: 0x0000})
    with pytest.raises(BatteryError, match=r"reads 0\.00 V"):
        meter.read()


def test_close_releases_the_bus_and_a_read_opens_it_again():
    meter, bus = gauge(DISCHARGING)
    meter.read()
    meter.close()
    assert bus.closed
    meter.close()  # twice is fine
    bus.closed = False
    assert meter.read().percent == pytest.approx(58.5)


def test_register_helpers():
    assert word([0x12, 0x34]) == 0x1234
    assert signed(0xFFFF) == -1 and signed(0x7FFF) == 0x7FFF


def test_importing_the_backend_does_not_import_smbus2():
    code = (
        "import sys, device.hw.battery, device.hw.battery_max17048; print('smbus2' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_opening_without_smbus2_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "smbus2", None)  # makes the import fail
    meter = Max17048Gauge()
    with pytest.raises(BatteryError, match="python3-smbus2"):
        meter.read()


# ---- the simulated battery ----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sim_battery_drains_and_charges_with_time():
    clock = Clock()
    sim = SimBattery(50.0, drain_per_min=2.0, clock=clock)
    clock.now += 150  # 2.5 minutes
    assert sim.read().percent == pytest.approx(45.0)
    sim.inject("battery-charge")
    clock.now += 60
    reading = sim.read()
    assert reading.percent == pytest.approx(47.0) and reading.charging is True
    clock.now += 3600
    assert sim.read().percent == 100.0


def test_sim_battery_faults():
    sim = SimBattery(50.0, clock=Clock())
    sim.inject("battery-drain")
    assert sim.read().percent == pytest.approx(40.0)
    sim.inject("battery-critical")
    assert sim.read().percent == pytest.approx(3.0)
    with pytest.raises(BatteryError):
        sim.inject("battery-explode")


# ---- which battery a configuration gets ---------------------------------------------------------


def test_auto_is_the_simulated_battery_in_the_simulator_and_none_on_a_laptop():
    assert isinstance(make_battery("auto", backend="sim", sim_percent=33), SimBattery)
    assert make_battery("auto", backend="sim", sim_percent=33).read().percent == 33
    assert make_battery("auto", backend="usb") is None
    assert make_battery("none", backend="pi") is None


def test_auto_on_the_pi_reads_the_gauge_only_when_the_i2c_pins_are_free(monkeypatch, tmp_path):
    device_file = tmp_path / "i2c-1"
    monkeypatch.setattr(battery_module, "i2c_device", lambda bus: device_file)
    assert make_battery("auto", backend="pi", button_pins=(5, 27, 22, 23, 6, 26)) is None
    device_file.touch()
    found = make_battery("auto", backend="pi", button_pins=(5, 27, 22, 23, 6, 26))
    assert isinstance(found, Max17048Gauge)
    # The default power button on GPIO 3 is the I2C clock: no gauge then.
    assert make_battery("auto", backend="pi", button_pins=(5, 27, 22, 23, 6, 3)) is None


def test_explicit_gauge_and_unknown_gauge():
    found = make_battery("max17048", backend="sim", i2c_bus=3, i2c_address=0x37)
    assert isinstance(found, Max17048Gauge)
    assert (found.bus_number, found.address) == (3, 0x37)
    with pytest.raises(BatteryError, match="unknown battery gauge"):
        make_battery("ina219", backend="pi")


# ---- the [battery] configuration ----------------------------------------------------------------


def test_default_config_has_the_battery_section():
    from device.config import load_config

    battery = load_config().battery
    assert (battery.gauge, battery.i2c_address, battery.low_percent) == ("auto", 0x36, 15)
    assert battery.critical_percent < battery.low_percent


def test_config_refuses_the_gauge_with_a_button_on_the_i2c_pins():
    from device.config import validate
    from device.errors import ConfigError

    with pytest.raises(ConfigError, match="power = 3"):
        validate({"battery": {"gauge": "max17048"}})
    pins = {"power": 26}
    assert validate({"battery": {"gauge": "max17048"}, "buttons": {"pins": pins}})
    with pytest.raises(ConfigError, match="critical_percent"):
        validate({"battery": {"low_percent": 5, "critical_percent": 5}})


# ---- the UPS's mains pin ----------------------------------------------------------------------


def test_the_mains_pin_says_charging_whatever_the_gauge_rate_says():
    from gpiozero.pins.mock import MockFactory

    from device.hw.battery_mains import MainsSense

    factory = MockFactory()
    mains = MainsSense(6, pin_factory=factory)
    # A MAX17040 (no rate register): without the pin it could not tell.
    meter, bus = gauge({0x02: 3300 << 4, 0x04: 0x0400, 0x08: 0x0003})
    meter.mains = mains
    factory.pin(6).drive_high()
    assert meter.read().charging is True
    factory.pin(6).drive_low()
    assert meter.read().charging is False
    meter.close()
    assert bus.closed and mains._device is None


def test_a_mains_pin_that_cannot_be_opened_is_a_battery_error():
    from gpiozero.pins.mock import MockFactory

    from device.hw.battery_mains import MainsSense

    factory = MockFactory()
    factory.pin(6)  # exists
    busy = MainsSense(6, pin_factory=factory)
    busy.present()
    with pytest.raises(BatteryError, match="GPIO6"):
        MainsSense(6, pin_factory=factory).present()  # already in use
    busy.close()


def test_make_battery_passes_the_mains_pin():
    found = make_battery("max17048", backend="pi", mains_pin=6)
    assert found.mains is not None and found.mains.pin == 6
    assert make_battery("max17048", backend="pi").mains is None


def test_config_refuses_a_mains_pin_that_a_button_or_the_i2c_bus_uses():
    from device.config import validate
    from device.errors import ConfigError

    with pytest.raises(ConfigError, match="button back"):
        validate({"battery": {"mains_pin": 6}})
    with pytest.raises(ConfigError, match="I2C bus"):
        validate({"battery": {"mains_pin": 3}, "buttons": {"pins": {"power": 26}}})
    moved = {"power": 26, "back": 13}
    config = validate(
        {"battery": {"gauge": "max17048", "mains_pin": 6}, "buttons": {"pins": moved}}
    )
    assert config.battery.mains_pin == 6
