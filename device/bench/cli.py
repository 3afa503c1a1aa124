"""``skinscan bench``: benchmark commands whose figures go into the README."""

from __future__ import annotations

import argparse
import importlib

# target -> module exposing configure(parser) and main(args) -> int
TARGETS: dict[str, tuple[str, str]] = {
    "pipeline": ("device.bench.pipeline", "per-stage ms of the image pipeline"),
    "segmentation": ("device.bench.segmentation", "Dice/IoU of k-means segmentation vs real masks"),
    "device": ("device.bench.device", "capture-to-result, fps, RSS over simulated captures"),
    "nonlesion": (
        "device.evaluation.nonlesion",
        "non-lesion photos: Retake/Uncertain/Monitor/Refer per category; lesions refused",
    ),
    # The clinic web app lives outside device/ (device/ never imports Flask); loaded by name.
    "serve": ("clinic.bench", "clinic web app: upload-to-result latency, scan page req/s"),
    "adapt": (
        "clinic.adaptation.bench",
        "site adaptation on held-out sources: AUC against confirmed cases k (desktop)",
    ),
}
# Desktop benchmarks that need TensorFlow: their module is imported, and its arguments
# parsed, only when the target runs, so building the parser (the device's too) stays free.
LAZY_TARGETS: dict[str, tuple[str, str]] = {
    "train": (
        "training.bench_distributed",
        "training images/s with 1, 2, ... local tf.distribute workers (desktop)",
    ),
    "sources": (
        "training.source_bench",
        "leave-one-source-out screening of training candidates (desktop)",
    ),
}


def configure(parser: argparse.ArgumentParser) -> None:
    """Register one nested subcommand per benchmark target."""
    sub = parser.add_subparsers(dest="bench_target", metavar="TARGET", required=True)
    for name, (module_name, help_text) in TARGETS.items():
        target = sub.add_parser(name, help=help_text, description=help_text)
        target.set_defaults(_bench_module=module_name)
        try:
            importlib.import_module(module_name).configure(target)
        except ImportError as exc:
            target.set_defaults(_bench_unavailable=str(exc))
    for name, (module_name, help_text) in LAZY_TARGETS.items():
        # "+" prefix: every word after the target, options included, reaches the module
        target = sub.add_parser(name, help=help_text, prefix_chars="+", add_help=False)
        target.add_argument("_bench_argv", nargs="*", metavar="ARG")
        target.set_defaults(_bench_module=module_name, _bench_lazy=help_text)


def main(args: argparse.Namespace) -> int:
    """Run the chosen benchmark."""
    if getattr(args, "_bench_unavailable", None):
        raise SystemExit(
            f"skinscan bench {args.bench_target}: unavailable: {args._bench_unavailable}"
        )
    module = importlib.import_module(args._bench_module)
    if getattr(args, "_bench_lazy", None):
        parser = argparse.ArgumentParser(
            prog=f"skinscan bench {args.bench_target}", description=args._bench_lazy
        )
        module.configure(parser)
        parser.parse_args(args._bench_argv, namespace=args)
    return module.main(args)
