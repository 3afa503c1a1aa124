"""Ensembles: two runs on one split become one model that converts like a single one."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bundle_factory import N_CLASSES, synthetic_frame, train_tiny_model, write_split_csv

pytestmark = pytest.mark.tf
pytest.importorskip("tensorflow")

from device.errors import ConfigError, DatasetError  # noqa: E402
from device.imaging.pipeline import default_spec  # noqa: E402
from training.ensemble import (  # noqa: E402
    Member,
    build_ensemble,
    check_compatible,
    ensemble_runs,
)

SIZES = {"train": 308, "val": 140, "test": 70}


def _split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % N_CLASSES
    rng.shuffle(labels)
    return np.stack([synthetic_frame(int(c), rng, 224, 224) for c in labels]), labels


@pytest.fixture(scope="module")
def splits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {name: _split(n, seed) for seed, (name, n) in enumerate(SIZES.items())}


@pytest.fixture(scope="module")
def members(splits: dict[str, Any]) -> list[Any]:
    x, y = splits["train"]
    return [train_tiny_model(x, y, epochs=3, seed=seed) for seed in (1, 2)]


def _write_member(run_dir: Path, model: Any, seed: int, splits: dict[str, Any]) -> Path:
    run_dir.mkdir(parents=True)
    model.save(run_dir / "model.keras")
    config = {
        "data_dir": "/data/ham",
        "run_dir": str(run_dir),
        "seed": seed,
        "split_seed": 0,
        "input_size": 224,
        "preprocessing": default_spec(3).to_dict(),
        "min_sensitivity": 0.9,
        "threshold_confidence": 0.0,
        "uncertainty_threshold": 0.5,
        "backbone": "tiny",
    }
    (run_dir / "config.json").write_text(json.dumps(config))
    (run_dir / "provenance.json").write_text(
        json.dumps(
            {
                "run_id": run_dir.name,
                "data_hash": "d" * 16,
                "split_hash": "s" * 16,
                "backbone": "tiny",
                "weights_source": "random init",
                "weights_licence": "Apache-2.0",
                "dataset": "synthetic lesions",
            }
        )
    )
    (run_dir / "state.json").write_text(
        json.dumps({"elapsed_s": 60.0 * seed, "best_epoch": f"deep-{seed}"})
    )
    write_split_csv(run_dir / "split.csv", splits)
    logits = {
        f"{name}_logits": model.predict(splits[name][0].astype(np.float32), verbose=0)
        for name in ("val", "test")
    }
    np.savez(
        run_dir / "logits.npz",
        **logits,
        val_labels=splits["val"][1],
        test_labels=splits["test"][1],
    )
    return run_dir


@pytest.fixture(scope="module")
def member_runs(
    tmp_path_factory: pytest.TempPathFactory, members: list[Any], splits: dict[str, Any]
) -> list[Path]:
    root = tmp_path_factory.mktemp("members")
    return [
        _write_member(root / f"run-seed{seed}", model, seed, splits)
        for seed, model in zip((1, 2), members, strict=True)
    ]


def test_ensemble_logits_are_the_mean_of_the_members(members, splits):
    ensemble = build_ensemble(members)
    images = splits["test"][0][:16].astype(np.float32)
    expected = np.mean([m.predict(images, verbose=0) for m in members], axis=0)
    np.testing.assert_allclose(ensemble.predict(images, verbose=0), expected, atol=1e-4)
    assert ensemble.get_layer("feature_map").output.shape[-1] == 2 * 32


def test_ensemble_head_keeps_gradcam_equal_to_cam(members):
    from conversion import tflite

    ensemble = build_ensemble(members)
    assert tflite.is_gap_dense_head(ensemble)
    kernel = tflite.dense_kernel(ensemble)
    halves = [tflite.dense_kernel(m) / 2 for m in members]
    np.testing.assert_allclose(kernel, np.concatenate(halves), atol=1e-7)


def test_members_on_different_splits_are_refused(member_runs, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    for path in member_runs[1].iterdir():
        (other / path.name).write_bytes(path.read_bytes())
    rows = (other / "split.csv").read_text().splitlines()
    rows[1] = rows[1].replace(",train,", ",test,")
    (other / "split.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(ConfigError, match="different splits"):
        check_compatible([Member.load(member_runs[0]), Member.load(other)])


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"seed": 1}, "share a seed"),
        ({"input_size": 192}, "input_size"),
        ({"preprocessing": {**default_spec(3).to_dict(), "hair_removal": False}}, "preprocessing"),
    ],
)
def test_incompatible_members_are_refused(member_runs, change, match):
    first, second = (Member.load(run) for run in member_runs)
    altered = Member(second.run_dir, {**second.config, **change}, second.split_csv, second.logits)
    with pytest.raises(ConfigError, match=match):
        check_compatible([first, altered])


def test_members_whose_spec_differs_only_in_its_wording_are_accepted(member_runs):
    first, second = (Member.load(run) for run in member_runs)
    spec = {**second.config["preprocessing"], "resize_rule": "older words"}
    reworded = Member(
        second.run_dir, {**second.config, "preprocessing": spec}, second.split_csv, second.logits
    )
    check_compatible([first, reworded])


def test_one_member_or_an_unfinished_run_is_refused(member_runs, tmp_path):
    with pytest.raises(ConfigError, match="at least two"):
        check_compatible([Member.load(member_runs[0])])
    with pytest.raises(DatasetError, match="not a finished training run"):
        Member.load(tmp_path)


def test_ensemble_run_converts_to_a_bundle_the_device_runs(member_runs, splits, tmp_path):
    from bundle_factory import synthetic_frame as frame

    from conversion.convert import convert_run
    from conversion.manifest import write_bundle
    from device.runtime import Analyzer

    out = tmp_path / "ensemble"
    summary = ensemble_runs(member_runs, out)
    config = json.loads((out / "config.json").read_text())
    assert config["ensemble"]["member_seeds"] == [1, 2]
    assert summary.train_seconds == pytest.approx(180.0)
    with np.load(out / "logits.npz") as logits:
        members = [np.load(run / "logits.npz")["test_logits"] for run in member_runs]
        np.testing.assert_allclose(logits["test_logits"], np.mean(members, axis=0), atol=1e-6)
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["balanced_accuracy"] <= 1.0
    # an ensemble has no training history, so its report links only the charts it has
    report = (out / "report.md").read_text()
    for chart in re.findall(r"\]\(([^)]+\.png)\)", report):
        assert (out / chart).is_file(), chart
    with pytest.raises(FileExistsError):
        ensemble_runs(member_runs, out)

    result = convert_run(
        out, loader=lambda _run, split: splits[split], gradcam_images=20, n_boot=50
    )
    bundle_dir = write_bundle(tmp_path / "bundle", result.files, result.manifest)
    analysis = Analyzer.from_path(bundle_dir).analyze(frame(3, np.random.default_rng(9)))
    assert analysis.heatmap is not None and analysis.heatmap.max() == pytest.approx(1.0)
    assert result.report["gradcam"]["corr_float_min"] >= 0.99
    assert result.report["oracle_max_error"] <= 1e-5
    card = result.files["MODEL_CARD.md"].decode()
    assert "Ensemble of 2 members" in card and "`run-seed2` (seed 2)" in card


def test_cli_refuses_a_single_run_with_a_clear_error(member_runs, tmp_path, capsys):
    from device.cli import main

    code = main(["ensemble", str(member_runs[0]), "--out", str(tmp_path / "ens")])
    assert code == 2
    assert "at least two member runs" in capsys.readouterr().err
    assert not (tmp_path / "ens").exists()
