"""`skinscan bench pipeline` times every stage of the shipped spec and writes JSON."""

import argparse
import json

from device.bench import pipeline


def test_bench_pipeline_times_every_stage(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert pipeline.main(argparse.Namespace(repeats=2, json=str(out))) == 0
    report = json.loads(out.read_text())
    assert report["spec_version"] == pipeline.shipped_spec().version
    stages = report["stages"]
    assert set(stages) == set(pipeline.SIZES)
    for figures in stages.values():
        assert {
            "quality_gate",
            "colour",
            "hair_removal",
            "segmentation",
            "total_preprocess",
        } <= set(figures)
        assert all(stage["median"] > 0 for stage in figures.values())
    assert "total_preprocess" in capsys.readouterr().out
