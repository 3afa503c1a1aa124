"""``skinscan bench train --workers 1,2``: training images/s with N local tf.distribute workers.

For each N, N worker processes are started on 127.0.0.1 under TF_CONFIG and run the
``--distributed`` training step (training.distributed) on synthetic images: forward,
backward, gradient all-reduce and AdamW update of the whole backbone (BatchNorm frozen,
as in training). The host's cores are shared out between the workers
(``--threads-per-worker``, default cores // N), so every N uses the same machine. The
chief times ``--steps`` steps after ``--warmup`` and reports global images per second.

On one host, more workers cannot add compute: the figure shows the mechanism and its
overhead. Real scaling needs one worker per machine (or accelerator).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULT_PREFIX = "BENCH_RESULT "


def configure(parser: argparse.ArgumentParser) -> None:
    """Register the benchmark's arguments."""
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--backbone", default="efficientnet_lite0", help="registered backbone")
    parser.add_argument("--input-size", type=int, default=224, help="model input side")
    parser.add_argument("--batch-size", type=int, default=16, help="images per worker per step")
    parser.add_argument("--steps", type=int, default=8, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (tracing)")
    parser.add_argument(
        "--threads-per-worker", type=int, default=0, help="TensorFlow threads (0: cores // N)"
    )
    parser.add_argument("--timeout", type=float, default=600, help="seconds per worker count")
    parser.add_argument("--json", metavar="OUT.json", help="also write the figures as JSON")


def parse_workers(text: str) -> list[int]:
    """``"1,2,4"`` -> ``[1, 2, 4]``.

    Raises:
        ValueError: a count that is not a positive integer.
    """
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or any(c < 1 for c in counts):
        raise ValueError(f"--workers needs positive integers, got {text!r}")
    return counts


def free_ports(count: int) -> list[int]:
    """``count`` TCP ports on 127.0.0.1 that were free a moment ago (for local workers)."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_workers(count: int, args: argparse.Namespace) -> dict[str, Any]:
    """Start ``count`` local workers, wait for them and return the chief's figures.

    Raises:
        RuntimeError: a worker failed or ran past ``args.timeout``.
    """
    threads = args.threads_per_worker or max(1, (os.cpu_count() or 1) // count)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(count)]}
    command = [
        sys.executable, "-m", "training.bench_distributed", "_worker",
        "--backbone", args.backbone, "--input-size", str(args.input_size),
        "--batch-size", str(args.batch_size), "--steps", str(args.steps),
        "--warmup", str(args.warmup),
    ]  # fmt: skip
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "TF_NUM_INTRAOP_THREADS": str(threads),
        "TF_NUM_INTEROP_THREADS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    procs = [
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={
                **env,
                "TF_CONFIG": json.dumps(
                    {"cluster": cluster, "task": {"type": "worker", "index": i}}
                ),
            },
        )
        for i in range(count)
    ]
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=args.timeout)[0])
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{count} workers ran past {args.timeout:.0f} s") from None
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for index, (proc, out) in enumerate(zip(procs, outputs, strict=True)):
        if proc.returncode != 0:
            raise RuntimeError(f"worker {index} of {count} failed:\n{out[-2000:]}")
    lines = [line for line in outputs[0].splitlines() if line.startswith(RESULT_PREFIX)]
    if not lines:
        raise RuntimeError(f"the chief printed no result:\n{outputs[0][-2000:]}")
    return {**json.loads(lines[-1][len(RESULT_PREFIX) :]), "threads_per_worker": threads}


def main(args: argparse.Namespace) -> int:
    """Run the benchmark for every worker count and print a table."""
    from device.errors import ConfigError

    try:
        counts = parse_workers(args.workers)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    rows = []
    for count in counts:
        try:
            rows.append(run_workers(count, args))
        except RuntimeError as exc:
            raise ConfigError(f"bench train: {exc}") from None
    base = rows[0]["images_per_s"]
    print(
        f"training step, {args.backbone} at {args.input_size}, batch {args.batch_size} per "
        f"worker, {os.cpu_count()} cores on this host, load average "
        f"{os.getloadavg()[0]:.1f} before the last run"
    )
    print("workers  threads/worker  global batch  images/s  vs first")
    for row in rows:
        print(
            f"{row['workers']:>7}  {row['threads_per_worker']:>14}  {row['global_batch']:>12}  "
            f"{row['images_per_s']:>8.1f}  {row['images_per_s'] / base:>7.2f}x"
        )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"config": _config(args), "results": rows}, indent=2))
    return 0


def _config(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("workers", "backbone", "input_size", "batch_size", "steps", "warmup")
    return {key: getattr(args, key) for key in keys} | {"cpu_count": os.cpu_count()}


def _worker(args: argparse.Namespace) -> int:
    """One worker: the distributed training step on synthetic images, timed on the chief."""
    import numpy as np

    from training.distributed import _train_step, cluster_task, make_strategy

    task = cluster_task()
    strategy = make_strategy(task, timeout_s=120)
    import keras
    import tensorflow as tf

    from device.labels import CLASS_CODES
    from training.backbones import build_backbone
    from training.model import build_classifier, set_trainable
    from training.train_config import TrainConfig
    from training.train_loop import _compile

    cfg = TrainConfig(data_dir="", run_dir="", backbone=args.backbone, dropout=0.0)
    keras.utils.set_random_seed(0)
    with strategy.scope():
        backbone = build_backbone(args.backbone, args.input_size, weights=False)
        model = build_classifier(backbone, len(CLASS_CODES), cfg.dropout)
        set_trainable(model, backbone.block_names, backbone.block_names[0])
        _compile(model, cfg, 1e-4, cfg.head_lr_multiplier)
        model.optimizer.build(model.trainable_variables)
    replicas = int(strategy.num_replicas_in_sync)
    per = args.batch_size
    rng = np.random.default_rng(task.rank)
    pool = 4 * per
    x = rng.integers(0, 256, (pool, args.input_size, args.input_size, 3)).astype(np.float32)
    y = np.eye(len(CLASS_CODES), dtype=np.float32)[rng.integers(0, len(CLASS_CODES), pool)]
    w = np.ones(pool, np.float32)

    def dataset_fn(_context: Any) -> Any:
        dataset = tf.data.Dataset.from_tensor_slices((x, y, w)).repeat().batch(per)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        return dataset.with_options(options).prefetch(2)

    batches = iter(strategy.distribute_datasets_from_function(dataset_fn))
    step = _train_step(model, strategy, cfg, per * replicas)
    for _ in range(args.warmup):
        float(step(next(batches)))
    started = time.perf_counter()
    for _ in range(args.steps):
        float(step(next(batches)))
    elapsed = time.perf_counter() - started
    if task.is_chief:
        result = {
            "workers": task.num_workers,
            "replicas": replicas,
            "global_batch": per * replicas,
            "seconds": elapsed,
            "images_per_s": args.steps * per * replicas / elapsed,
        }
        print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    worker_parser = argparse.ArgumentParser(prog="python -m training.bench_distributed _worker")
    worker_parser.add_argument("role", choices=["_worker"])
    configure(worker_parser)
    sys.exit(_worker(worker_parser.parse_args()))
