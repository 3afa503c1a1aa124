"""Conversion parity on a small bundle made here from a small Keras model.

The model has the production contract (feature_map -> gap -> dropout -> logits)
and is trained for a few seconds on synthetic lesions whose colour encodes the
class, so its predictions have real margins, like a trained model's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bundle_factory import N_CLASSES, synthetic_frame, tiny_keras_model, write_split_csv

pytestmark = pytest.mark.tf
tf = pytest.importorskip("tensorflow")

from conversion import parity, tflite  # noqa: E402
from conversion.convert import ConversionError, convert_run, representative_indices  # noqa: E402
from conversion.manifest import write_bundle  # noqa: E402
from device.imaging.pipeline import default_spec  # noqa: E402
from device.labels import CLASS_CODES  # noqa: E402
from device.runtime import Analyzer, load_bundle  # noqa: E402
from device.runtime.interpreter import available_runtimes  # noqa: E402

SPLIT_SIZES = {"train": 420, "val": 210, "test": 140}


def synthetic_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic lesions drawn directly at 224x224 (the model-input space)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % N_CLASSES
    rng.shuffle(labels)
    images = np.stack([synthetic_frame(int(c), rng, 224, 224) for c in labels])
    return images, labels.astype(np.int64)


@pytest.fixture(scope="module")
def splits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {name: synthetic_split(n, seed) for seed, (name, n) in enumerate(SPLIT_SIZES.items())}


@pytest.fixture(scope="module")
def model(splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> Any:
    import keras

    x, y = splits["train"]
    m = tiny_keras_model(seed=1)
    m.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    m.fit(x.astype(np.float32), y, epochs=6, batch_size=32, verbose=0)
    return m


def write_run(run_dir: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(
        json.dumps(
            {
                # Words from an older release: the bundle must restate the current rule.
                "preprocessing": {**default_spec(3).to_dict(), "resize_rule": "stale words"},
                "backbone": "tiny",
                "seed": 0,
            }
        )
    )
    (run_dir / "calibration.json").write_text(
        json.dumps(
            {
                "temperature": 1.3,
                "referral_threshold": 0.35,
                "uncertainty_threshold": 0.5,
                "fitted_on": "val",
            }
        )
    )
    (run_dir / "provenance.json").write_text(
        json.dumps(
            {
                "run_id": "tiny-run",
                "data_hash": "d" * 16,
                "split_hash": "s" * 16,
                "backbone": "tiny",
                "weights_source": "random init",
                "weights_licence": "Apache-2.0",
                "dataset": "synthetic lesions",
                "best_epoch": "finetune-3",
            }
        )
    )
    write_split_csv(run_dir / "split.csv", splits)
    return run_dir


@pytest.fixture(scope="module")
def converted(
    tmp_path_factory: pytest.TempPathFactory, splits: dict[str, Any], model: Any
) -> tuple[Any, Path]:
    run_dir = write_run(tmp_path_factory.mktemp("run") / "tiny-run", splits)
    result = convert_run(
        run_dir,
        loader=lambda _run, split: splits[split],
        keras_model=model,
        gradcam_images=60,
        n_boot=100,
    )
    bundle_dir = write_bundle(run_dir.parent / "bundle", result.files, result.manifest)
    return result, bundle_dir


def test_int8_matches_float_on_validation(converted: tuple[Any, Path]) -> None:
    result, _ = converted
    val = result.report["classifier_val"]
    assert val["n"] == SPLIT_SIZES["val"]
    assert val["top1_agreement"] >= 0.98
    assert val["referral_agreement"] >= 0.97
    assert val["balanced_accuracy_drop"] <= 0.01
    # The model learned the task, so agreement is not the agreement of two coin flips.
    assert val["balanced_accuracy_float"] >= 0.7


def test_bundle_calibration_is_refitted_on_the_int8_outputs(converted: tuple[Any, Path]) -> None:
    result, _ = converted
    fitted = result.report["calibration"]
    assert fitted["float_fitted"] == {"temperature": 1.3, "referral_threshold": 0.35}
    cal = result.manifest.calibration
    assert cal.temperature == fitted["int8_fitted"]["temperature"] != 1.3
    assert cal.referral_threshold == fitted["int8_fitted"]["referral_threshold"]
    assert result.manifest.metrics["int8_test"]["referral_threshold"] == cal.referral_threshold


def test_gradcam_matches_float_gradient_tape_reference(converted: tuple[Any, Path]) -> None:
    cam = converted[0].report["gradcam"]
    assert cam["n"] >= 40
    assert cam["corr_float_min"] >= 0.99
    assert cam["corr_int8_mean"] >= 0.90


def test_gradcam_submodel_equals_closed_form_for_gap_dense_head(
    converted: tuple[Any, Path], model: Any
) -> None:
    _, bundle_dir = converted
    explainer = load_bundle(bundle_dir).explainer
    kernel = tflite.dense_kernel(model)
    _, h, w, c = explainer.spec.feature_map.shape
    fm = np.random.default_rng(7).uniform(0, 3, size=(h, w, c)).astype(np.float32)
    for k in range(N_CLASSES):
        got = explainer.explain(fm, k)
        np.testing.assert_allclose(got.weights, kernel[:, k] / (h * w), rtol=1e-5, atol=1e-7)
        expected_cam = np.maximum(fm @ (kernel[:, k] / (h * w)), 0.0)
        np.testing.assert_allclose(got.cam, expected_cam, rtol=1e-4, atol=1e-6)
    assert tflite.is_gap_dense_head(model)
    assert converted[0].report["oracle_max_error"] <= 1e-5


def test_bundle_is_full_integer_and_builtin_only(converted: tuple[Any, Path]) -> None:
    result, bundle_dir = converted
    manifest = load_bundle(bundle_dir).manifest
    assert manifest.classifier.input.dtype == "uint8"
    assert manifest.classifier.logits.dtype == "int8"
    assert manifest.classifier.feature_map.dtype == "int8"
    assert manifest.classifier.feature_map.shape == (1, 7, 7, 32)
    interpreter = tf.lite.Interpreter(model_content=result.files["model.tflite"])
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert not {"FlexConv2D", "DEQUANTIZE", "VAR_HANDLE"} & ops
    grad_ops = {
        op["op_name"]
        for op in tf.lite.Interpreter(
            model_content=result.files["gradcam.tflite"]
        )._get_ops_details()
    }
    assert not any(
        op.startswith("Flex") or op in {"VAR_HANDLE", "READ_VARIABLE"} for op in grad_ops
    )


def test_runtimes_agree_within_quantization_tolerance(
    converted: tuple[Any, Path], splits: Any
) -> None:
    from device import metrics

    result, bundle_dir = converted
    runtimes = result.report["runtimes"]
    assert set(runtimes) == set(available_runtimes())
    assert "ai_edge_litert" in runtimes
    close_call = parity.ParityThresholds().runtime_close_call
    for name, r in runtimes.items():
        assert r["top1_agreement"] >= 0.98, name
        assert r["max_logit_diff_steps"] <= 8, name
        assert r["far_referral_disagreements"] == 0, name
    # Recompute the decisions: runtimes may differ only on images at the threshold.
    images = splits["val"][0][:64]
    threshold = load_bundle(bundle_dir).manifest.calibration.referral_threshold
    p = {
        name: metrics.malignant_probability(
            np.stack([load_bundle(bundle_dir, runtime=name).classifier.classify(x).probabilities
                      for x in images])
        )
        for name in runtimes
    }  # fmt: skip
    base = p["ai_edge_litert"]
    for name, other in p.items():
        differ = (other >= threshold) != (base >= threshold)
        assert np.mean(~differ) == pytest.approx(runtimes[name]["referral_agreement"]), name
        assert np.all(np.abs(base[differ] - threshold) < close_call), name


def test_a_runtime_that_computes_something_else_fails_the_gate() -> None:
    report = {"runtimes": {"broken": {"far_referral_disagreements": 3, "max_logit_diff_steps": 40}}}
    failed = parity.failures(report, parity.ParityThresholds())
    assert any("3 referral decisions differ" in line for line in failed)
    assert any("40.0 steps" in line for line in failed)
    near = {"runtimes": {"ok": {"far_referral_disagreements": 0, "max_logit_diff_steps": 3}}}
    assert parity.failures(near, parity.ParityThresholds()) == []


def test_bundle_runs_the_same_in_each_runtime(converted: tuple[Any, Path], splits: Any) -> None:
    _, bundle_dir = converted
    images = splits["val"][0][:20]
    logits = {}
    for name in available_runtimes():
        clf = load_bundle(bundle_dir, runtime=name).classifier
        logits[name] = np.stack([clf.classify(x).logits for x in images])
    base = logits["ai_edge_litert"]
    scale = load_bundle(bundle_dir).manifest.classifier.logits.quantization.scale
    for name, other in logits.items():
        np.testing.assert_allclose(other, base, atol=8 * scale, err_msg=name)


def test_manifest_records_provenance_metrics_and_card(converted: tuple[Any, Path]) -> None:
    result, bundle_dir = converted
    manifest = load_bundle(bundle_dir).manifest
    assert manifest.provenance.run_id == "tiny-run"
    assert manifest.provenance.data_source == "synthetic lesions"
    assert manifest.provenance.extra["best_epoch"] == "finetune-3"
    assert "tensorflow" in manifest.provenance.converter
    fitted = result.report["calibration"]["int8_fitted"]
    assert manifest.calibration.referral_threshold == fitted["referral_threshold"]
    int8 = manifest.metrics["int8_test"]
    assert int8["n_images"] == SPLIT_SIZES["test"]
    assert set(int8["ci95"]) >= {"balanced_accuracy", "malignant_auc", "sensitivity"}
    assert "MODEL_CARD.md" in manifest.files
    card = (bundle_dir / "MODEL_CARD.md").read_text()
    for heading in (
        "## Intended use",
        "## Data and licence",
        "## Metrics",
        "## Subgroup",
        "## Limitations",
    ):
        assert heading in card
    assert "not a diagnosis" in card
    assert "int8 model's own outputs" in card
    missed = 1 - int8["melanoma_sensitivity"]
    assert f"{missed:.0%} of the test split's melanomas were not referred" in card
    assert manifest.preprocessing["resize_rule"] == default_spec(3).to_dict()["resize_rule"]
    assert f"{int8['balanced_accuracy']:.3f}" in card
    assert "By sex" in card
    assert result.report["representative"]["n"] == SPLIT_SIZES["train"]  # all of a small split
    assert result.report["representative"]["classes"] == list(CLASS_CODES)


def test_analyzer_runs_the_converted_bundle(converted: tuple[Any, Path]) -> None:
    _, bundle_dir = converted
    frame = synthetic_frame(CLASS_CODES.index("vasc"), np.random.default_rng(9))
    result = Analyzer.from_path(bundle_dir).analyze(frame)
    assert result.heatmap is not None and result.heatmap.max() == pytest.approx(1.0)


def test_representative_sample_covers_every_class() -> None:
    labels = np.array([5] * 900 + [0] * 40 + [1] * 30 + [2] * 60 + [3] * 8 + [4] * 50 + [6] * 12)
    idx = representative_indices(labels, 300, seed=0)
    assert len(idx) == 300 == len(set(idx.tolist()))
    counts = np.bincount(labels[idx], minlength=7)
    assert counts.min() >= 8 and counts[3] == 8
    with pytest.raises(ConversionError, match="no images of"):
        representative_indices(labels[labels != 3], 300)
    with pytest.raises(ConversionError, match="needs 300"):
        representative_indices(labels[:100], 300)


def test_parity_failures_are_reported() -> None:
    report = {
        "classifier_val": {
            "top1_agreement": 0.9,
            "referral_agreement": 0.96,
            "balanced_accuracy_drop": 0.03,
        },
        "gradcam": {"corr_float_min": 0.5, "corr_int8_mean": 0.4},
        "oracle_max_error": 0.1,
        "runtimes": {
            "x": {
                "top1_agreement": 0.5,
                "referral_agreement": 0.9,
                "far_referral_disagreements": 2,
                "max_logit_diff_steps": 20.0,
            }
        },
    }
    lines = parity.failures(report, parity.ParityThresholds())
    assert len(lines) == 7
    assert any("referral agreement 0.960" in line for line in lines)
    # Top-1 agreement is reported, not gated: the referral decision is what matters.
    ok = {
        "classifier_val": {
            "top1_agreement": 0.95,
            "referral_agreement": 0.975,
            "balanced_accuracy_drop": 0.009,
        },
        "gradcam": {"corr_float_min": 1.0, "corr_int8_mean": 0.95},
        "oracle_max_error": 0.0,
        "runtimes": {
            "x": {
                "top1_agreement": 0.95,
                "referral_agreement": 0.95,  # flips on close calls only: not a failure
                "far_referral_disagreements": 0,
                "max_logit_diff_steps": 1.0,
            }
        },
    }
    assert parity.failures(ok, parity.ParityThresholds()) == []


def test_map_correlation() -> None:
    a = np.arange(9.0).reshape(3, 3)
    assert parity.map_correlation(a, 2 * a + 1) == pytest.approx(1.0)
    assert parity.map_correlation(a, -a) == pytest.approx(-1.0)
    assert np.isnan(parity.map_correlation(a, np.zeros((3, 3))))


def test_convert_cli_writes_a_loadable_bundle(
    tmp_path: Path, splits: Any, model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conversion import convert as convert_module
    from device.cli import main

    run_dir = write_run(tmp_path / "run", splits)
    model.save(run_dir / "model.keras")
    monkeypatch.setattr(convert_module, "default_loader", lambda: lambda _r, s: splits[s])
    out = tmp_path / "bundle"
    argv = ["convert", str(run_dir), "--out", str(out), "--gradcam-images", "20"]
    # Without the run's images the shift step cannot run: said before anything is written.
    assert main(argv) == 2
    assert not out.exists()
    argv.append("--no-shift-threshold")
    assert main(argv) == 0
    assert load_bundle(out).manifest.provenance.run_id == "tiny-run"
    # A second conversion into the same folder needs --overwrite.
    assert main(argv) == 2
    assert main([*argv, "--overwrite"]) == 0


def test_convert_cli_reports_a_missing_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from device.cli import main

    assert main(["convert", str(tmp_path / "nope"), "--out", str(tmp_path / "b")]) == 2
    assert "run folder not found" in capsys.readouterr().err
