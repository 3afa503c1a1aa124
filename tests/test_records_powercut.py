"""Power cuts: a child process saves scans in a loop and is killed with SIGKILL at random.

After every kill the parent opens the store as the app would at the next start
and checks that the database is sound, that every record whose ``save()`` had
returned is present and decrypts, and that the record being saved at the kill
is either whole or entirely absent (no row, no file).

SIGKILL stops the process but not the kernel, so this proves the store's
ordering and atomicity (what a crash at any instruction can leave behind). That
the fsyncs reach the SD card before a battery is pulled is the job of the
fsync calls, which a process kill cannot test.

Environment: ``SKINSCAN_POWERCUT_CYCLES`` (default 200), ``SKINSCAN_POWERCUT_SEED``.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import time
import traceback
import uuid
from collections import Counter
from pathlib import Path

import pytest

from device.records.paths import DB_NAME, IMAGES_DIR
from device.records.store import SqliteScanStore
from device.records.testing import make_record

CYCLES = int(os.environ.get("SKINSCAN_POWERCUT_CYCLES", "200"))
MAX_DELAY_S = 0.12


def _child(data_dir: Path, pipe: int, cycle: int) -> None:
    """Save records forever, reporting each scan id before and after save(). Never returns."""
    try:
        store = SqliteScanStore(data_dir, min_free_bytes=0)  # the default key file
        os.write(pipe, b"open\n")
        for n in range(1_000_000):
            record = make_record(cycle * 1000 + n, size=24, scan_id=str(uuid.uuid4()))
            os.write(pipe, f"start {record.scan_id}\n".encode())
            store.save(record)
            os.write(pipe, f"done {record.scan_id}\n".encode())
    except BaseException:
        os.write(pipe, ("error " + traceback.format_exc().replace("\n", " | ") + "\n").encode())
        os._exit(3)
    os._exit(4)


def _read_all(fd: int) -> list[str]:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    text = b"".join(chunks).decode()
    return [line for line in text.split("\n")[:-1]]  # a torn last line is dropped


def _run_one_cycle(data_dir: Path, cycle: int, delay: float) -> list[str]:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_end)
        _child(data_dir, write_end, cycle)
    os.close(write_end)
    time.sleep(delay)
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    lines = _read_all(read_end)
    errors = [line for line in lines if line.startswith("error")]
    assert not errors, errors
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
    return lines


@pytest.mark.slow
def test_power_cut_loses_no_saved_scan(tmp_path, capsys):
    seed = int(os.environ.get("SKINSCAN_POWERCUT_SEED", str(time.time_ns() % 2**31)))
    rng = random.Random(seed)
    data_dir = tmp_path / "data"
    acknowledged: set[str] = set()
    checked_seq = 0
    counts: Counter[str] = Counter()
    started = time.monotonic()

    for cycle in range(CYCLES):
        lines = _run_one_cycle(data_dir, cycle, rng.uniform(0.0, MAX_DELAY_S))
        begun = [line.split()[1] for line in lines if line.startswith("start")]
        done = {line.split()[1] for line in lines if line.startswith("done")}
        acknowledged |= done
        in_flight = [sid for sid in begun if sid not in done]
        assert len(in_flight) <= 1
        if "open" not in lines:
            counts["killed while opening"] += 1
        elif in_flight:
            counts["killed inside save()"] += 1
        else:
            counts["killed between saves"] += 1

        # The next start, as the app would do it.
        with SqliteScanStore(data_dir, min_free_bytes=0) as store:
            context = f"cycle {cycle} (seed {seed})"
            assert store.notices == [], context
            counts["temporary files swept"] += store.swept.temporary_files
            counts["unreferenced files swept"] += store.swept.unreferenced_files
            conn = sqlite3.connect(data_dir / DB_NAME)
            try:
                integrity = [r[0] for r in conn.execute("PRAGMA integrity_check")]
                rows = conn.execute(
                    "SELECT seq, scan_id, image_file, heatmap_file FROM scans"
                ).fetchall()
            finally:
                conn.close()
            assert integrity == ["ok"], context
            present = {row[1] for row in rows}
            missing = acknowledged - present
            assert not missing, f"{context}: saved scans lost: {sorted(missing)}"
            for seq, scan_id, *_ in rows:  # every row that appeared since the last start
                if seq > checked_seq:
                    store.get(scan_id)  # whole: authenticated and decodable
            checked_seq = max([checked_seq, *(row[0] for row in rows)])
            referenced = {name for row in rows for name in row[2:] if name}
            on_disk = {p.name for p in (data_dir / IMAGES_DIR).iterdir()}
            assert on_disk == referenced, f"{context}: stray files {on_disk ^ referenced}"
            for sid in in_flight:
                if sid in present:
                    counts["interrupted save: whole record kept"] += 1
                else:
                    assert not any(sid in name for name in on_disk), context
                    counts["interrupted save: nothing kept"] += 1

    with SqliteScanStore(data_dir, min_free_bytes=0) as store:
        report = store.verify()
        total = len(store)
        for sid in acknowledged:
            store.get(sid)
    assert report.ok, report
    assert counts["killed inside save()"] > 0, "no kill landed inside a save: nothing was tested"
    assert len(acknowledged) > 0
    with capsys.disabled():
        print(
            f"\n[power cut] {CYCLES} SIGKILLs in {time.monotonic() - started:.0f} s (seed {seed}): "
            f"{len(acknowledged)} saves returned, all present and decrypting; "
            f"{total} records on disk ({total - len(acknowledged)} committed just before the "
            "kill, unreported); integrity_check ok every time"
        )
        for name, value in sorted(counts.items()):
            print(f"[power cut]   {name}: {value}")
