"""Multi-worker training on ``tf.distribute.MultiWorkerMirroredStrategy`` (``--distributed``).

Every worker runs the same ``skinscan train ... --distributed`` command; the standard
``TF_CONFIG`` environment variable names the cluster and this process's task in it, so
the same command runs on plain hosts, a Slurm allocation or a Kubernetes TFJob.

- **Data.** Every worker loads the split and the preprocessed cache (built once under a
  file lock when the workers share a disk, else once per host). Each epoch the training
  rows are shuffled with the run's seed exactly as on one machine; step ``s`` takes the
  global batch ``order[s*G:(s+1)*G]`` (``G = batch_size x replicas``) and replica ``r``
  reads its slice ``[r*B:(r+1)*B]``: the shards are disjoint and together they are the
  single-machine batch of size ``G``. Augmentation draws from ``(seed, epoch, step,
  position in the global batch)``, so it does not depend on the number of workers.
- **Optimisation.** A custom step runs the model on each replica, scales the
  class-weighted loss by ``1/G`` and lets the optimiser all-reduce (sum) the gradients:
  the update equals one step on the global batch. With ``lr_scaling="linear"`` every
  learning rate is multiplied by the number of replicas. ``config.json`` records
  workers, replicas, global batch and scale under ``distribution``.
- **Files.** Only the chief writes the run folder. Other workers write the same
  checkpoints to a private temporary folder (their weights are identical, so later
  phases can start from "their" best weights) and delete it on exit. On ``--resume`` they
  copy the chief's checkpoints first, so the run folder must be readable by every worker
  (one host, or shared storage such as a Kubernetes volume).
- **Failures.** Collective ops time out after ``collective_timeout_s``, and the
  coordination service's heartbeat notices a dead worker; either way the surviving
  workers raise :class:`WorkerLostError` (one clear line from the CLI, exit code 2)
  instead of hanging. Start every worker again with ``--resume RUN`` to continue from
  the last finished epoch.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device.errors import ConfigError, SkinScanError
from device.labels import CLASS_CODES

log = logging.getLogger(__name__)

STRATEGY_NAME = "MultiWorkerMirroredStrategy"
REGISTER_TIMEOUT_S = 900  # every worker must have started within this many seconds


class WorkerLostError(SkinScanError, RuntimeError):
    """A peer of a distributed run died or stopped answering; the run stopped."""


@dataclass(frozen=True)
class ClusterTask:
    """This process's place in the cluster that ``TF_CONFIG`` describes.

    Attributes:
        task_type: ``chief`` or ``worker``.
        task_index: index within its type.
        rank: position among all training tasks (the chief, or worker 0 without one, is 0).
        num_workers: chief + workers.
        addresses: ``host:port`` of every task, in rank order.
        has_chief: the cluster names a ``chief`` task (else worker 0 is the chief).
    """

    task_type: str
    task_index: int
    rank: int
    num_workers: int
    addresses: tuple[str, ...]
    has_chief: bool = False

    @property
    def is_chief(self) -> bool:
        """True for the one task that writes the run folder."""
        return self.rank == 0

    @property
    def leader(self) -> str:
        """The coordination-service leader's task name (the chief)."""
        return f"/job:{'chief' if self.has_chief else 'worker'}/replica:0/task:0"


def cluster_task(environ: dict[str, str] | None = None) -> ClusterTask:
    """Parse ``TF_CONFIG`` (``{"cluster": {"chief": [...], "worker": [...]}, "task": {...}}``).

    Raises:
        ConfigError: TF_CONFIG is missing, not JSON, or names a task outside the cluster.
    """
    environ = os.environ if environ is None else environ
    raw = environ.get("TF_CONFIG", "")
    if not raw:
        raise ConfigError(
            "--distributed needs TF_CONFIG, e.g. "
            '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}} (see docs/training.md, Multi-worker training)'
        )
    try:
        config = json.loads(raw)
        cluster = config["cluster"]
        task_type = str(config["task"]["type"])
        task_index = int(config["task"]["index"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"TF_CONFIG is not a valid cluster spec: {exc}") from None
    chiefs = list(cluster.get("chief", []))
    workers = list(cluster.get("worker", []))
    if len(chiefs) > 1:
        raise ConfigError(f"TF_CONFIG: at most one chief, got {chiefs}")
    if task_type not in ("chief", "worker"):
        raise ConfigError(f"TF_CONFIG: task type {task_type!r} does not train (chief or worker)")
    pool = chiefs if task_type == "chief" else workers
    if not 0 <= task_index < len(pool):
        raise ConfigError(f"TF_CONFIG: no {task_type} {task_index} in {cluster}")
    rank = task_index + (len(chiefs) if task_type == "worker" else 0)
    return ClusterTask(
        task_type, task_index, rank, len(chiefs) + len(workers), (*chiefs, *workers), bool(chiefs)
    )


def make_strategy(task: ClusterTask, timeout_s: float) -> Any:
    """The MultiWorkerMirroredStrategy, with collective and heartbeat timeouts set.

    Must run before any other TensorFlow call in the process (TensorFlow's rule).
    """
    import tensorflow as tf

    _configure_coordination(task, timeout_s)
    options = tf.distribute.experimental.CommunicationOptions(
        timeout_seconds=float(timeout_s),
        # AUTO: NCCL between GPUs, gRPC ring between CPUs
        implementation=tf.distribute.experimental.CommunicationImplementation.AUTO,
    )
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def _configure_coordination(task: ClusterTask, timeout_s: float) -> None:
    """Bound the coordination service's waits: registration, heartbeat and shutdown.

    TensorFlow configures the service itself when nothing is set, with a heartbeat of
    minutes and no registration bound; this sets them from ``timeout_s`` so a worker that
    never starts or dies is noticed. It uses TensorFlow's internal context API; if that
    moves, the defaults stay and only the collective timeout applies.
    """
    try:
        from tensorflow.core.protobuf import coordination_config_pb2
        from tensorflow.python.eager import context
    except ImportError:  # pragma: no cover - internal layout changed
        log.warning("cannot set coordination-service timeouts; using TensorFlow's defaults")
        return
    jobs = []
    chiefs = int(task.has_chief)
    if chiefs:
        jobs.append(coordination_config_pb2.CoordinatedJob(name="chief", num_tasks=1))
    if task.num_workers - chiefs:
        jobs.append(
            coordination_config_pb2.CoordinatedJob(
                name="worker", num_tasks=task.num_workers - chiefs
            )
        )
    milliseconds = int(timeout_s * 1000)
    context.context().configure_coordination_service(
        service_type="standalone",
        service_leader=task.leader,
        coordinated_jobs=jobs,
        # pods or hosts may start minutes apart; a worker that never comes is an error
        cluster_register_timeout_in_ms=max(milliseconds, REGISTER_TIMEOUT_S * 1000),
        heartbeat_timeout_in_ms=milliseconds,
        shutdown_barrier_timeout_in_ms=min(milliseconds, 10_000),
    )


def global_rows(order: np.ndarray, step: int, global_batch: int) -> np.ndarray:
    """Rows of the global batch ``step`` (wrapping round the epoch, as on one machine)."""
    return np.take(order, np.arange(step * global_batch, (step + 1) * global_batch), mode="wrap")


def replica_rows(
    order: np.ndarray, step: int, per_replica: int, replicas: int, replica: int
) -> np.ndarray:
    """The slice of global batch ``step`` that ``replica`` (of ``replicas``) trains on."""
    rows = global_rows(order, step, per_replica * replicas)
    return rows[replica * per_replica : (replica + 1) * per_replica]


def distribution_record(cfg: Any, task: ClusterTask, replicas: int) -> dict[str, Any]:
    """What config.json records about the distribution of a run.

    Raises:
        ConfigError: an unknown ``lr_scaling``.
    """
    if cfg.lr_scaling not in ("linear", "none"):
        raise ConfigError(f"lr_scaling must be 'linear' or 'none', got {cfg.lr_scaling!r}")
    return {
        "strategy": STRATEGY_NAME,
        "workers": task.num_workers,
        "replicas": replicas,
        "per_replica_batch_size": cfg.batch_size,
        "global_batch_size": cfg.batch_size * replicas,
        "lr_scaling": cfg.lr_scaling,
        "lr_scale": float(replicas) if cfg.lr_scaling == "linear" else 1.0,
        "collective_timeout_s": cfg.collective_timeout_s,
    }


def _is_peer_failure(exc: BaseException) -> bool:
    import tensorflow as tf

    return isinstance(
        exc,
        tf.errors.UnavailableError
        | tf.errors.DeadlineExceededError
        | tf.errors.CancelledError
        | tf.errors.AbortedError,
    )


def run_distributed_training(cfg: Any, resume: bool = False) -> Path:
    """Train (or resume) ``cfg`` as one task of a multi-worker run; see the module docstring.

    Returns:
        The run folder (the chief's; other workers return it too but never write to it).

    Raises:
        ConfigError: bad TF_CONFIG, or a resume with a different number of replicas.
        WorkerLostError: a peer died or a collective op timed out.
    """
    task = cluster_task()
    strategy = make_strategy(task, cfg.collective_timeout_s)
    started = time.time()
    run_dir = Path(cfg.run_dir)
    write_dir = (
        run_dir if task.is_chief else Path(tempfile.mkdtemp(prefix=f"skinscan-w{task.rank}-"))
    )
    log.info(
        "distributed: %s task %d (rank %d of %d, %s); writes to %s",
        task.task_type,
        task.task_index,
        task.rank,
        task.num_workers,
        "chief" if task.is_chief else "worker",
        write_dir,
    )
    try:
        return _run(cfg, resume, task, strategy, run_dir, write_dir, started)
    except Exception as exc:
        if not _is_peer_failure(exc):
            raise
        detail = re.sub(r"\{\{function_node[^}]*\}\}\s*", "", str(exc)).strip()
        first_line = detail.splitlines()[0] if detail else ""
        raise WorkerLostError(
            f"distributed run stopped on {task.task_type} {task.task_index} after "
            f"{time.time() - started:.0f} s: a peer died or stopped answering "
            f"({type(exc).__name__}: {first_line[:200]}). Start every worker again with "
            f"`skinscan train --resume {run_dir}` to continue from the last finished epoch."
        ) from exc
    finally:
        if not task.is_chief:
            shutil.rmtree(write_dir, ignore_errors=True)


def _run(
    cfg: Any,
    resume: bool,
    task: ClusterTask,
    strategy: Any,
    run_dir: Path,
    write_dir: Path,
    started: float,
) -> Path:
    import keras

    from training import train_config, train_data, train_loop
    from training.model import set_trainable

    replicas = int(strategy.num_replicas_in_sync)
    record = distribution_record(cfg, task, replicas)
    if resume and cfg.distribution and cfg.distribution.get("replicas") != replicas:
        raise ConfigError(
            f"{run_dir} was trained on {cfg.distribution['replicas']} replicas (global batch "
            f"{cfg.distribution['global_batch_size']}); resume it with the same number of "
            f"workers, not {replicas}"
        )
    cfg.distribution = record
    state_path = write_dir / "state.json"
    if task.is_chief and state_path.exists() and not resume:
        raise train_config.RunExistsError(
            f"{run_dir} already holds a run: resume it with --resume {run_dir}"
        )
    if not cfg.cache_dir:
        cfg.cache_dir = str(run_dir.parent / "cache")
    (write_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    if not task.is_chief and resume:
        _copy_checkpoints(run_dir, write_dir)
    train_config._write_json(write_dir / "config.json", asdict(cfg))
    if task.is_chief:
        file_log = logging.FileHandler(run_dir / "train.log")
        file_log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(file_log)
    keras.utils.set_random_seed(cfg.seed)

    data = train_data._Data(cfg, write_dir)
    x_train, y_train, train_samples = data.by_split["train"]
    x_val, y_val, _ = data.by_split["val"]
    log.info(
        "images: train %d, val %d, test %d; skipped %d; %d replicas, global batch %d, lr x%g",
        len(y_train),
        len(y_val),
        len(data.by_split["test"][1]),
        len(data.skipped),
        replicas,
        record["global_batch_size"],
        record["lr_scale"],
    )
    checkpoint = write_dir / "checkpoints" / "last.keras"
    best_path = write_dir / "checkpoints" / "best.weights.h5"
    with strategy.scope():
        backbone, model, state, loaded_phase = train_loop.load_or_build_model(
            cfg, run_dir, state_path, checkpoint, resume
        )
    elapsed_before = state.get("elapsed_s", 0.0)

    global_batch = record["global_batch_size"]
    full_steps = int(np.ceil(len(y_train) / global_batch))
    steps = min(full_steps, cfg.steps_per_epoch) if cfg.steps_per_epoch else full_steps
    feeder = _Feeder(cfg, x_train, y_train, steps, strategy, task)
    feeder.image_ids = [s.image_id for s in train_samples]
    phases = [
        ("head", cfg.head_epochs, cfg.head_lr, None),
        ("finetune", cfg.finetune_epochs, cfg.finetune_lr, cfg.first_trainable_block),
        ("deep", cfg.deep_epochs, cfg.deep_lr, cfg.deep_first_trainable_block),
    ]
    phases = [p for p in phases if p[1] > 0]
    names = [p[0] for p in phases]
    for phase, epochs, base_lr, first_block in phases:
        if state["phase"] == "done" or names.index(phase) < names.index(state["phase"]):
            continue
        peak_lr = base_lr * record["lr_scale"]
        with strategy.scope():
            if state["epoch"] == 0 and names.index(phase) > 0 and best_path.exists():
                model.load_weights(best_path)
            count = set_trainable(model, backbone.block_names, first_block)
            # A phase starts with a fresh optimiser, also when resumed at its start (the
            # checkpoint's optimiser was built for the previous phase's variables).
            if loaded_phase != phase or state["epoch"] == 0:
                train_loop._compile(
                    model, cfg, peak_lr, 1.0 if phase == "head" else cfg.head_lr_multiplier
                )
            model.optimizer.build(model.trainable_variables)
        loaded_phase = None
        step_fn = _train_step(model, strategy, cfg, global_batch)
        log.info(
            "phase %s: %d trainable tensors, %d epochs of %d steps", phase, count, epochs, steps
        )
        total_steps = epochs * steps
        warmup = int(cfg.warmup_epochs * steps) if phase != "head" else 0
        if state["epoch"] == 0:
            state["phase_step0"] = int(model.optimizer.iterations.numpy())
        while state["epoch"] < epochs:
            epoch = state["epoch"]
            tick = time.time()
            losses = []
            # Keras's fit calls the single-machine PyDataset's on_epoch_end as each epoch
            # starts, so epoch k of a one-machine run reads shuffle (and augmentation)
            # index k + 1; the same index here keeps the two runs step-for-step alike.
            for batch in feeder.epoch(len(state["history"]) + 1):
                at = int(model.optimizer.iterations.numpy()) - state["phase_step0"]
                model.optimizer.learning_rate.assign(
                    train_loop._lr_at(at, total_steps, warmup, peak_lr)
                )
                losses.append(float(step_fn(batch)))
            entry = {
                "phase": phase,
                "epoch": epoch + 1,
                "loss": float(np.mean(losses)),
                "step_losses": losses,
                "tick": tick,
            }
            paths = (best_path, checkpoint, state_path)
            clock = (elapsed_before, started)
            if train_loop.end_epoch(cfg, state, entry, model, (x_val, y_val), paths, epochs, clock):
                break
        train_loop.end_phase(state, names, phase, model, checkpoint, state_path)

    if task.is_chief:
        train_loop.finish_run(cfg, run_dir, model, data, state, backbone, elapsed_before, started)
    else:
        log.info("worker %d done; the chief writes the run folder", task.rank)
    return run_dir


def _copy_checkpoints(run_dir: Path, write_dir: Path) -> None:
    """A resuming worker starts from the chief's state and checkpoints."""
    for name in ("state.json", "split.csv"):
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, write_dir / name)
    source = run_dir / "checkpoints"
    if source.is_dir():
        for path in source.iterdir():
            if path.is_file() and ".tmp" not in path.name:
                shutil.copy2(path, write_dir / "checkpoints" / path.name)


def _train_step(model: Any, strategy: Any, cfg: Any, global_batch: int) -> Any:
    """A tf.function: one optimiser step on the global batch, returning its mean loss."""
    import keras
    import tensorflow as tf

    loss_fn = keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=cfg.label_smoothing, reduction=None
    )

    def replica_step(x, y, w):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            # Sum over this replica's rows / global batch: summing the replicas' gradients
            # (the optimiser's all-reduce) gives the mean over the global batch.
            loss = tf.reduce_sum(loss_fn(y, logits) * w) / global_batch
        variables = model.trainable_variables
        gradients = tape.gradient(loss, variables)
        model.optimizer.apply_gradients(zip(gradients, variables, strict=True))
        return loss

    @tf.function
    def step(batch):
        per_replica = strategy.run(replica_step, args=batch)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    return step


class _Feeder:
    """Per-epoch distributed datasets: each replica reads its slice of every global batch."""

    def __init__(
        self,
        cfg: Any,
        images: np.ndarray,
        labels: np.ndarray,
        steps: int,
        strategy: Any,
        task: ClusterTask,
    ) -> None:
        from training.augment import AugmentConfig
        from training.train_data import _class_weights

        self.cfg = cfg
        self.images = images
        self.labels = labels
        self.steps = steps
        self.strategy = strategy
        self.task = task
        self.weights = _class_weights(labels, cfg.class_weighting).astype(np.float32)
        self.augment_cfg = AugmentConfig.from_dict(cfg.augment)
        self.replicas = int(strategy.num_replicas_in_sync)
        self.record_dir = Path(cfg.record_shards) if cfg.record_shards else None
        self.image_ids: list[str] = [str(i) for i in range(len(labels))]

    def order(self, epoch: int) -> np.ndarray:
        """The epoch's shuffle of the training rows (the single-machine one)."""
        return np.random.default_rng([self.cfg.seed, epoch]).permutation(len(self.labels))

    def epoch(self, epoch: int) -> Any:
        """An iterator over the epoch's distributed batches."""
        import tensorflow as tf

        size = self.images.shape[1]
        spec = (
            tf.TensorSpec((None, size, size, 3), tf.float32),
            tf.TensorSpec((None, len(CLASS_CODES)), tf.float32),
            tf.TensorSpec((None,), tf.float32),
        )
        order = self.order(epoch)
        seen: dict[int, list[list[str]]] = {}

        def dataset_fn(context: Any) -> Any:
            local = self.replicas // context.num_input_pipelines
            first = context.input_pipeline_id * local

            def batches():
                for step in range(self.steps):
                    for replica in range(first, first + local):
                        yield self._batch(order, epoch, step, replica, seen)

            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = (
                tf.data.experimental.AutoShardPolicy.OFF  # sharded above, by replica
            )
            dataset = tf.data.Dataset.from_generator(batches, output_signature=spec)
            return dataset.with_options(options).prefetch(2)

        dataset = self.strategy.distribute_datasets_from_function(dataset_fn)
        yield from dataset
        self._record(epoch, seen)

    def _batch(
        self, order: np.ndarray, epoch: int, step: int, replica: int, seen: dict
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from training.augment import augment

        per = self.cfg.batch_size
        rows = replica_rows(order, step, per, self.replicas, replica)
        seen.setdefault(replica, []).append([self.image_ids[r] for r in rows])
        x = np.stack(
            [
                augment(
                    self.images[row],
                    np.random.default_rng([self.cfg.seed, epoch, step, replica * per + k]),
                    self.augment_cfg,
                )
                for k, row in enumerate(rows)
            ]
        ).astype(np.float32)
        y = np.eye(len(CLASS_CODES), dtype=np.float32)[self.labels[rows]]
        return x, y, self.weights[self.labels[rows]]

    def _record(self, epoch: int, seen: dict[int, list[list[str]]]) -> None:
        """Append the image ids this worker read in the epoch (per replica, per step) to
        ``record_shards/worker-<rank>.jsonl``."""
        if self.record_dir is None:
            return
        self.record_dir.mkdir(parents=True, exist_ok=True)
        line = {
            "rank": self.task.rank,
            "epoch": epoch,
            "replicas": {str(k): v for k, v in seen.items()},
        }
        with (self.record_dir / f"worker-{self.task.rank}.jsonl").open("a") as handle:
            handle.write(json.dumps(line) + "\n")
