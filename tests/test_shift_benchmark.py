"""``skinscan eval --shifts`` and the shift-safe referral threshold, on a tiny bundle."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from bundle_factory import make_bundle, write_rows_csv, write_synthetic_jpegs

from device.cli import main
from device.evaluation.shift_report import evaluate_shifts
from device.evaluation.shifts import REALISTIC_THRESHOLD_SHIFTS, UNSHIFTED, shift_by_name
from device.labels import CLASS_CODES
from device.runtime.bundle import load_bundle

CLASSES = ("mel", "bcc", "nv", "bkl")


def write_split(root: Path, per_class: int = 8) -> tuple[Path, Path]:
    """Synthetic JPEGs with a split column: half validation, half test."""
    images = root / "images"
    written = write_synthetic_jpegs(images, CLASSES, per_class)
    rows = [
        {"image_id": image_id, "dx": code, "split": ("val", "test")[i % 2]}
        for image_id, code, i in written
    ]
    return write_rows_csv(root / "split.csv", rows), images


def high_threshold_copy(source: Path, bundle: Path, threshold: float = 0.9) -> Path:
    """A copy of ``source`` with a high in-distribution threshold, for the shift step to lower."""
    shutil.copytree(source, bundle)
    manifest = load_bundle(bundle).manifest
    calibration = manifest.calibration.model_copy(update={"referral_threshold": threshold})
    (bundle / "manifest.json").write_text(
        manifest.model_copy(update={"calibration": calibration}).to_json()
    )
    return bundle


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("shifts")
    split, images = write_split(root)
    return split, images, make_bundle(root / "bundle")


def test_eval_shifts_writes_json_table_and_chart(folder, tmp_path: Path) -> None:
    split, images, bundle = folder
    out = tmp_path / "shifts.json"
    argv = ["eval", "--shifts", "--bundle", str(bundle), "--metadata", str(split)]
    argv += ["--images", str(images), "--json", str(out), "--workers", "2", "--n-boot", "50"]
    argv += ["--shift", "colour-4000K", "--shift", "scale-further"]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    assert list(report["shifts"]) == ["none", "colour-4000K", "scale-further"]
    for row in report["shifts"].values():
        assert row["n_images"] == len(CLASSES) * 8
        for name in ("balanced_accuracy", "malignant_auc", "sensitivity", "specificity"):
            assert name in row and name in row["ci95"]
    assert report["shifts"]["none"]["change"]["malignant_auc"] == 0.0
    table = out.with_suffix(".md").read_text()
    assert "| colour-4000K" in table and "Shift-safe threshold" in table
    assert out.with_suffix(".png").stat().st_size > 10_000


def test_unshifted_row_equals_plain_eval(folder, tmp_path: Path) -> None:
    split, images, bundle = folder
    plain = tmp_path / "plain.json"
    argv = ["eval", "--bundle", str(bundle), "--metadata", str(split), "--images", str(images)]
    assert main([*argv, "--json", str(plain), "--workers", "1", "--n-boot", "0"]) == 0
    shifted = evaluate_shifts(split, images, bundle, shifts=(UNSHIFTED,), workers=1, n_boot=0)
    plain_report = json.loads(plain.read_text())
    for name in ("balanced_accuracy", "malignant_auc", "sensitivity", "specificity"):
        assert shifted["shifts"]["none"][name] == pytest.approx(plain_report[name]), name


def test_unknown_shift_is_a_clear_error(folder, tmp_path: Path, capsys) -> None:
    split, images, bundle = folder
    argv = ["eval", "--shifts", "--shift", "fog", "--bundle", str(bundle), "--metadata"]
    argv += [str(split), "--images", str(images), "--json", str(tmp_path / "x.json")]
    assert main(argv) == 2
    assert "unknown shift 'fog'" in capsys.readouterr().err


def test_shift_threshold_keeps_sensitivity_under_realistic_shifts(folder, tmp_path: Path) -> None:
    from conversion.shift_threshold import apply_shift_threshold

    split, images, source = folder
    bundle = high_threshold_copy(source, tmp_path / "bundle")
    record = apply_shift_threshold(bundle, split, images, workers=2, n_boot=50)
    assert record["in_distribution_threshold"] == 0.9
    assert record["threshold"] <= 0.9
    assert record["worst_shift"] in REALISTIC_THRESHOLD_SHIFTS
    loaded = load_bundle(bundle)
    assert loaded.manifest.calibration.referral_threshold == pytest.approx(record["threshold"])
    assert loaded.manifest.metrics["int8_test"]["referral_threshold"] == record["threshold"]
    assert "Threshold under acquisition shift" in (bundle / "MODEL_CARD.md").read_text()
    # The promise, checked independently on validation at the shipped threshold.
    shifts = tuple(shift_by_name(n) for n in REALISTIC_THRESHOLD_SHIFTS)
    check = evaluate_shifts(split, images, bundle, shifts=shifts, split="val", n_boot=0)
    for name in REALISTIC_THRESHOLD_SHIFTS:
        assert check["shifts"][name]["sensitivity"] >= 0.85, name
    # Idempotent: a second run starts from the recorded in-distribution threshold.
    again = apply_shift_threshold(bundle, split, images, workers=2, n_boot=50)
    assert again["threshold"] == pytest.approx(record["threshold"])
    assert again["in_distribution_threshold"] == 0.9
    assert set(CLASS_CODES) >= set(loaded.manifest.metrics["int8_test"]["classes_present"])


def test_shift_step_measures_the_subgroups_again_at_the_shipped_threshold(tmp_path: Path) -> None:
    from conversion.shift_threshold import apply_shift_threshold

    images = tmp_path / "images"
    written = write_synthetic_jpegs(images, CLASSES, 8)
    rows = [
        {
            "image_id": image_id,
            "dx": code,
            "split": ("val", "test")[i % 2],
            "sex": ("male", "female")[(i // 2) % 2],
            "age": "50",
            "localization": "back",
            "dataset": ("clinic-a", "clinic-b")[i % 4 // 2],
        }
        for image_id, code, i in written
    ]
    split = write_rows_csv(tmp_path / "split.csv", rows)
    bundle = high_threshold_copy(make_bundle(tmp_path / "source"), tmp_path / "bundle")
    record = apply_shift_threshold(bundle, split, images, workers=1, n_boot=0)
    figures = load_bundle(bundle).manifest.metrics
    groups = figures["subgroups_int8_test"]
    assert set(groups) >= {"sex", "dataset", "skin_tone"}
    assert set(groups["dataset"]) == {"clinic-a", "clinic-b"}
    # Every grouping splits the same test images, at the threshold now in the bundle:
    # its groups' referred malignant lesions add up to the bundle's test sensitivity.
    test = figures["int8_test"]
    assert test["referral_threshold"] == record["threshold"]
    for grouping in ("sex", "dataset"):
        rows_ = groups[grouping].values()
        referred = sum(g["sensitivity"] * g["n_malignant"] for g in rows_ if g["n_malignant"])
        assert referred / sum(g["n_malignant"] for g in rows_) == pytest.approx(test["sensitivity"])
