"""``skinscan bench device``: the whole app on simulated hardware, one core.

Runs the real App (controller, quality gate, preprocessing, LiteRT int8
classifier, Grad-CAM, renderer) with the simulated camera and the headless
display, presses Capture ``--captures`` times and reports:

- per-stage median/p95 ms: capture, quality gate, preprocessing, inference,
  Grad-CAM, render; and the total from the Capture press to the result drawn;
- the live view's frame rate with the quality overlay on (no frame cap);
- peak RSS of the process;
- the size of ``model.tflite`` and its multiply-accumulate count, counted from
  the conv, depthwise-conv and fully-connected ops' tensor shapes.

Everything runs single-threaded (OpenCV and LiteRT), as on one Pi core.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

STAGES = ("capture", "quality", "preprocess", "inference", "gradcam", "render")
TARGETS = {"capture_to_result_median_ms": 60.0, "preview_fps": 30.0, "peak_rss_mb": 300.0}

# Sustained int8 throughput assumed for the Pi estimates, in GMAC/s, for LiteRT with
# XNNPACK: (one core, four threads). Pi 4: XNNPACK's published table (README, Feb
# 2022, Raspberry Pi 4 ARM64, 4 threads, per-channel int8) gives MobileNet v2 1.0
# (0.30 GMAC) in 17 ms and v1 1.0 (0.57 GMAC) in 24 ms, i.e. 18-24 GMAC/s; we take
# 20, and 20 / 3.5 for one core. Pi 5: no published XNNPACK table; the Cortex-A76 at
# 2.4 GHz has int8 dot-product (SDOT) kernels, taken as 3x a Pi 4. Both are ESTIMATES.
PI_INT8_GMACS = {"pi4": (5.7, 20.0), "pi5": (17.0, 60.0)}
# How much slower the rest of the capture (OpenCV, numpy, pygame) runs than on the
# desktop x86 core the benchmark ran on: Cortex-A72 ~3x, Cortex-A76 ~1.5x (estimates).
PI_SLOWDOWN = {"pi4": 3.0, "pi5": 1.5}


def configure(parser: argparse.ArgumentParser) -> None:
    """Register the benchmark's options."""
    parser.add_argument("--bundle", metavar="DIR", help="model bundle (default: the shipped one)")
    parser.add_argument("--captures", type=int, default=100, help="simulated captures (100)")
    parser.add_argument(
        "--preview-frames", type=int, default=300, help="live-view frames for the fps figure"
    )
    parser.add_argument(
        "--size", default="800x480", help="screen size WIDTHxHEIGHT (800x480, the 7-inch panel)"
    )
    parser.add_argument(
        "--still", default=None, help="still size WIDTHxHEIGHT (default: config camera.still_size)"
    )
    parser.add_argument("--json", metavar="OUT.json", help="also write the figures as JSON")


configure_device_bench = configure


def _size(text: str, flag: str) -> tuple[int, int]:
    from device.errors import ConfigError

    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: write WIDTHxHEIGHT, e.g. 800x480") from None
    return width, height


def count_macs(model_path: str | Path) -> dict[str, int]:
    """Multiply-accumulates of one inference, per op type, from the model's tensor shapes.

    CONV_2D: output H*W*C_out x kernel kh*kw*C_in; DEPTHWISE_CONV_2D: output H*W*C x
    kh*kw; FULLY_CONNECTED: output rows x C_out x C_in. Other ops (adds, pooling,
    activations) are not multiply-accumulates and are left out.
    """
    from device.runtime.interpreter import create_model

    interpreter = create_model(Path(model_path).read_bytes(), num_threads=1)._interpreter
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    per_op: dict[str, int] = {}
    for op in interpreter._get_ops_details():
        name = op["op_name"]
        if name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        out_shape = [int(v) for v in tensors[int(op["outputs"][0])]["shape"]]
        weights = [int(v) for v in tensors[int(op["inputs"][1])]["shape"]]
        outputs = int(np.prod(out_shape))
        if name == "CONV_2D":  # weights (C_out, kh, kw, C_in)
            macs = outputs * weights[1] * weights[2] * weights[3]
        elif name == "DEPTHWISE_CONV_2D":  # weights (1, kh, kw, C_out)
            macs = outputs * weights[1] * weights[2]
        else:  # weights (C_out, C_in)
            macs = outputs * weights[-1]
        per_op[name] = per_op.get(name, 0) + macs
    per_op["total"] = sum(per_op.values())
    return per_op


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / 1024.0 if sys.platform != "darwin" else peak / (1024.0 * 1024.0)


def _summary(values: list[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64) * 1000.0
    if array.size == 0:
        return {"median": float("nan"), "p95": float("nan")}
    return {"median": float(np.median(array)), "p95": float(np.percentile(array, 95))}


def _cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        for key in ("model name", "hardware", "model"):
            for line in lines:
                if line.lower().split(":")[0].strip() == key:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _pi_estimates(macs: int, measured: dict[str, Any]) -> dict[str, Any]:
    """Inference and capture-to-result on a Pi, scaled from the MAC count (estimates)."""
    estimates: dict[str, Any] = {
        "basis": "ESTIMATE, not measured on a Pi: MAC count / assumed int8 GMAC/s "
        "(XNNPACK's published Pi 4 MobileNet int8 timings; Pi 5 taken as 3x Pi 4); "
        "other stages scaled from this machine by an assumed per-core slowdown"
    }
    other_ms = measured["capture_to_result_ms"]["median"] - measured["inference_ms"]["median"]
    for board, (one_core, four_threads) in PI_INT8_GMACS.items():
        inference_1 = macs / (one_core * 1e9) * 1e3
        inference_4 = macs / (four_threads * 1e9) * 1e3
        estimates[board] = {
            "assumed_gmacs": {"1_thread": one_core, "4_threads": four_threads},
            "inference_ms": {"1_thread": round(inference_1, 1), "4_threads": round(inference_4, 1)},
            "capture_to_result_ms_1_thread": round(inference_1 + other_ms * PI_SLOWDOWN[board], 1),
        }
    return estimates


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark and return the figures."""
    os.environ["SDL_VIDEODRIVER"] = "dummy"
    import cv2

    from device.app.events import Button
    from device.app.runner import App
    from device.app.systemd import Notifier
    from device.errors import ConfigError
    from device.hw.buttons_script import ScriptButtons
    from device.hw.camera_sim import SimCamera
    from device.hw.display import PygameDisplay
    from device.records.store import MemoryScanStore
    from device.runtime.analyzer import Analyzer
    from device.runtime.bundle import DEFAULT_BUNDLE_DIR

    if args.captures < 1 or args.preview_frames < 10:
        raise ConfigError("--captures must be at least 1 and --preview-frames at least 10")
    cv2.setNumThreads(1)
    size = _size(args.size, "--size")
    if args.still:
        still = _size(args.still, "--still")
    else:
        from device.config import load_config

        still = load_config(environ={}).camera.still_size
    bundle_dir = Path(args.bundle) if args.bundle else DEFAULT_BUNDLE_DIR
    analyzer = Analyzer.from_path(bundle_dir, num_threads=1)
    app = App(
        camera=SimCamera(preview_size=(640, 480), still_size=still),
        buttons=ScriptButtons(()),
        display=PygameDisplay("headless", size),
        store=MemoryScanStore(),
        load_analyzer=lambda: analyzer,
        max_fps=0,
        notifier=Notifier(environ={}),
    )
    device_log = logging.getLogger("device")
    level = device_log.level
    device_log.setLevel(logging.WARNING)  # a log line per capture would be timed too
    try:
        app.start()
        for _ in range(5):  # warm caches before timing
            app.turn()
        # Preview: the live view with the quality overlay, as fast as it goes.
        started = time.perf_counter()
        for _ in range(args.preview_frames):
            app.turn()
        preview_fps = args.preview_frames / (time.perf_counter() - started)
        # Captures: press Capture, the result is drawn, go back to the live view.
        app.timings.clear()
        for _ in range(args.captures):
            app.dispatch(Button("capture"))
            app.present()
            app.dispatch(Button("back"))
            app.turn()
    finally:
        app.close()
        device_log.setLevel(level)
    results = [t for t in app.timings if t.outcome == "result"]
    model_path = bundle_dir / analyzer.bundle.manifest.classifier.file
    macs = count_macs(model_path)
    figures: dict[str, Any] = {
        f"{stage}_ms": _summary([getattr(t, stage) for t in results]) for stage in STAGES
    }
    figures["capture_to_result_ms"] = _summary([t.total for t in results])
    figures.update(
        captures=args.captures,
        results=len(results),
        retakes=sum(t.outcome == "retake" for t in app.timings),
        preview_fps=round(preview_fps, 1),
        peak_rss_mb=round(_peak_rss_mb(), 1),
        model_bytes=model_path.stat().st_size,
        macs=macs["total"],
        macs_by_op=macs,
        bundle=str(bundle_dir),
        bundle_id=analyzer.bundle.bundle_id,
        runtime=analyzer.bundle.runtime,
        screen=f"{size[0]}x{size[1]}",
        still=f"{still[0]}x{still[1]}",
        cpu=_cpu_name(),
        threads=1,
        python=platform.python_version(),
    )
    figures["targets"] = {
        "capture_to_result_median_ms<=60": figures["capture_to_result_ms"]["median"] <= 60.0,
        "preview_fps>=30": preview_fps >= 30.0,
        "peak_rss_mb<=300": figures["peak_rss_mb"] <= 300.0,
    }
    figures["pi_estimates"] = _pi_estimates(macs["total"], figures)
    return figures


def _table(figures: dict[str, Any]) -> str:
    rows = [f"{'stage':<22}{'median ms':>12}{'p95 ms':>10}"]
    for stage in (*STAGES, "capture_to_result"):
        value = figures[f"{stage}_ms"]
        rows.append(f"{stage:<22}{value['median']:>12.2f}{value['p95']:>10.2f}")
    rows += [
        f"captures: {figures['results']} results, {figures['retakes']} retakes "
        f"of {figures['captures']} (still {figures['still']}, screen {figures['screen']})",
        f"preview fps (quality overlay on): {figures['preview_fps']:.1f}",
        f"peak RSS: {figures['peak_rss_mb']:.1f} MB",
        f"model.tflite: {figures['model_bytes']:,} bytes, {figures['macs'] / 1e6:,.1f} M MACs",
        f"cpu: {figures['cpu']}, 1 thread, runtime {figures['runtime']}",
    ]
    for board in ("pi4", "pi5"):
        estimate = figures["pi_estimates"][board]
        inference = estimate["inference_ms"]
        rows.append(
            f"ESTIMATE {board}: inference ~{inference['1_thread']:.1f} ms on 1 core "
            f"(~{inference['4_threads']:.1f} ms on 4), capture-to-result "
            f"~{estimate['capture_to_result_ms_1_thread']:.0f} ms on 1 core; not measured"
        )
    met = figures["targets"]
    rows.append("targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in met.items()))
    return "\n".join(rows)


def main(args: argparse.Namespace) -> int:
    """Run the benchmark, print the table, optionally write JSON."""
    from device.bench.stats import write_json

    figures = run(args)
    print(_table(figures))
    write_json(args.json, figures)
    return 0


run_device_bench = main
