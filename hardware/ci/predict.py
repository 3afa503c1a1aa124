"""Predictions on fixed images, to compare one machine with another (aarch64 vs x86).

Run on each machine with the same bundle and images, then compare the two files::

    python predict.py run --bundle DIR --out x86.json IMAGE...
    python predict.py compare x86.json arm64.json

``compare`` exits 1 when the two disagree beyond int8 tolerances:

- a logit that moved by more than ``--steps`` quantization steps of the logits tensor
  (XNNPACK's x86 and ARM int8 kernels round differently; through EfficientNet-Lite0
  the logits were seen to differ by up to 6 steps, with the same labels);
- a probability that moved by more than ``--prob-tol``;
- a different top-1 label, unless the reference's top two logits are closer than
  twice the logit tolerance (then either answer is within rounding);
- a Grad-CAM map whose correlation with the reference is below ``--cam-corr``.

Only the standard library and the installed ``device`` package are used, so the
script runs inside the emulated rootfs as it is.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def run(bundle: str | None, images: list[str], out: str) -> int:
    """Analyse every image with the bundle and write the results as JSON."""
    import numpy as np

    from device.imaging.io import read_image
    from device.runtime.analyzer import Analyzer

    analyzer = Analyzer.from_path(bundle)
    classifier = analyzer.bundle.classifier
    # The logits tensor's quantization step, when the runtime wrapper exposes it.
    logits_info = getattr(classifier, "_logits", None)
    step = getattr(logits_info, "scale", None)
    results: dict[str, Any] = {}
    for path in images:
        analysis = analyzer.analyze(read_image(path), explain=True)
        cam = analysis.gradcam.heatmap if analysis.gradcam is not None else np.zeros(1)
        results[Path(path).name] = {
            "label": analysis.label,
            "confidence": float(analysis.confidence),
            "p_malignant": float(analysis.p_malignant),
            "risk_tier": analysis.risk_tier,
            "probabilities": [float(p) for p in analysis.probabilities],
            "logits": [float(v) for v in analysis.logits],
            "gradcam": [float(v) for v in np.asarray(cam, dtype=np.float64).ravel()],
            "timings_ms": {k: round(v * 1000, 2) for k, v in analysis.timings.items()},
        }
    report = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "runtime": getattr(classifier, "runtime", "?"),
        "bundle_id": getattr(analyzer.bundle.manifest, "bundle_id", "?"),
        "logit_step": float(step) if step else None,
        "images": results,
    }
    Path(out).write_text(json.dumps(report, indent=1))
    for name, r in results.items():
        print(f"{report['machine']}: {name}: {r['label']} {r['confidence']:.3f} {r['timings_ms']}")
    return 0


def _corr(a: list[float], b: list[float]) -> float:
    n = len(a)
    if n != len(b) or n == 0:
        return 0.0
    ma, mb = sum(a) / n, sum(b) / n
    va = sum((x - ma) ** 2 for x in a)
    vb = sum((y - mb) ** 2 for y in b)
    if va == 0 or vb == 0:
        return 1.0 if va == vb else 0.0
    return sum((x - ma) * (y - mb) for x, y in zip(a, b, strict=True)) / (va * vb) ** 0.5


def compare(ref_path: str, other_path: str, prob_tol: float, steps: float, cam_corr: float) -> int:
    """Compare two result files; print one line per image and return 0 when they agree."""
    ref = json.loads(Path(ref_path).read_text())
    other = json.loads(Path(other_path).read_text())
    step = ref.get("logit_step") or other.get("logit_step")
    problems: list[str] = []
    print(
        f"reference {ref['machine']} ({ref['runtime']}) vs {other['machine']} ({other['runtime']}),"
        f" bundle {ref['bundle_id']}, logit step {step}"
    )
    if set(ref["images"]) != set(other["images"]):
        problems.append("the two runs analysed different images")
    for name in sorted(set(ref["images"]) & set(other["images"])):
        a, b = ref["images"][name], other["images"][name]
        dp = max(abs(x - y) for x, y in zip(a["probabilities"], b["probabilities"], strict=True))
        dl = max(abs(x - y) for x, y in zip(a["logits"], b["logits"], strict=True))
        dl_steps = dl / step if step else float("nan")
        corr = _corr(a["gradcam"], b["gradcam"])
        top2 = sorted(a["logits"], reverse=True)[:2]
        # Two logits each moving by the tolerance in opposite directions can swap a pair
        # whose gap is up to twice the tolerance.
        tie_margin = 2 * steps * step if step else 0.0
        near_tie = len(top2) == 2 and top2[0] - top2[1] <= tie_margin
        print(
            f"  {name}: {a['label']} {a['confidence']:.3f} vs {b['label']} {b['confidence']:.3f};"
            f" max |dp| {dp:.4f}; max |dlogit| {dl:.4f} ({dl_steps:.1f} steps);"
            f" Grad-CAM corr {corr:.3f}"
        )
        if a["label"] != b["label"] and not near_tie:
            problems.append(f"{name}: label {a['label']} vs {b['label']}")
        if dp > prob_tol:
            problems.append(f"{name}: probabilities differ by {dp:.4f} > {prob_tol}")
        if step and dl_steps > steps:
            problems.append(f"{name}: logits differ by {dl_steps:.1f} steps > {steps}")
        if corr < cam_corr:
            problems.append(f"{name}: Grad-CAM correlation {corr:.3f} < {cam_corr}")
    for p in problems:
        print(f"MISMATCH {p}")
    print("predictions agree within int8 tolerances" if not problems else "predictions DIFFER")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_run = sub.add_parser("run", help="analyse images and write JSON")
    p_run.add_argument("--bundle", help="bundle folder (default: the shipped one)")
    p_run.add_argument("--out", required=True)
    p_run.add_argument("images", nargs="+")
    p_cmp = sub.add_parser("compare", help="compare two JSON files")
    p_cmp.add_argument("reference")
    p_cmp.add_argument("other")
    p_cmp.add_argument("--prob-tol", type=float, default=0.1)
    p_cmp.add_argument("--steps", type=float, default=8.0)
    p_cmp.add_argument("--cam-corr", type=float, default=0.8)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.cmd == "run":
        return run(args.bundle, args.images, args.out)
    return compare(args.reference, args.other, args.prob_tol, args.steps, args.cam_corr)


if __name__ == "__main__":
    sys.exit(main())
