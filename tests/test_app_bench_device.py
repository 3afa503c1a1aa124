"""`skinscan bench device`: the figures it reports and the MAC count it is based on."""

from __future__ import annotations

import argparse
import json

import pytest
from bundle_factory import make_bundle

from device.bench.device import configure, count_macs, main


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("bundle") / "bundle")


def test_mac_count_matches_the_tiny_model_architecture(bundle_dir):
    # tests/bundle_factory.tiny_keras_model: four 3x3 convs (stride 4, 2, 2, 2) of
    # 16, 16, 32, 32 filters on 224x224x3, then GAP and Dense(7).
    conv = [(56, 3, 16), (28, 16, 16), (14, 16, 32), (7, 32, 32)]
    expected = sum(side * side * c_out * 3 * 3 * c_in for side, c_in, c_out in conv) + 32 * 7
    macs = count_macs(bundle_dir / "model.tflite")
    assert macs["total"] == expected == 4_516_064
    assert macs["FULLY_CONNECTED"] == 32 * 7
    assert "DEPTHWISE_CONV_2D" not in macs


def test_benchmark_writes_the_required_json(tmp_path, bundle_dir, capsys):
    parser = argparse.ArgumentParser()
    configure(parser)
    out = tmp_path / "bench.json"
    args = parser.parse_args(
        ["--bundle", str(bundle_dir), "--captures", "4", "--preview-frames", "20",
         "--size", "480x320", "--json", str(out)]
    )  # fmt: skip
    assert main(args) == 0
    figures = json.loads(out.read_text())
    for key in ("capture_to_result_ms", "inference_ms", "gradcam_ms", "render_ms"):
        assert set(figures[key]) == {"median", "p95"}
        assert 0 < figures[key]["median"] <= figures[key]["p95"]
    assert figures["capture_to_result_ms"]["median"] > figures["inference_ms"]["median"]
    # The simulator's phantoms cycle through nevus, melanoma, a checkered object that is
    # no lesion (Retake since issue 28) and a blurred nevus (Retake).
    assert figures["results"] + figures["retakes"] == 4 and figures["results"] >= 2
    assert figures["preview_fps"] > 0
    assert 50 < figures["peak_rss_mb"] < 2000
    assert figures["model_bytes"] == (bundle_dir / "model.tflite").stat().st_size
    assert figures["macs"] == 4_516_064
    assert "ESTIMATE" in figures["pi_estimates"]["basis"]
    table = capsys.readouterr().out
    assert "capture_to_result" in table and "ESTIMATE pi4" in table
