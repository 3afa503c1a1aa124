"""Device configuration: TOML files validated by pydantic models.

The shipped defaults live in ``device/config/default.toml``. One override file is
merged over them: the file given with ``--config``, or else
``/etc/skinscan/config.toml`` when it exists. The environment variable
``SKINSCAN_BACKEND`` overrides ``backend``; a command-line flag overrides both.

Every model forbids unknown keys, so a typo is an error that names the key's
dotted path (and its line, when it can be found), and every bounded value
names its allowed range.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from device.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

log = logging.getLogger(__name__)

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent / "config" / "default.toml"
SYSTEM_CONFIG_PATH = Path("/etc/skinscan/config.toml")
BACKEND_ENV = "SKINSCAN_BACKEND"
BACKENDS = ("auto", "pi", "usb", "sim")

Backend = Literal["auto", "pi", "usb", "sim"]
# Strict types: TOML has real booleans, integers and floats, and `max_fps = true` or
# `usb_index = "0"` is a mistake to report, not a value to coerce. A whole number is
# still fine where a decimal is expected.
Size = tuple[StrictInt, StrictInt]

# What a list-valued key needs, said in words when its shape or type is wrong
# (pydantic would say only "Field required" for a missing second element).
SHAPE_HINTS = {
    "camera.colour_gains": "needs two numbers [red, blue], e.g. [1.9, 1.7]",
    "camera.preview_size": "needs two whole numbers [width, height], e.g. [640, 480]",
    "camera.still_size": "needs two whole numbers [width, height], e.g. [1024, 768]",
    "display.size": "needs two whole numbers [width, height], e.g. [800, 480]",
    "system.shutdown_command": 'needs a list of strings, e.g. ["systemctl", "poweroff"]',
    "model.trusted_keys": 'needs a list of paths, e.g. ["/etc/skinscan/bundle-keys"]',
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_size(value: Size, low: int, high: int) -> Size:
    width, height = value
    if not (low <= width <= high and low <= height <= high):
        raise ValueError(f"each side must be between {low} and {high} pixels")
    return value


class ModelConfig(_Section):
    """Which model bundle to load, and which signed bundles may be installed.

    Attributes:
        bundle: bundle folder; empty means the shipped ``device/models/default``. A
            bundle installed from USB (``skinscan bundle install``, kept in
            ``DATA_DIR/bundles``) runs in its place.
        trusted_keys: bundle signing public keys (``signing.pub``) this scanner trusts,
            or folders whose ``*.pub`` files it trusts; a folder that does not exist
            holds none. Never an export key (``clinic.pub``).
    """

    bundle: StrictStr = ""
    trusted_keys: tuple[StrictStr, ...] = ("/etc/skinscan/bundle-keys",)

    @field_validator("trusted_keys")
    @classmethod
    def _trusted_keys(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not entry.strip() for entry in value):
            raise ValueError("each entry must name a .pub file or a folder, not be empty")
        return value


class CameraConfig(_Section):
    """Camera settings shared by all camera backends.

    Attributes:
        preview_size: live-view frame size (width, height).
        still_size: analysis still size (width, height).
        usb_index: OpenCV device index of the USB webcam.
        sim_source: folder of images or a video file for the simulated camera;
            empty means synthetic phantoms.
        retry_s: seconds between attempts to reopen a missing camera.
        field_width_mm: the width in mm that the full still covers at the dermoscope's
            contact distance (measured once with a ruler); 0: unknown, no lesion sizes.
        colour_gains: fixed white balance (red gain, blue gain) for the Pi camera under
            the LED ring, measured once on a grey card; None keeps auto white balance,
            which drifts from frame to frame with what is in view.
    """

    preview_size: Size = (640, 480)
    still_size: Size = (1024, 768)
    usb_index: StrictInt = Field(0, ge=0, le=63)
    sim_source: StrictStr = ""
    retry_s: StrictFloat = Field(2.0, ge=0.1, le=60.0)
    colour_gains: tuple[StrictFloat, StrictFloat] | None = None
    field_width_mm: StrictFloat = Field(0.0, ge=0.0, le=200.0)

    @field_validator("colour_gains")
    @classmethod
    def _colour_gains(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not all(0.0 < gain <= 32.0 for gain in value):
            raise ValueError(f"gains must be in (0, 32], got {list(value)}")
        return value

    @field_validator("preview_size")
    @classmethod
    def _preview_size(cls, value: Size) -> Size:
        return _check_size(value, 64, 4096)

    @field_validator("still_size")
    @classmethod
    def _still_size(cls, value: Size) -> Size:
        return _check_size(value, 64, 9152)


class PinMap(_Section):
    """Button name -> BCM GPIO number; each button pulls its pin to ground."""

    capture: StrictInt = Field(5, ge=2, le=27)
    toggle: StrictInt = Field(27, ge=2, le=27)
    next: StrictInt = Field(22, ge=2, le=27)
    save: StrictInt = Field(23, ge=2, le=27)
    back: StrictInt = Field(6, ge=2, le=27)
    power: StrictInt = Field(3, ge=2, le=27)

    @model_validator(mode="after")
    def _distinct(self) -> PinMap:
        seen: dict[int, str] = {}
        for name, pin in self.items():
            if pin in seen:
                raise ValueError(f"{seen[pin]} and {name} share BCM pin {pin}")
            seen[pin] = name
        return self

    def items(self) -> list[tuple[str, int]]:
        """The configured (button name, BCM pin) pairs, in declaration order."""
        return list(self.model_dump().items())


class ButtonsConfig(_Section):
    """GPIO buttons: the pin map is the single source of truth for the wiring.

    Attributes:
        hold_time_s: how long the power button is held to ask for shutdown.
        bounce_time_s: presses closer together than this are contact bounce.
        pins: button name -> BCM GPIO number.
    """

    hold_time_s: StrictFloat = Field(2.0, ge=0.5, le=10.0)
    bounce_time_s: StrictFloat = Field(0.05, ge=0.0, le=0.5)
    pins: PinMap = PinMap()


class DisplayConfig(_Section):
    """Screen settings.

    Attributes:
        size: window size (width, height) on a laptop and in headless mode.
        fullscreen: "auto" (full screen with the pi backend), "yes" or "no".
        max_fps: upper bound on the live-view frame rate.
        heatmap_alpha: heatmap opacity over the photo.
    """

    size: Size = (800, 480)
    fullscreen: Literal["auto", "yes", "no"] = "auto"
    max_fps: StrictInt = Field(30, ge=1, le=120)
    heatmap_alpha: StrictFloat = Field(0.5, ge=0.1, le=0.9)

    @field_validator("size")
    @classmethod
    def _size(cls, value: Size) -> Size:
        return _check_size(value, 240, 4096)


class QualityConfig(_Section):
    """The capture quality gate; see :class:`device.imaging.quality.QualityThresholds`."""

    min_sharpness: StrictFloat = Field(8.0, ge=0.0, le=10000.0)
    min_reblur_loss: StrictFloat = Field(0.40, ge=0.0, le=1.0)
    max_dark_fraction: StrictFloat = Field(0.35, ge=0.0, le=1.0)
    max_bright_fraction: StrictFloat = Field(0.10, ge=0.0, le=1.0)
    min_lesion_contrast: StrictFloat = Field(0.05, ge=0.0, le=1.0)
    min_colourfulness: StrictFloat = Field(4.5, ge=0.0, le=100.0)
    max_ink_fraction: StrictFloat = Field(0.01, ge=0.0, le=1.0)
    min_lesion_colour_distance: StrictFloat = Field(3.0, ge=0.0, le=200.0)
    faint_lesion_colour_distance: StrictFloat = Field(7.5, ge=0.0, le=200.0)


class RecordsConfig(_Section):
    """Where scans are saved (see :mod:`device.records.paths`).

    Attributes:
        store: "sqlite" (encrypted, power-cut safe) or "memory" (lost on exit).
        data_dir: data folder; empty means the platform default.
    """

    store: Literal["sqlite", "memory"] = "sqlite"
    data_dir: StrictStr = ""


class SystemConfig(_Section):
    """What the device does on shutdown, and its identity.

    Attributes:
        shutdown: "auto" (poweroff with the pi backend, else exit), "poweroff" or "exit".
        shutdown_command: the power-off command line.
        device_id: id written into every record; empty = the record store's own id.
    """

    shutdown: Literal["auto", "poweroff", "exit"] = "auto"
    shutdown_command: tuple[StrictStr, ...] = ("systemctl", "poweroff")
    device_id: StrictStr = ""

    @field_validator("shutdown_command")
    @classmethod
    def _command(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or not value[0]:
            raise ValueError('must name a command, e.g. ["systemctl", "poweroff"]')
        return value


class BatteryConfig(_Section):
    """The UPS battery and the warnings about running out (see :mod:`device.hw.battery`).

    Attributes:
        gauge: "auto" (simulated in the simulator; on the Pi the I2C fuel gauge when no
            button uses GPIO 2 or 3), "none", "sim" or "max17048".
        i2c_bus: the gauge's I2C bus (1 on the 40-pin header).
        i2c_address: the gauge's 7-bit address.
        mains_pin: the BCM pin the UPS drives high while on mains (GPIO 6 on the
            recommended boards), or -1 for none; read, it tells charging from not and
            the device never shuts itself down while plugged in.
        poll_s: seconds between readings of the battery and the free storage.
        low_percent: at or below this charge the live view warns "Battery low".
        critical_percent: at or below this charge, on battery, the device shuts down.
        storage_low_scans: with room for fewer scans than this the live view warns.
        sim_percent: the simulated battery's charge at start.
        sim_drain_per_min: percentage points the simulated battery loses each minute.
    """

    gauge: Literal["auto", "none", "sim", "max17048"] = "auto"
    i2c_bus: StrictInt = Field(1, ge=0, le=63)
    i2c_address: StrictInt = Field(0x36, ge=0x08, le=0x77)
    mains_pin: StrictInt = Field(-1, ge=-1, le=27)
    poll_s: StrictFloat = Field(10.0, ge=0.5, le=600.0)
    low_percent: StrictInt = Field(15, ge=1, le=90)
    critical_percent: StrictInt = Field(5, ge=0, le=50)
    storage_low_scans: StrictInt = Field(50, ge=0, le=100000)
    sim_percent: StrictFloat = Field(80.0, ge=0.0, le=100.0)
    sim_drain_per_min: StrictFloat = Field(0.0, ge=0.0, le=100.0)

    @model_validator(mode="after")
    def _levels(self) -> BatteryConfig:
        if self.critical_percent >= self.low_percent:
            raise ValueError(
                f"battery.critical_percent ({self.critical_percent}) must be below "
                f"battery.low_percent ({self.low_percent})"
            )
        return self


class DeviceConfig(_Section):
    """The whole device configuration."""

    backend: Backend = "auto"
    model: ModelConfig = ModelConfig()
    camera: CameraConfig = CameraConfig()
    buttons: ButtonsConfig = ButtonsConfig()
    display: DisplayConfig = DisplayConfig()
    quality: QualityConfig = QualityConfig()
    records: RecordsConfig = RecordsConfig()
    system: SystemConfig = SystemConfig()
    battery: BatteryConfig = BatteryConfig()

    @model_validator(mode="after")
    def _gauge_pins(self) -> DeviceConfig:
        """A button on GPIO 2 or 3 would take the I2C pins from the battery gauge."""
        if self.battery.gauge == "max17048":
            clash = [f"{n} = {p}" for n, p in self.buttons.pins.items() if p in (2, 3)]
            if clash:
                raise ValueError(
                    "battery.gauge = max17048 reads the UPS over I2C on GPIO 2 and 3, but "
                    f"buttons.pins has {', '.join(clash)}: move it to a free pin "
                    "(hardware/pinmap.md)"
                )
        mains = self.battery.mains_pin
        if mains >= 0:
            taken = [n for n, p in self.buttons.pins.items() if p == mains]
            if taken or mains in (2, 3):
                what = f"button {taken[0]}" if taken else "the I2C bus"
                raise ValueError(
                    f"battery.mains_pin = {mains} is also used by {what}: the UPS drives that "
                    "pin, so move the button (hardware/pinmap.md) or set mains_pin = -1"
                )
        return self

    def quality_thresholds(self) -> Any:
        """The quality section as the imaging module's ``QualityThresholds``."""
        from device.imaging.quality import QualityThresholds

        return QualityThresholds(**self.quality.model_dump())


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``override`` merged in; tables merge key by key."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_toml(path: Path) -> dict[str, Any]:
    """Read one TOML file; raises ConfigError naming the file on any problem."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read ({exc.strerror or exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML: {exc}") from exc


def _find_line(path: Path | None, dotted: str) -> int | None:
    """Best-effort line number of a dotted key in a TOML file, for error messages."""
    if path is None or not path.is_file():
        return None
    parts = dotted.split(".")
    key, table = parts[-1], ".".join(parts[:-1])
    current = ""
    key_re = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=")
    table_re = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]")
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        match = table_re.match(line)
        if match:
            current = match.group(1)
            if current == dotted:
                return number
            continue
        if current == table and key_re.match(line):
            return number
    return None


def _bounds_text(constraint: Any) -> str:
    pieces = []
    for attr, symbol in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
        value = getattr(constraint, attr, None)
        if value is not None:
            pieces.append(f"{symbol} {value}")
    return " and ".join(pieces)


def _allowed(loc: tuple[Any, ...]) -> str:
    """Describe the allowed values of the field at ``loc``, from the models' own metadata."""
    model: Any = DeviceConfig
    field = None
    for part in loc:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            break
        field = model.model_fields.get(str(part))
        if field is None:
            return ""
        model = field.annotation
    if field is None:
        return ""
    bounds = " and ".join(filter(None, (_bounds_text(m) for m in field.metadata)))
    if bounds:
        return f"allowed: {bounds}"
    args = getattr(field.annotation, "__args__", None)
    if args and all(isinstance(a, str) for a in args):
        return "allowed: " + ", ".join(repr(a) for a in args)
    return ""


def _format_errors(exc: ValidationError, source: Path | None) -> str:
    lines: list[str] = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        # Drop pydantic's positional suffixes (tuple indices, validator names).
        dotted = ".".join(str(p) for p in loc if not isinstance(p, int))
        line = _find_line(source, dotted)
        where = f" ({source}, line {line})" if line else (f" ({source})" if source else "")
        if error["type"] == "extra_forbidden":
            lines.append(f"unknown key '{dotted}'{where}")
            continue
        if dotted in SHAPE_HINTS and error["type"] != "value_error":
            # One line per key, with the key's whole value, not one per element.
            text = f"{dotted} {SHAPE_HINTS[dotted]}{where}"
            if text not in lines:
                lines.append(text)
            continue
        message = str(error["msg"]).removeprefix("Value error, ")
        allowed = "" if error["type"] == "literal_error" else _allowed(loc)
        value = error.get("input")
        shown = f" = {value!r}" if not isinstance(value, dict) else ""
        lines.append(
            f"invalid value for '{dotted}'{shown}{where}: {message}"
            + (f" ({allowed})" if allowed and allowed not in message else "")
        )
    return "; ".join(lines)


def validate(data: Mapping[str, Any], source: Path | None = None) -> DeviceConfig:
    """Validate a merged config mapping; raises ConfigError naming every bad key."""
    try:
        return DeviceConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError("config: " + _format_errors(exc, source)) from None


def load_config(
    path: str | Path | None = None,
    *,
    backend: str | None = None,
    environ: Mapping[str, str] | None = None,
    system_path: Path = SYSTEM_CONFIG_PATH,
) -> DeviceConfig:
    """Load the shipped defaults, one override file, and the backend overrides.

    Args:
        path: an override file (``--config``); when None, ``system_path`` is used
            if it exists.
        backend: a backend from the command line; beats the environment and files.
        environ: the environment to read ``SKINSCAN_BACKEND`` from (default os.environ).
        system_path: the system-wide override file.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: a file is missing or malformed, a key is unknown or a value invalid.
    """
    environ = os.environ if environ is None else environ
    data = read_toml(DEFAULT_CONFIG_PATH)
    validate(data, DEFAULT_CONFIG_PATH)
    source: Path | None = None
    if path is not None:
        source = Path(path)
    elif system_path.is_file():
        source = system_path
    if source is not None:
        log.info("config: overriding defaults with %s", source)
        data = merge(data, read_toml(source))
    env_backend = environ.get(BACKEND_ENV, "").strip()
    if env_backend:
        if env_backend not in BACKENDS:
            raise ConfigError(
                f"config: {BACKEND_ENV}={env_backend!r} is not a backend "
                f"(allowed: {', '.join(BACKENDS)})"
            )
        data["backend"] = env_backend
    if backend:
        data["backend"] = backend
    return validate(data, source)


def is_raspberry_pi(model_path: Path = Path("/proc/device-tree/model")) -> bool:
    """True when running on a Raspberry Pi (per the device tree)."""
    try:
        return "Raspberry Pi" in model_path.read_bytes().decode(errors="replace")
    except OSError:
        return False


def resolve_backend(config: DeviceConfig, on_pi: bool | None = None) -> str:
    """Turn ``backend = "auto"`` into "pi" on a Raspberry Pi and "sim" elsewhere."""
    if config.backend != "auto":
        return config.backend
    on_pi = is_raspberry_pi() if on_pi is None else on_pi
    return "pi" if on_pi else "sim"
