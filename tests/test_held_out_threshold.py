"""The referral threshold capped for clinics the model never saw (conversion.held_out_threshold)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_shift_benchmark import folder, high_threshold_copy  # noqa: F401  (fixture)

from conversion.held_out_threshold import (
    Fold,
    folds_from_bench,
    threshold_at_sensitivity,
    validation_level,
)
from device.cli import main
from device.errors import DatasetError
from device.labels import CLASS_CODES
from device.metrics import malignant_probability
from device.runtime.bundle import load_bundle

MEL, NV, BCC = (CLASS_CODES.index(c) for c in ("mel", "nv", "bcc"))


def _probs(malignant: np.ndarray, malignant_class: int = MEL) -> np.ndarray:
    """Probabilities whose P(malignant) is ``malignant`` (the rest on nv)."""
    probs = np.zeros((len(malignant), len(CLASS_CODES)))
    probs[:, malignant_class] = malignant
    probs[:, NV] = 1 - malignant
    return probs


def _write_fold(root: Path, name: str, seed: int, held_shift: float) -> Fold:
    """A fold whose held-out melanomas score ``held_shift`` lower than its validation ones."""
    rng = np.random.default_rng(seed)
    run = root / "runs" / name
    run.mkdir(parents=True)
    val_labels = np.array([MEL] * 40 + [BCC] * 20 + [NV] * 140)
    score = np.where(val_labels == NV, rng.uniform(0.0, 0.5, 200), rng.uniform(0.3, 0.95, 200))
    logits = np.log(np.clip(_probs(score), 1e-6, 1))
    np.savez(
        run / "logits.npz",
        val_logits=logits,
        val_labels=val_labels,
        test_logits=logits,
        test_labels=val_labels,
    )
    (run / "calibration.json").write_text(
        json.dumps({"temperature": 1.0, "referral_threshold": 0.3})
    )
    held_labels = np.array([MEL] * 50 + [NV] * 150)
    held = np.where(
        held_labels == MEL, rng.uniform(0.3, 0.95, 200) - held_shift, rng.uniform(0.0, 0.5, 200)
    )
    (root / "predictions").mkdir(exist_ok=True)
    np.savez(
        root / "predictions" / f"{name}.npz",
        image_ids=np.array([f"x{i}" for i in range(200)]),
        labels=held_labels,
        probabilities=_probs(np.clip(held, 0.001, 0.999)),
    )
    return Fold(name, run, root / "predictions" / f"{name}.npz")


def test_threshold_at_sensitivity_is_the_highest_that_keeps_the_level() -> None:
    labels = np.array([MEL] * 10 + [NV] * 10)
    scores = np.r_[np.linspace(0.1, 1.0, 10), np.linspace(0.0, 0.5, 10)]
    probs = _probs(scores)
    for level in (0.5, 0.9, 1.0):
        t = threshold_at_sensitivity(probs, labels, level)
        referred = malignant_probability(probs)[labels == MEL] >= t
        assert referred.mean() >= level
        # Any higher threshold loses a melanoma below the level.
        assert (malignant_probability(probs)[labels == MEL] >= t + 1e-9).mean() < level
    with pytest.raises(ValueError, match="no malignant"):
        threshold_at_sensitivity(probs[10:], labels[10:], 0.9)


def test_the_level_is_what_the_most_demanding_fold_needed_on_its_own_validation(
    tmp_path: Path,
) -> None:
    easy = _write_fold(tmp_path, "all-a", 0, held_shift=0.0)
    hard = _write_fold(tmp_path, "all-b", 1, held_shift=0.25)
    evidence = validation_level([easy, hard], 0.90)
    rows = evidence["per_fold"]
    assert evidence["level"] == max(r["validation_sensitivity_at_pooled"] for r in rows.values())
    # The fold whose held-out melanomas score lower is the one that refers least of them.
    assert (
        rows["all-b"]["held_out_melanoma_sensitivity_at_pooled"]
        < rows["all-a"]["held_out_melanoma_sensitivity_at_pooled"]
    )
    # The pooled threshold refers at least 90% of the pooled melanomas.
    referred = (
        sum(r["held_out_melanoma_sensitivity_at_pooled"] * 50 for r in rows.values())
        / evidence["pooled_melanomas"]
    )
    assert referred >= 0.90
    assert evidence["pooled_melanomas"] == 100 and evidence["pooled_images"] == 400


def test_missing_fold_evidence_is_a_clear_error(tmp_path: Path) -> None:
    _write_fold(tmp_path, "all-a", 0, held_shift=0.0)
    assert folds_from_bench(tmp_path, ["all-a"])[0].name == "all-a"
    with pytest.raises(DatasetError, match="all-b"):
        folds_from_bench(tmp_path, ["all-a", "all-b"])
    with pytest.raises(DatasetError, match="at least one fold"):
        folds_from_bench(tmp_path, [])


def test_a_fold_can_be_given_as_prediction_files(tmp_path: Path) -> None:
    """An earlier bundle that never saw a source is a fold too: its eval predictions."""
    fold = _write_fold(tmp_path, "all-a", 0, held_shift=0.1)
    probs, labels = fold.validation_outputs()
    val_file = tmp_path / "val.npz"
    np.savez(val_file, labels=labels, probabilities=probs)
    [as_files] = folds_from_bench(None, [], [("v3k-isic", str(val_file), str(fold.predictions))])
    from_run = validation_level([fold])["per_fold"]["all-a"]
    from_files = validation_level([as_files])["per_fold"]["v3k-isic"]
    assert from_files == from_run
    with pytest.raises(DatasetError, match="missing"):
        folds_from_bench(None, [], [("x", str(tmp_path / "none.npz"), str(fold.predictions))])


def test_fold_without_bench_folder_is_refused(tmp_path: Path, capsys) -> None:
    code = main(["convert", "--shift-threshold", str(tmp_path), "--metadata", "x.csv",
                 "--images", str(tmp_path), "--fold", "all-a"])  # fmt: skip
    assert code != 0
    assert "--fold needs --held-out-folds" in capsys.readouterr().err


def test_shift_threshold_step_caps_the_threshold_for_unseen_clinics(
    folder,  # noqa: F811
    tmp_path: Path,
) -> None:
    from conversion.shift_threshold import apply_shift_threshold

    split, images, source = folder
    bundle = high_threshold_copy(source, tmp_path / "bundle")
    plain = apply_shift_threshold(bundle, split, images, workers=2, n_boot=20)
    folds = [
        _write_fold(tmp_path / "bench", "all-a", 0, held_shift=0.1),
        _write_fold(tmp_path / "bench", "all-b", 1, held_shift=0.3),
    ]
    capped = apply_shift_threshold(
        bundle, split, images, workers=2, n_boot=20, held_out_folds=folds
    )
    loaded = load_bundle(bundle).manifest
    cap = loaded.metrics["held_out_threshold"]["cap"]
    assert capped["threshold"] == pytest.approx(min(plain["threshold"], cap))
    # The second fold's melanomas score far lower held out, so the cap is what binds here.
    assert cap < plain["threshold"] and capped["set_by"] == "held-out sources"
    assert loaded.calibration.referral_threshold == pytest.approx(capped["threshold"])
    assert loaded.metrics["int8_test"]["referral_threshold"] == capped["threshold"]
    card = (bundle / "MODEL_CARD.md").read_text()
    assert "Threshold for unseen clinics" in card
    assert "### On sources it was not trained on" in card and "| all-b | 200 |" in card
    held = loaded.metrics["held_out_sources"]["all-b"]
    assert held["referral_threshold"] == loaded.metrics["held_out_threshold"]["pooled_threshold"]
    # Without the folds the cap and its record are gone again (idempotent from the start).
    again = apply_shift_threshold(bundle, split, images, workers=2, n_boot=20)
    assert again["threshold"] == pytest.approx(plain["threshold"])
    assert "held_out_threshold" not in load_bundle(bundle).manifest.metrics
    assert "held_out_sources" not in load_bundle(bundle).manifest.metrics
