"""``skinscan run``: the device application, on a Pi or simulated on any machine.

With no arguments on a laptop it runs the simulator in a window (synthetic
phantoms, keyboard for buttons). With no screen it runs headless and says so.
On a Pi (``backend = "auto"`` or ``--backend pi``) it uses the camera, the GPIO
buttons and the panel through KMS/DRM.

Heavy imports (pygame, LiteRT, OpenCV) happen inside :func:`main`, so that
``skinscan --help`` stays fast and works without them.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    """Register ``skinscan run``'s options, and list the script verbs after them."""
    from device.hw.buttons_script import SCRIPT_HELP

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = SCRIPT_HELP
    parser.add_argument(
        "--backend",
        choices=("pi", "usb", "sim"),
        help="hardware: pi (camera, GPIO, KMS), usb (webcam), sim (simulated). "
        "Default: config `backend`, env SKINSCAN_BACKEND, else pi on a Pi and sim elsewhere",
    )
    parser.add_argument("--bundle", metavar="DIR", help="model bundle folder")
    parser.add_argument(
        "--images", metavar="DIR", help="simulated camera: a folder of images or a video file"
    )
    parser.add_argument(
        "--headless", action="store_true", help="no window: draw off screen (SDL dummy driver)"
    )
    parser.add_argument("--screenshots", metavar="DIR", help="write a PNG of every new screen")
    parser.add_argument(
        "--script",
        metavar="SEQ",
        help="scripted buttons, e.g. 'capture, wait 1.5, toggle, save, next' (or a file); "
        "the program ends when the script does. The verbs are listed below",
    )
    parser.add_argument("--frames", type=int, metavar="N", help="stop after N frames")
    parser.add_argument(
        "--usb",
        metavar="DIR",
        help="a folder that stands for a plugged-in USB stick (the menu's Export to USB, "
        "Free space and Update model use it); default: real sticks through udisks2 on a Pi",
    )
    parser.add_argument("--config", metavar="FILE", help="config file (default /etc/skinscan)")


def _display_mode(args: argparse.Namespace, backend: str, fullscreen: str) -> tuple[str, str]:
    """(mode, why) for the display, from the flags, backend and the presence of a desktop."""
    from device.hw.display import has_desktop

    if args.headless:
        return "headless", "--headless"
    if backend == "pi":
        if fullscreen == "no" and has_desktop():
            return "window", "config display.fullscreen = no"
        return "fullscreen", "pi backend"
    if not has_desktop():
        return "headless", "no display found (DISPLAY and WAYLAND_DISPLAY are unset)"
    return ("fullscreen" if fullscreen == "yes" else "window"), "desktop session"


def _open_display(mode: str, config: Any, screenshots: str | None) -> Any:
    from device.hw.display import DisplayError, PygameDisplay

    display = PygameDisplay(mode, config.display.size, screenshots)  # type: ignore[arg-type]
    try:
        display.open()
    except DisplayError as exc:
        if mode == "headless":
            raise
        print(f"skinscan run: {exc}; running headless instead", file=sys.stderr)
        display = PygameDisplay("headless", config.display.size, screenshots)
        display.open()
    return display


def _buttons(
    args: argparse.Namespace, backend: str, config: Any, display_mode: str, script: Any
) -> Any:
    from device.app.runner import NoButtons
    from device.hw.buttons import MultiButtons

    # The first source's labels are the ones printed on screen.
    sources: list[Any] = []
    if backend == "pi" and args.script is None:
        from device.hw.buttons_gpio import GpioButtons, GpioError

        try:
            gpio = GpioButtons(
                dict(config.buttons.pins.items()),
                hold_time_s=config.buttons.hold_time_s,
                bounce_time_s=config.buttons.bounce_time_s,
            )
            sources.append(gpio)
        except GpioError as exc:
            log.error("%s; using the keyboard", exc)
            print(f"skinscan run: {exc}; using the keyboard instead", file=sys.stderr)
    if display_mode != "headless":
        from device.hw.buttons_keys import KeyButtons

        sources.append(KeyButtons())
    if script is not None:
        from device.hw.buttons_script import ScriptButtons

        sources.append(ScriptButtons(script))
    if not sources:
        return NoButtons()
    return sources[0] if len(sources) == 1 else MultiButtons(sources)


def _store(config: Any) -> Any:
    from device.records.store import MemoryScanStore, open_store

    device_id = config.system.device_id or None
    if config.records.store == "memory":
        return MemoryScanStore(device_id=device_id or "memory")
    return open_store(configured_dir=config.records.data_dir or None, device_id=device_id)


def _battery(config: Any, backend: str) -> Any:
    """The UPS battery (or the simulated one) from config [battery]; None when none is read."""
    from device.hw.battery import make_battery

    battery = config.battery
    return make_battery(
        battery.gauge,
        backend=backend,
        i2c_bus=battery.i2c_bus,
        i2c_address=battery.i2c_address,
        button_pins=tuple(pin for _, pin in config.buttons.pins.items()),
        sim_percent=battery.sim_percent,
        sim_drain_per_min=battery.sim_drain_per_min,
        mains_pin=battery.mains_pin if battery.mains_pin >= 0 else None,
    )


def _power_limits(config: Any) -> Any:
    from device.app.power import PowerLimits

    battery = config.battery
    return PowerLimits(
        low_percent=battery.low_percent,
        critical_percent=battery.critical_percent,
        storage_low_scans=battery.storage_low_scans,
    )


def _usb(args: argparse.Namespace, backend: str) -> Any:
    """The USB-stick seam: ``--usb DIR``, else udisks2 on real hardware, else none."""
    from device.hw.usb_backends import make_usb

    if args.usb is not None:
        return make_usb("folder", args.usb)
    return make_usb("udisks" if backend in ("pi", "usb") else "none")


def _bundle_store(config: Any) -> Callable[[], Any]:
    """Opens the scanner's bundle store (DATA_DIR/bundles, the configured trusted keys) for
    the menu's Update model and Roll back model."""

    def open_store() -> Any:
        from device.bundles.settings import open_bundle_store

        return open_bundle_store(config)

    return open_store


def _analyzer_loader(bundle: str | None, config: Any = None) -> Callable[[], Any]:
    """``--bundle DIR`` as given; else (with ``config``) the bundle store's current bundle,
    falling back to the previous one, ``[model] bundle`` or the shipped one, with a notice
    (:class:`device.bundles.active.ActiveAnalyzerLoader`)."""
    if bundle is None and config is not None:
        from device.bundles.active import ActiveAnalyzerLoader

        return ActiveAnalyzerLoader(config)

    def load() -> Any:
        from device.runtime.analyzer import Analyzer

        return Analyzer.from_path(bundle or None)

    return load


def headless_hint(screenshots: str | None) -> str:
    """What a headless run with no script does, how to stop it, and where its screens go."""
    hint = "headless: no display and no --script; the app runs until Ctrl-C or SIGTERM"
    if screenshots:
        return f"{hint}; its screens are saved to {screenshots}"
    return f"{hint} (add --screenshots DIR to see its screens)"


def run_with_signals(app: Any, max_frames: int | None = None) -> int:
    """Run ``app`` with SIGTERM and SIGINT (Ctrl-C) turned into a clean stop."""

    def stop(signum: int, _frame: object) -> None:
        app.request_stop(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return app.run(max_frames=max_frames)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(args: argparse.Namespace) -> int:
    """Build the app from the config and flags, and run it until stopped."""
    from device.app.runner import App
    from device.config import load_config, resolve_backend
    from device.errors import ConfigError
    from device.hw.camera import make_camera

    config = load_config(args.config, backend=args.backend)
    backend = resolve_backend(config)
    if args.images and backend != "sim":
        raise ConfigError(f"--images needs the sim backend, not {backend!r}")
    if args.images and not Path(args.images).exists():
        raise ConfigError(f"--images {args.images}: no such folder or file")
    if args.frames is not None and args.frames < 1:
        raise ConfigError("--frames must be at least 1")
    if args.usb is not None and not Path(args.usb).is_dir():
        raise ConfigError(f"--usb {args.usb}: no such folder (it stands for the USB stick)")
    script = None
    if args.script is not None:
        from device.hw.buttons_script import load_script

        script = load_script(args.script)  # a bad script is refused before anything opens

    mode, why = _display_mode(args, backend, config.display.fullscreen)
    if mode == "headless" and not args.headless:
        where = f"; screens are saved to {args.screenshots}" if args.screenshots else ""
        print(f"skinscan run: {why}: running headless{where}", file=sys.stderr)
    camera = make_camera(
        backend,
        preview_size=config.camera.preview_size,
        still_size=config.camera.still_size,
        usb_index=config.camera.usb_index,
        sim_source=args.images or config.camera.sim_source or None,
        colour_gains=config.camera.colour_gains,
    )
    shutdown = config.system.shutdown
    poweroff = shutdown == "poweroff" or (shutdown == "auto" and backend == "pi")
    display = _open_display(mode, config, args.screenshots)
    try:
        buttons = _buttons(args, backend, config, display.mode, script)
        store = _store(config)
    except BaseException:
        display.close()
        raise
    app = App(
        camera=camera,
        buttons=buttons,
        display=display,
        store=store,
        load_analyzer=_analyzer_loader(args.bundle, config),
        thresholds=config.quality_thresholds(),
        heatmap_alpha=config.display.heatmap_alpha,
        field_width_mm=config.camera.field_width_mm,
        max_fps=config.display.max_fps,
        camera_retry_s=config.camera.retry_s,
        poweroff=poweroff,
        shutdown_command=config.system.shutdown_command,
        device_id=config.system.device_id or None,
        battery=_battery(config, backend),
        power_limits=_power_limits(config),
        power_poll_s=config.battery.poll_s,
        usb=_usb(args, backend),
        open_bundle_store=_bundle_store(config),
    )
    log.info("skinscan run: backend %s, display %s (%s)", backend, display.mode, why)
    if display.mode == "headless" and script is None and args.frames is None:
        print(f"skinscan run: {headless_hint(args.screenshots)}", file=sys.stderr)
    status = run_with_signals(app, max_frames=args.frames)
    if args.screenshots:
        print(f"skinscan run: {len(display.written)} screens saved to {args.screenshots}")
    return status
