"""The benchmarks' JSON output: `skinscan bench ... --json out/x.json` makes `out/`."""

from __future__ import annotations

import json

from device.bench.stats import write_json


def test_write_json_creates_the_missing_folders(tmp_path):
    out = tmp_path / "out" / "deeper" / "x.json"
    write_json(out, {"median": 1.5})
    assert json.loads(out.read_text()) == {"median": 1.5}


def test_skinscan_bench_json_into_a_folder_that_does_not_exist_yet(tmp_path, monkeypatch, capsys):
    from device.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["bench", "pipeline", "--repeats", "2", "--json", "out/x.json"]) == 0
    report = json.loads((tmp_path / "out" / "x.json").read_text())
    assert report["stages"] and "total_preprocess" in capsys.readouterr().out
