"""``skinscan train --distributed``: two local CPU worker processes under TF_CONFIG.

Every run trains the tiny_cnn backbone on the synthetic HAM10000 subset, one step per
epoch, with dropout 0 and augmentation off, so runs are deterministic and can be compared
step for step. The processes use one TensorFlow thread each.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import write_synthetic_ham

from device.errors import ConfigError
from training.bench_distributed import free_ports
from training.distributed import cluster_task, distribution_record, global_rows
from training.train import TrainConfig

pytestmark = pytest.mark.tf

# Absolute tolerance on a loss of about 1.9. Two workers and one machine feed the same
# rows, weights and learning rates; they differ only in the order of float32 sums (two
# half-batch gradients all-reduced vs one batch), about 1e-7 here. A wrong shard, batch
# or learning-rate scale moves the loss by more than 1e-3.
LOSS_TOLERANCE = 1e-5
THREADS = {
    "OMP_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "CI": "1",
}
HEAD_EPOCHS, FINETUNE_EPOCHS = 2, 5


def _train_args(data: Path, cache: Path, run: Path, batch: int) -> list[str]:
    return [
        "--data", str(data), "--cache", str(cache), "--run", str(run),
        "--backbone", "tiny_cnn", "--batch-size", str(batch), "--steps-per-epoch", "1",
        "--head-epochs", str(HEAD_EPOCHS), "--finetune-epochs", str(FINETUNE_EPOCHS),
        "--first-trainable-block", "block1", "--deep-epochs", "0",
        "--dropout", "0", "--no-augment", "--patience", "100", "--threshold-confidence", "0",
    ]  # fmt: skip


def _env(tmp: Path, tf_config: dict | None = None) -> dict[str, str]:
    env = {**os.environ, **THREADS, "TMPDIR": str(tmp)}
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return env


def _launch_workers(args: list[str], tmp: Path, log_name: str) -> list[subprocess.Popen]:
    """Start two workers on 127.0.0.1 (worker 0 is the chief)."""
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        log = (tmp / f"{log_name}-w{index}.log").open("w")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "device.cli", "train", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
                env=_env(tmp, {"cluster": cluster, "task": {"type": "worker", "index": index}}),
            )
        )
    return procs


def _wait_all(procs: list[subprocess.Popen], tmp: Path, log_name: str, timeout: float) -> None:
    deadline = time.time() + timeout
    for index, proc in enumerate(procs):
        try:
            proc.wait(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            pytest.fail(f"worker {index} hung:\n{_log(tmp, log_name, index)}")
        assert proc.returncode == 0, _log(tmp, log_name, index)


def _log(tmp: Path, log_name: str, index: int) -> str:
    return (tmp / f"{log_name}-w{index}.log").read_text()[-4000:]


def _history(run: Path) -> list[dict]:
    return json.loads((run / "state.json").read_text())["history"]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("distributed")
    write_synthetic_ham(root / "ham")
    (root / "tmp").mkdir()
    return root


@pytest.fixture(scope="module")
def single_run(work: Path) -> Path:
    """One machine, no TF_CONFIG, batch 8."""
    pytest.importorskip("tensorflow")
    run = work / "single"
    done = subprocess.run(
        [sys.executable, "-m", "device.cli", "train",
         *_train_args(work / "ham", work / "cache", run, batch=8)],
        capture_output=True, text=True, timeout=240, env=_env(work / "tmp"),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return run


@pytest.fixture(scope="module")
def two_worker_run(work: Path, single_run: Path) -> Path:
    """Two workers of batch 4 each (global batch 8), learning rates not scaled."""
    run = work / "two"
    args = _train_args(work / "ham", work / "cache", run, batch=4)
    args += ["--distributed", "--lr-scaling", "none", "--collective-timeout", "20"]
    args += ["--record-shards", str(work / "shards")]
    procs = _launch_workers(args, work / "tmp", "two")
    _wait_all(procs, work / "tmp", "two", timeout=300)
    return run


def test_two_workers_write_one_run_folder_that_converts_to_a_bundle(two_worker_run, work):
    from conversion.convert import convert_run
    from conversion.manifest import write_bundle
    from device.runtime import load_bundle
    from training.data import load_preprocessed

    config = json.loads((two_worker_run / "config.json").read_text())
    assert config["distribution"] == {
        "strategy": "MultiWorkerMirroredStrategy",
        "workers": 2,
        "replicas": 2,
        "per_replica_batch_size": 4,
        "global_batch_size": 8,
        "lr_scaling": "none",
        "lr_scale": 1.0,
        "collective_timeout_s": 20.0,
    }
    assert "global batch 8" in (two_worker_run / "report.md").read_text()
    # Worker 1 wrote nothing outside its temporary folder, which it removed.
    assert list((work / "tmp").glob("skinscan-w*")) == []
    assert "worker 1 done; the chief writes the run folder" in _log(work / "tmp", "two", 1)

    def loader(run_dir, split):
        images, labels = load_preprocessed(run_dir, split)
        if split == "train":  # conversion calibrates on >= 300 images: repeat the tiny split
            repeat = -(-300 // len(labels))
            images, labels = np.concatenate([images] * repeat), np.concatenate([labels] * repeat)
        return images, labels

    result = convert_run(two_worker_run, loader=loader, gradcam_images=8, n_boot=20)
    bundle = load_bundle(write_bundle(work / "bundle", result.files, result.manifest))
    assert bundle.manifest.provenance.run_id == "two"


def test_the_two_workers_read_the_two_halves_of_each_global_batch(two_worker_run, work):
    rows = list(csv.DictReader((two_worker_run / "split.csv").open()))
    train_ids = np.array([r["image_id"] for r in rows if r["split"] == "train"])
    records = {
        rank: [json.loads(line) for line in (work / "shards" / f"worker-{rank}.jsonl").open()]
        for rank in (0, 1)
    }
    assert len(records[0]) == len(records[1]) == HEAD_EPOCHS + FINETUNE_EPOCHS
    for first, second in zip(records[0], records[1], strict=True):
        assert first["epoch"] == second["epoch"]
        (seen0,) = first["replicas"]["0"]  # one step per epoch
        (seen1,) = second["replicas"]["1"]
        assert not set(seen0) & set(seen1) and len(seen0) == len(seen1) == 4
        order = np.random.default_rng([0, first["epoch"]]).permutation(len(train_ids))
        expected = train_ids[global_rows(order, 0, 8)].tolist()
        assert seen0 + seen1 == expected  # together: the one-machine batch of 8


def test_two_workers_match_one_machine_at_the_same_global_batch(single_run, two_worker_run):
    one = [h["loss"] for h in _history(single_run)]
    two = [h["loss"] for h in _history(two_worker_run)]
    assert len(one) == len(two) == HEAD_EPOCHS + FINETUNE_EPOCHS  # one step each
    assert np.ptp(one) > 1e-3  # the loss moves, so equality is not trivial
    np.testing.assert_allclose(two, one, rtol=0, atol=LOSS_TOLERANCE)


def test_killing_a_worker_stops_the_run_clearly_and_the_run_resumes(two_worker_run, work):
    run = work / "killed"
    args = _train_args(work / "ham", work / "cache", run, batch=4)
    args += ["--distributed", "--lr-scaling", "none", "--collective-timeout", "10"]
    chief, worker = _launch_workers(args, work / "tmp", "kill")
    deadline = time.time() + 240
    while not (run / "state.json").exists() and chief.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert (run / "state.json").exists(), _log(work / "tmp", "kill", 0)
    worker.send_signal(signal.SIGKILL)
    killed_at = time.time()
    worker.wait()
    try:
        chief.wait(timeout=90)
    except subprocess.TimeoutExpired:
        chief.kill()
        pytest.fail("the chief hung after its peer died")
    log = _log(work / "tmp", "kill", 0)
    assert chief.returncode == 2, log
    assert "distributed run stopped on worker 0" in log and f"--resume {run}" in log
    assert "Traceback" not in log
    stopped_after = time.time() - killed_at
    assert stopped_after < 60
    assert len(_history(run)) < HEAD_EPOCHS + FINETUNE_EPOCHS  # it did stop mid-run
    assert not (run / "model.keras").exists()

    procs = _launch_workers(["--resume", str(run)], work / "tmp", "resume")
    _wait_all(procs, work / "tmp", "resume", timeout=300)
    assert (run / "model.keras").is_file() and (run / "calibration.json").is_file()
    resumed = [h["loss"] for h in _history(run)]
    uninterrupted = [h["loss"] for h in _history(two_worker_run)]
    np.testing.assert_allclose(resumed, uninterrupted, rtol=0, atol=LOSS_TOLERANCE)


def test_tf_config_names_the_chief_and_the_ranks():
    cluster = {"chief": ["a:1"], "worker": ["b:1", "c:1"]}
    chief = cluster_task(
        {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "chief", "index": 0}})}
    )
    worker = cluster_task(
        {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}})}
    )
    assert chief.is_chief and chief.rank == 0 and chief.num_workers == 3
    assert not worker.is_chief and worker.rank == 2 and worker.addresses == ("a:1", "b:1", "c:1")
    assert chief.leader == worker.leader == "/job:chief/replica:0/task:0"
    plain = cluster_task(
        {
            "TF_CONFIG": json.dumps(
                {"cluster": {"worker": ["b:1"]}, "task": {"type": "worker", "index": 0}}
            )
        }
    )
    assert plain.is_chief and plain.leader == "/job:worker/replica:0/task:0"


@pytest.mark.parametrize(
    "tf_config, match",
    [
        (None, "needs TF_CONFIG"),
        ("{not json", "not a valid cluster spec"),
        ({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}, "no worker 3"),
        ({"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}, "does not train"),
    ],
)
def test_a_bad_tf_config_is_a_config_error(tf_config, match):
    environ = (
        {}
        if tf_config is None
        else {"TF_CONFIG": tf_config if isinstance(tf_config, str) else json.dumps(tf_config)}
    )
    with pytest.raises(ConfigError, match=match):
        cluster_task(environ)


def test_distributed_without_tf_config_is_one_clear_line(synthetic_ham, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "device.cli", "train", "--data", str(synthetic_ham),
         "--run", str(tmp_path / "run"), "--distributed"],
        capture_output=True, text=True, timeout=120, env=_env(tmp_path),
    )  # fmt: skip
    assert done.returncode == 2
    assert "needs TF_CONFIG" in done.stderr and "Traceback" not in done.stderr


def test_a_frozen_worker_is_noticed_by_its_heartbeat_not_a_silent_hang(two_worker_run, work):
    """SIGSTOP keeps the worker's sockets open, so only the heartbeat/timeout can notice."""
    run = work / "frozen"
    args = _train_args(work / "ham", work / "cache", run, batch=4)
    args += ["--distributed", "--lr-scaling", "none", "--collective-timeout", "5"]
    chief, worker = _launch_workers(args, work / "tmp", "frozen")
    try:
        deadline = time.time() + 240
        while not (run / "state.json").exists() and chief.poll() is None:
            assert time.time() < deadline, _log(work / "tmp", "frozen", 0)
            time.sleep(0.1)
        worker.send_signal(signal.SIGSTOP)
        frozen_at = time.time()
        try:
            chief.wait(timeout=90)
        except subprocess.TimeoutExpired:
            chief.kill()
            pytest.fail("the chief hung on a frozen peer")
        log = _log(work / "tmp", "frozen", 0)
        assert chief.returncode == 2, log
        assert "stopped answering" in log and "Traceback" not in log
        # heartbeat timeout (5 s) + shutdown barrier (at most 5 s) + margin for a loaded CI box
        assert time.time() - frozen_at < 45
    finally:
        worker.kill()
        worker.wait()


def test_linear_scaling_multiplies_learning_rates_by_the_replicas():
    task = cluster_task(
        {
            "TF_CONFIG": json.dumps(
                {"cluster": {"worker": ["a:1"] * 4}, "task": {"type": "worker", "index": 0}}
            )
        }
    )
    cfg = TrainConfig(data_dir="", run_dir="", batch_size=16)
    record = distribution_record(cfg, task, replicas=4)
    assert (record["global_batch_size"], record["lr_scale"], record["workers"]) == (64, 4.0, 4)
    cfg.lr_scaling = "none"
    assert distribution_record(cfg, task, replicas=4)["lr_scale"] == 1.0
    cfg.lr_scaling = "sqrt"
    with pytest.raises(ConfigError, match="lr_scaling"):
        distribution_record(cfg, task, replicas=4)
