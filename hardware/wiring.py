"""Generate the button pin map and wiring diagram from the device config.

The ``[buttons.pins]`` table of ``device/config/default.toml`` (button name -> BCM
GPIO number) is the single source of truth. This script turns it into
``hardware/pinmap.md`` and ``hardware/wiring.svg``, so neither can drift from what
the app uses::

    python hardware/wiring.py            # rewrite both files
    python hardware/wiring.py --check    # exit 1 if they are out of date (CI)
    python hardware/wiring.py --config other.toml --out-dir DIR

Only the standard library is used.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "device" / "config" / "default.toml"
OUT_DIR = Path(__file__).resolve().parent
PINMAP_NAME = "pinmap.md"
SVG_NAME = "wiring.svg"

# The 40-pin header, physical pin -> label; "GPIOn" pins carry their BCM number.
HEADER: dict[int, str] = {
    1: "3V3",
    2: "5V",
    3: "GPIO2",
    4: "5V",
    5: "GPIO3",
    6: "GND",
    7: "GPIO4",
    8: "GPIO14",
    9: "GND",
    10: "GPIO15",
    11: "GPIO17",
    12: "GPIO18",
    13: "GPIO27",
    14: "GND",
    15: "GPIO22",
    16: "GPIO23",
    17: "3V3",
    18: "GPIO24",
    19: "GPIO10",
    20: "GND",
    21: "GPIO9",
    22: "GPIO25",
    23: "GPIO11",
    24: "GPIO8",
    25: "GND",
    26: "GPIO7",
    27: "GPIO0",
    28: "GPIO1",
    29: "GPIO5",
    30: "GND",
    31: "GPIO6",
    32: "GPIO12",
    33: "GPIO13",
    34: "GND",
    35: "GPIO19",
    36: "GPIO16",
    37: "GPIO26",
    38: "GPIO20",
    39: "GND",
    40: "GPIO21",
}
BCM_TO_PHYSICAL: dict[int, int] = {
    int(label[4:]): pin for pin, label in HEADER.items() if label.startswith("GPIO")
}
GROUND_PINS = tuple(pin for pin, label in HEADER.items() if label == "GND")
# The HAT ID EEPROM pins are reserved by the firmware.
RESERVED = {0: "HAT ID EEPROM (ID_SD), reserved", 1: "HAT ID EEPROM (ID_SC), reserved"}
# Other uses of a pin that a builder must know about before wiring a button to it.
NOTES: dict[int, str] = {
    2: "I2C1 SDA: conflicts with a UPS HAT or sensor on I2C",
    3: "I2C1 SCL: conflicts with a UPS HAT on I2C; pulling it low also wakes a halted Pi",
    4: "1-Wire default pin",
    7: "SPI0 CE1: used by the touch controller of 3.5-inch SPI screens",
    8: "SPI0 CE0: used by 3.5-inch SPI screens",
    9: "SPI0 MISO: used by 3.5-inch SPI screens",
    10: "SPI0 MOSI: used by 3.5-inch SPI screens",
    11: "SPI0 SCLK: used by 3.5-inch SPI screens",
    14: "UART TX (serial console)",
    15: "UART RX (serial console)",
    17: "touch IRQ on most 3.5-inch SPI screens (Waveshare/Goodtft style)",
    18: "PWM0 / I2S clock: used by audio HATs",
    24: "LCD data/command on most 3.5-inch SPI screens",
    25: "LCD reset on most 3.5-inch SPI screens",
}


class PinMapError(ValueError):
    """The button table is not a usable pin map."""


@dataclass(frozen=True)
class Button:
    """One button: its config name, BCM number, header pin and the ground pin to use."""

    name: str
    bcm: int
    physical: int
    ground: int
    note: str


def load_pins(config: Path = DEFAULT_CONFIG) -> dict[str, int]:
    """Read ``[buttons.pins]`` from a config file, in file order."""
    with config.open("rb") as f:
        data = tomllib.load(f)
    try:
        pins = data["buttons"]["pins"]
    except (KeyError, TypeError):
        raise PinMapError(f"{config}: no [buttons.pins] table") from None
    return dict(pins)


def build(pins: dict[str, object]) -> list[Button]:
    """Validate the table and place every button on the header.

    Raises:
        PinMapError: a pin is not a BCM GPIO number, is reserved, or is used twice.
    """
    seen: dict[int, str] = {}
    buttons = []
    for name, bcm in pins.items():
        if isinstance(bcm, bool) or not isinstance(bcm, int):
            raise PinMapError(f"buttons.pins.{name} = {bcm!r}: expected a BCM GPIO number")
        if bcm in RESERVED:
            raise PinMapError(f"buttons.pins.{name} = {bcm}: GPIO{bcm} is the {RESERVED[bcm]}")
        if bcm not in BCM_TO_PHYSICAL:
            raise PinMapError(f"buttons.pins.{name} = {bcm}: not on the header (GPIO2 to GPIO27)")
        if bcm in seen:
            raise PinMapError(f"buttons.pins.{name} and .{seen[bcm]} both use GPIO{bcm}")
        seen[bcm] = name
        physical = BCM_TO_PHYSICAL[bcm]
        ground = min(GROUND_PINS, key=lambda g: (abs(g - physical), g))
        buttons.append(Button(name, bcm, physical, ground, NOTES.get(bcm, "")))
    return buttons


def render_markdown(buttons: list[Button], source: str) -> str:
    """The pin map as a Markdown page."""
    lines = [
        "# Button pin map",
        "",
        f"<!-- Generated by hardware/wiring.py from {source}. Do not edit: edit the config",
        "     and run `python hardware/wiring.py`. A test fails when this file is stale. -->",
        "",
        "Each button is a normally-open push button between its GPIO pin and ground.",
        "The app enables the internal pull-up, so no resistor is needed; a press reads low.",
        "Pin numbers are BCM (GPIO) numbers; *header pin* is the physical pin, 1 to 40.",
        "",
        "| button | BCM | header pin | ground pin | note |",
        "| --- | --- | --- | --- | --- |",
    ]
    for b in buttons:
        lines.append(f"| {b.name} | GPIO{b.bcm} | {b.physical} | {b.ground} | {b.note} |")
    lines += [
        "",
        "![wiring diagram](wiring.svg)",
        "",
        "Conflicts to check before wiring:",
        "",
    ]
    conflicts = [b for b in buttons if b.note]
    if conflicts:
        for b in conflicts:
            lines.append(f"- **{b.name}** on GPIO{b.bcm}: {b.note}.")
    else:
        lines.append("- none of the button pins has another use on the parts in the BOM.")
    lines += [
        "",
        "To move a button, change `[buttons.pins]` in `/etc/skinscan/config.toml` on the device",
        "(or in `device/config/default.toml` for every device) and regenerate this page.",
        "",
    ]
    return "\n".join(lines)


def render_svg(buttons: list[Button], source: str) -> str:
    """The wiring diagram: the 40-pin header and each button's wire to its pin."""
    by_physical = {b.physical: b for b in buttons}
    row_h, pad_gap, top = 34, 26, 86
    box_w, box_h = 190, 30
    width = 900
    header_x = width // 2 - pad_gap // 2  # centre of the odd-pin column
    height = top + 20 * row_h + 70
    colours = [
        "#d62728",
        "#1f77b4",
        "#2ca02c",
        "#9467bd",
        "#ff7f0e",
        "#8c564b",
        "#e377c2",
        "#17becf",
    ]
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, sans-serif" font-size="12">',
        f"<!-- Generated by hardware/wiring.py from {escape(source)}. Do not edit. -->",
        f'<rect width="{width}" height="{height}" fill="white"/>',
        '<text x="20" y="28" font-size="17" font-weight="bold">SkinScan buttons on the '
        "Raspberry Pi 40-pin header</text>",
        '<text x="20" y="50">Each button: one leg to its GPIO pin, the other to any GND pin. '
        "Internal pull-up, no resistor.</text>",
        '<text x="20" y="68">Header seen from above, pin 1 (square pad) at the top left, '
        "nearest the microSD end of the board.</text>",
        f'<rect x="{header_x - 20}" y="{top - 6}" width="{pad_gap + 40}" '
        f'height="{20 * row_h + 12}" rx="5" fill="#222"/>',
    ]
    for pin, label in HEADER.items():
        row, col = (pin - 1) // 2, (pin - 1) % 2
        cx = header_x + col * pad_gap
        cy = top + row_h // 2 + row * row_h
        if pin in by_physical:
            fill = "#ffd400"
        elif label == "GND":
            fill = "#000"
        elif label == "5V":
            fill = "#d00"
        elif label == "3V3":
            fill = "#f80"
        else:
            fill = "#999"
        if pin == 1:
            out.append(
                f'<rect x="{cx - 8}" y="{cy - 8}" width="16" height="16" fill="{fill}" '
                'stroke="#ddd"/>'
            )
        else:
            out.append(f'<circle cx="{cx}" cy="{cy}" r="8" fill="{fill}" stroke="#ddd"/>')
        weight = ' font-weight="bold"' if pin in by_physical else ""
        if col == 0:
            out.append(
                f'<text x="{cx - 30}" y="{cy + 4}" text-anchor="end"{weight}>{label} ({pin})</text>'
            )
        else:
            out.append(f'<text x="{cx + 30}" y="{cy + 4}"{weight}>({pin}) {label}</text>')
    for i, b in enumerate(buttons):
        colour = colours[i % len(colours)]
        row, col = (b.physical - 1) // 2, (b.physical - 1) % 2
        cx = header_x + col * pad_gap
        cy = top + row_h // 2 + row * row_h
        lane = cy - row_h // 2  # between two rows of labels
        if col == 0:
            box_x = 20
            out.append(
                f'<polyline points="{cx},{cy} {cx - 12},{lane} {box_x + box_w},{lane}" '
                f'fill="none" stroke="{colour}" stroke-width="2.5"/>'
            )
        else:
            box_x = width - 20 - box_w
            out.append(
                f'<polyline points="{cx},{cy} {cx + 12},{lane} {box_x},{lane}" '
                f'fill="none" stroke="{colour}" stroke-width="2.5"/>'
            )
        out.append(
            f'<rect x="{box_x}" y="{lane - box_h // 2}" width="{box_w}" height="{box_h}" '
            f'rx="6" fill="white" stroke="{colour}" stroke-width="2.5"/>'
        )
        out.append(
            f'<text x="{box_x + 10}" y="{lane - 1}" font-weight="bold">{escape(b.name)}</text>'
        )
        out.append(
            f'<text x="{box_x + 10}" y="{lane + 11}" font-size="10">GPIO{b.bcm} = pin '
            f"{b.physical}; GND e.g. pin {b.ground}</text>"
        )
    out.append(
        f'<text x="20" y="{height - 34}">Yellow: button inputs (BCM numbers from '
        "[buttons.pins]). Red 5V, orange 3V3, black GND.</text>"
    )
    out.append(
        f'<text x="20" y="{height - 16}">See pinmap.md for pins shared with SPI '
        "screens, UPS HATs and the UART.</text>"
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def generate(config: Path = DEFAULT_CONFIG) -> dict[str, str]:
    """File name -> content of every generated file."""
    try:
        source = str(config.resolve().relative_to(ROOT))
    except ValueError:
        source = str(config)
    buttons = build(load_pins(config))
    return {
        PINMAP_NAME: render_markdown(buttons, source),
        SVG_NAME: render_svg(buttons, source),
    }


def main(argv: list[str] | None = None) -> int:
    """Write or check the generated files."""
    parser = argparse.ArgumentParser(description="Generate pinmap.md and wiring.svg.")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    parser.add_argument("--check", action="store_true", help="fail if the files are stale")
    args = parser.parse_args(argv)
    try:
        files = generate(args.config)
    except (OSError, PinMapError, tomllib.TOMLDecodeError) as exc:
        print(f"wiring.py: error: {exc}", file=sys.stderr)
        return 2
    stale = []
    for name, content in files.items():
        path = args.out_dir / name
        current = path.read_text() if path.exists() else None
        if current == content:
            continue
        if args.check:
            stale.append(name)
        else:
            path.write_text(content)
            print(f"wrote {path}")
    if stale:
        print(
            f"wiring.py: stale: {', '.join(stale)}; run python hardware/wiring.py", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
