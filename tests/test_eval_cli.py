"""``skinscan eval``: the acceptance interface, through the device's own pipeline."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bundle_factory import make_bundle, write_rows_csv, write_synthetic_jpegs

from device import metrics
from device.cli import main
from device.imaging.io import read_image
from device.labels import CLASS_CODES
from device.runtime import Analyzer

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("bcc", "mel", "nv")  # a CSV holding only some of the seven classes


def write_folder(root: Path, per_class: int = 5, seed: int = 0) -> tuple[Path, Path]:
    """JPEGs of synthetic lesions plus every kind of bad row; returns (csv, images dir)."""
    images = root / "images"
    written = write_synthetic_jpegs(images, CLASSES, per_class, seed)
    rows = [{"image_id": image_id, "dx": code, "age": "50"} for image_id, code, _ in written]
    good = (images / f"ISIC_{CLASSES[0]}_0.jpg").read_bytes()
    (images / "ISIC_truncated.jpg").write_bytes(good[: len(good) // 2])
    (images / "ISIC_scc.jpg").write_bytes(good)
    rows += [
        {"image_id": "ISIC_truncated", "dx": "mel", "age": ""},
        {"image_id": "ISIC_absent", "dx": "nv", "age": ""},
        {"image_id": "ISIC_scc", "dx": "scc", "age": ""},  # not a HAM10000 code
        {"image_id": f"ISIC_{CLASSES[2]}_2", "dx": "nv", "age": ""},  # repeated row
    ]
    return write_rows_csv(root / "meta.csv", rows), images


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("eval")
    csv_path, images = write_folder(root)
    return csv_path, images, make_bundle(root / "bundle")


@pytest.fixture(scope="module")
def report(folder: tuple[Path, Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    csv_path, images, bundle = folder
    out = tmp_path_factory.mktemp("out") / "report.json"
    argv = ["eval", "--bundle", str(bundle), "--metadata", str(csv_path)]
    argv += ["--images", str(images), "--json", str(out), "--workers", "2", "--n-boot", "200"]
    assert main([*argv, "--skip-unknown"]) == 0
    return json.loads(out.read_text())


def test_report_has_every_required_field(report: dict) -> None:
    required = {
        "n_images",
        "n_skipped",
        "balanced_accuracy",
        "accuracy",
        "per_class_recall",
        "malignant_auc",
        "sensitivity",
        "specificity",
        "melanoma_sensitivity",
        "ece",
        "seconds_per_image",
        "ci95",
        "classes_present",
        "skipped",
    }
    assert required <= set(report)
    headline = {"balanced_accuracy", "malignant_auc", "sensitivity", "specificity", "ece"}
    assert headline <= set(report["ci95"])
    for name in headline:
        low, high = report["ci95"][name]
        assert low <= report[name] <= high
    assert report["seconds_per_image"] > 0


def test_bad_rows_are_counted_and_listed_not_fatal(report: dict) -> None:
    assert report["n_images"] == 5 * len(CLASSES)
    reasons = {s["image_id"]: s["reason"] for s in report["skipped"]}
    assert report["n_skipped"] == len(report["skipped"]) == 4
    assert "truncated" in reasons["ISIC_truncated"]
    assert reasons["ISIC_absent"] == "image file not found"
    assert reasons["ISIC_scc"] == "unknown dx 'scc'"
    assert reasons["ISIC_nv_2"] == "duplicate row"


def test_macro_recall_is_over_the_classes_present(report: dict) -> None:
    assert report["classes_present"] == list(CLASSES)
    assert set(report["per_class_recall"]) == set(CLASSES)
    mean_recall = np.mean(list(report["per_class_recall"].values()))
    assert report["balanced_accuracy"] == pytest.approx(mean_recall)
    # The tiny bundle knows the synthetic lesion colours.
    assert report["balanced_accuracy"] >= 0.6


def test_figures_equal_the_device_analyzer_on_the_same_images(
    report: dict, folder: tuple[Path, Path, Path]
) -> None:
    csv_path, images, bundle = folder
    analyzer = Analyzer.from_path(bundle)
    skipped = {s["image_id"] for s in report["skipped"] if s["reason"] != "duplicate row"}
    with csv_path.open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["image_id"] not in skipped]
    rows = list({r["image_id"]: r for r in reversed(rows)}.values())[::-1]
    probs = np.stack(
        [analyzer.analyze(read_image(images / f"{r['image_id']}.jpg")).probabilities for r in rows]
    )
    labels = np.array([CLASS_CODES.index(r["dx"]) for r in rows])
    threshold = analyzer.calibration.referral_threshold
    assert report["referral_threshold"] == threshold
    assert report["balanced_accuracy"] == pytest.approx(metrics.balanced_accuracy(labels, probs))
    assert report["malignant_auc"] == pytest.approx(metrics.malignant_auc(labels, probs))
    assert report["sensitivity"] == pytest.approx(metrics.sensitivity(labels, probs, threshold))
    assert report["ece"] == pytest.approx(metrics.ece(labels, probs))


def test_missing_column_is_one_clear_error(
    tmp_path: Path, folder: tuple[Path, Path, Path], capsys: pytest.CaptureFixture
) -> None:
    _, images, bundle = folder
    bad = tmp_path / "bad.csv"
    bad.write_text("image_id,diagnosis\nISIC_1,mel\n")
    argv = ["eval", "--bundle", str(bundle), "--metadata", str(bad), "--images", str(images)]
    assert main([*argv, "--json", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing column(s) ['dx']" in err[0]


def test_invalid_bundle_is_one_clear_error(
    tmp_path: Path, folder: tuple[Path, Path, Path], capsys: pytest.CaptureFixture
) -> None:
    csv_path, images, _ = folder
    bundle = make_bundle(tmp_path / "b")
    model = bundle / "model.tflite"
    model.write_bytes(model.read_bytes()[:-1])
    argv = ["eval", "--bundle", str(bundle), "--metadata", str(csv_path)]
    assert main([*argv, "--images", str(images), "--json", str(tmp_path / "o.json")]) == 2
    assert "model.tflite: truncated" in capsys.readouterr().err


def test_one_worker_and_two_workers_give_the_same_figures(
    report: dict, folder: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    csv_path, images, bundle = folder
    out = tmp_path / "one.json"
    argv = ["eval", "--bundle", str(bundle), "--metadata", str(csv_path), "--images", str(images)]
    argv.append("--skip-unknown")
    assert main([*argv, "--json", str(out), "--workers", "1", "--n-boot", "200"]) == 0
    single = json.loads(out.read_text())
    for key in ("n_images", "balanced_accuracy", "malignant_auc", "per_class_recall", "ci95"):
        assert single[key] == report[key], key


def test_eval_needs_no_tensorflow(folder: tuple[Path, Path, Path], tmp_path: Path) -> None:
    csv_path, images, bundle = folder
    argv = ["eval", "--bundle", str(bundle), "--metadata", str(csv_path), "--skip-unknown"]
    argv += ["--images", str(images), "--json", str(tmp_path / "o.json"), "--workers", "1"]
    code = (
        "import sys; from device.cli import main; "
        f"rc = main({argv!r}); "
        "assert rc == 0, rc; "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.dataset
def test_1500_ham_images_in_under_two_minutes(
    ham_dir: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if "slow" not in (request.config.getoption("-m") or ""):
        pytest.skip("speed check: run with -m slow")
    with (ham_dir / "HAM10000_metadata.csv").open() as handle:
        rows = list(csv.DictReader(handle))[:1500]
    subset = tmp_path / "subset.csv"
    with subset.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    bundle = make_bundle(tmp_path / "bundle")
    out = tmp_path / "o.json"
    argv = ["eval", "--bundle", str(bundle), "--metadata", str(subset)]
    assert main([*argv, "--images", str(ham_dir / "images"), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["n_images"] == 1500
    assert report["seconds_total"] < 120


def test_split_option_keeps_only_that_split(
    folder: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, images, bundle = folder
    split_csv = tmp_path / "split.csv"
    ids = sorted(p.stem for p in images.glob("ISIC_*_*.jpg"))
    with split_csv.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_id", "lesion_id", "dx", "split"])
        for i, image_id in enumerate(ids):
            writer.writerow([image_id, f"L{i}", image_id.split("_")[1], "test" if i % 3 else "val"])
    out = tmp_path / "o.json"
    argv = ["eval", "--bundle", str(bundle), "--metadata", str(split_csv), "--images", str(images)]
    assert main([*argv, "--json", str(out), "--split", "test", "--workers", "1"]) == 0
    report = json.loads(out.read_text())
    assert report["n_images"] == sum(1 for i in range(len(ids)) if i % 3)
    assert report["split"] == "test"
    bad = tmp_path / "nosplit.csv"
    bad.write_text("image_id,dx\nISIC_mel_0,mel\n")
    argv2 = ["eval", "--bundle", str(bundle), "--metadata", str(bad), "--images", str(images)]
    assert main([*argv2, "--json", str(out), "--split", "test"]) == 2


def test_by_column_reports_every_metric_per_group(
    folder: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    csv_path, images, bundle = folder
    with csv_path.open() as handle:
        rows = list(csv.DictReader(handle))
    for number, row in enumerate(rows):
        row["dataset"] = "clinic_a" if number % 2 else "clinic_b"
    grouped = write_rows_csv(tmp_path / "grouped.csv", rows)
    out = tmp_path / "by.json"
    argv = ["eval", "--bundle", str(bundle), "--metadata", str(grouped), "--images", str(images)]
    argv.append("--skip-unknown")
    assert (
        main([*argv, "--json", str(out), "--workers", "1", "--n-boot", "100", "--by", "dataset"])
        == 0
    )
    report = json.loads(out.read_text())
    groups = report["by"]["groups"]
    assert report["by"]["column"] == "dataset" and set(groups) == {"clinic_a", "clinic_b"}
    assert sum(g["n_images"] for g in groups.values()) == report["n_images"]
    for figures in groups.values():
        assert set(metrics.HEADLINE_METRICS) <= set(figures)
        assert set(figures["ci95"]) == set(metrics.HEADLINE_METRICS)
    # Each group's figure is the metric on that group's images alone.
    analyzer = Analyzer.from_path(bundle)
    kept = {r["image_id"]: r for r in rows if (images / f"{r['image_id']}.jpg").is_file()}
    a_ids = [i for i, r in kept.items() if r["dataset"] == "clinic_a" and r["dx"] in CLASS_CODES]
    a_ids = [i for i in a_ids if i != "ISIC_truncated"]
    probs = np.stack(
        [analyzer.analyze(read_image(images / f"{i}.jpg")).probabilities for i in a_ids]
    )
    labels = np.array([CLASS_CODES.index(kept[i]["dx"]) for i in a_ids])
    assert groups["clinic_a"]["n_images"] == len(a_ids)
    assert groups["clinic_a"]["balanced_accuracy"] == pytest.approx(
        metrics.balanced_accuracy(labels, probs)
    )
    assert "| clinic_a |" in capsys.readouterr().out


def test_by_unknown_column_is_one_clear_error(
    folder: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    csv_path, images, bundle = folder
    argv = ["eval", "--bundle", str(bundle), "--metadata", str(csv_path), "--images", str(images)]
    assert main([*argv, "--json", str(tmp_path / "o.json"), "--by", "scanner"]) == 2
    assert "--by scanner: no such column" in capsys.readouterr().err


def test_images_in_several_folders_are_found_in_each(
    folder: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    csv_path, images, bundle = folder
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    for number, path in enumerate(sorted(images.glob("*.jpg"))):
        shutil.copy(path, (first if number % 2 else second) / path.name)
    out = tmp_path / "two.json"
    argv = ["eval", "--bundle", str(bundle), "--metadata", str(csv_path), "--workers", "1"]
    argv += ["--images", str(first), "--images", str(second), "--json", str(out), "--skip-unknown"]
    assert main([*argv, "--n-boot", "0"]) == 0
    both = json.loads(out.read_text())
    assert both["n_images"] == 5 * len(CLASSES)
    assert both["images"] == f"{first} {second}"


def test_unknown_labels_fail_the_run_naming_each_with_its_count(
    folder: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    csv_path, images, bundle = folder
    rows = list(csv.DictReader(csv_path.open()))
    for row in rows[:3]:
        row["dx"] = "melanoma"
    rows[3]["dx"] = "NEVUS"
    relabelled = write_rows_csv(tmp_path / "relabelled.csv", rows)
    out = tmp_path / "report.json"
    argv = ["eval", "--bundle", str(bundle), "--metadata", str(relabelled)]
    argv += ["--images", str(images), "--json", str(out), "--workers", "1", "--n-boot", "0"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "5 of" in err  # melanoma x3, NEVUS x1 and the folder's own 'scc'
    assert "'melanoma' (3 rows), 'NEVUS' (1 row), 'scc' (1 row)" in err
    assert "--skip-unknown" in err
    assert not out.exists()

    assert main([*argv, "--skip-unknown"]) == 0
    err = capsys.readouterr().err
    assert "WARNING: 5 rows NOT evaluated" in err and "'melanoma' (3 rows)" in err
    assert json.loads(out.read_text())["n_skipped"] >= 5


def test_predictions_file_holds_what_the_report_was_computed_from(
    folder: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    csv_path, images, bundle = folder
    saved = tmp_path / "preds" / "p.npz"
    argv = ["eval", "--bundle", str(bundle), "--metadata", str(csv_path), "--skip-unknown"]
    argv += ["--images", str(images), "--json", str(tmp_path / "r.json"), "--n-boot", "0"]
    assert main([*argv, "--predictions", str(saved)]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    with np.load(saved) as data:
        assert len(data["image_ids"]) == len(data["labels"]) == report["n_images"]
        assert data["probabilities"].shape == (report["n_images"], len(CLASS_CODES))
        auc = metrics.malignant_auc(data["labels"], data["probabilities"])
        unfamiliar = data["unfamiliar"]
    assert auc == pytest.approx(report["malignant_auc"])
    assert unfamiliar.shape == (report["n_images"],) and unfamiliar.dtype == bool
    screen = report["screen"]
    assert screen["all"]["n"] == report["n_images"]
    shares = [screen["all"][tier] for tier in ("refer", "uncertain", "monitor")]
    assert sum(shares) == pytest.approx(1.0)
    # Refer is exactly the sensitivity/specificity rule at the bundle's threshold.
    assert screen["malignant"]["refer"] == pytest.approx(report["sensitivity"])
    assert 1 - screen["benign"]["refer"] == pytest.approx(report["specificity"])
