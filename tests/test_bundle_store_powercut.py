"""SIGKILL at random moments of 100 bundle installs: a loadable, verified bundle every time.

A child process (forked, so it starts in milliseconds with everything imported) installs
two signed bundles in turn, for ever, reporting each install step through a pipe. The
test kills it with SIGKILL after a random delay, then opens the store afresh, as the app
does at start-up, and loads the current bundle with full verification (signature, every
file's sha256, both models). SIGKILL stops the process at any instruction, but the page
cache survives it; losing unsynced writes to a power cut is what the fsync order in
device.bundles.store is for (file, folder, rename, folder), which a test here cannot cut.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from signed_bundles import make_keys, signed_bundle

from device.bundles import BundleStore

KILLS = 100


def _child(root: Path, keys: dict[str, bytes], bundles: list[Path], report: int) -> None:
    """Install the bundles in turn for ever, writing each step's name to ``report``."""
    store = BundleStore(root, keys)
    first = 0 if store.status().current.bundle_id == "b" else 1  # every install a real switch
    for n in range(first, 10**6):
        os.write(report, b"start\n")
        store.install(bundles[n % 2], progress=lambda step: os.write(report, f"{step}\n".encode()))
        os.write(report, b"done\n")


def _read_all(fd: int) -> str:
    chunks = []
    while select.select([fd], [], [], 0)[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode()


@pytest.mark.slow  # 10-25 s here; up to 45 s on a loaded machine
def test_sigkill_at_random_moments_of_100_installs_always_leaves_a_loadable_bundle(tmp_path):
    private, _, keys = make_keys(tmp_path / "keys")
    bundles = [
        signed_bundle(tmp_path / "a", private, bundle_id="a"),
        signed_bundle(tmp_path / "b", private, bundle_id="b", calibration={"temperature": 1.2}),
    ]
    root = tmp_path / "store"
    BundleStore(root, keys).install(bundles[0])  # the scanner runs "a" before the first kill
    # How long one install takes here (median of 3), to spread the kills over the first
    # two or three installs of each child.
    times = []
    for n in (1, 0, 1):
        t0 = time.perf_counter()
        BundleStore(root, keys).install(bundles[n])
        times.append(time.perf_counter() - t0)
    install_s = float(np.median(times))
    rng = np.random.default_rng(2026)
    where: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    completed = 0
    for _ in range(KILLS):
        before = BundleStore(root, keys).status().current
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                os.close(read_fd)
                _child(root, keys, bundles, write_fd)
            finally:
                os._exit(0)
        os.close(write_fd)
        time.sleep(rng.uniform(0.0, 3.0 * install_s))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status), "the child must die by SIGKILL, not finish or fail"
        log = _read_all(read_fd).split()
        os.close(read_fd)
        completed += log.count("done")
        where[log[-1] if log else "starting"] += 1

        fresh = BundleStore(root, keys)  # start-up: cleans what the cut install left
        bundle = fresh.load_current()  # signature, files, models: raises if not loadable
        assert bundle.bundle_id in ("a", "b")
        current = fresh.status().current
        outcomes["switched" if current.dir != before.dir else "kept"] += 1
        left = {p.name for p in (root / "installed").iterdir()}
        assert left == fresh.state().referenced_dirs(), "leftovers were not cleaned"
        assert not list(root.glob(".tmp-*"))
        assert fresh.previous() is not None
        fresh.load_current()
    print(
        f"\n{KILLS} kills, one install {install_s * 1000:.0f} ms, {completed} installs "
        f"completed between kills; killed during: {dict(where)}; outcome: {dict(outcomes)}"
    )
    # The kills fell both before and after a switch, and into several steps of an install.
    assert outcomes["switched"] > 0 and outcomes["kept"] > 0
    assert len(where) >= 3
