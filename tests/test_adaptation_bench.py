"""``skinscan bench adapt`` on a small real sample: draws adapted as ``skinscan adapt`` does."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from clinic.adaptation import bench
from device.cli import main
from device.errors import DatasetError

SHIPPED = Path(__file__).resolve().parents[1] / "device" / "models" / "default"


def small_archive(ham_dir: Path, root: Path, n_per_class: int = 20) -> Path:
    """A plain archive (labels.csv + images/) of real rosendahl mel, bcc, nv and bkl images."""
    wanted = {"mel": n_per_class, "bcc": n_per_class // 2, "nv": n_per_class, "bkl": n_per_class}
    rows = []
    with (ham_dir / "HAM10000_metadata.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["dataset"] == "rosendahl" and wanted.get(row["dx"], 0) > 0:
                wanted[row["dx"]] -= 1
                rows.append(row)
    folder = root / "site-x"
    (folder / "images").mkdir(parents=True)
    for row in rows:
        name = row["image_id"] + ".jpg"
        shutil.copy(ham_dir / "images" / name, folder / "images" / name)
    with (folder / "labels.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_id", "dx"])
        writer.writerows([(r["image_id"], r["dx"]) for r in rows])
    return folder


def test_fold_must_name_an_existing_bundle(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="hold-out-source rosendahl"):
        bench.parse_folds([f"rosendahl={tmp_path / 'gone'}"])
    with pytest.raises(DatasetError, match="SOURCE=BUNDLE"):
        bench.parse_folds(["rosendahl"])


def test_one_draw_scores_only_images_outside_the_draw() -> None:
    rng = np.random.default_rng(0)
    n, c, k = 120, 16, 7
    y = rng.integers(0, k, n)
    x = rng.normal(size=(n, c)) + np.eye(k, c)[y] * 3.0  # separable: the adapted head must win
    from device.runtime.classifier import LinearHead

    head = LinearHead(np.zeros((c, k), np.float32), np.zeros(k, np.float32))
    base_logits = np.zeros((n, k), np.float32)
    order = rng.permutation(n)
    row = bench.one_draw(
        x, y, base_logits, head, 1.0, 0.5, order[:60], order[60:], repeats=1, l2=0.03, seed=0
    )
    assert row["adapted"]["malignant_auc"] > 0.9
    assert row["base"]["malignant_auc"] == pytest.approx(0.5)
    assert row["refused"] == ""  # 60 cases, enough malignant, better than the base


@pytest.mark.slow
def test_bench_adapt_end_to_end_on_real_images(ham_dir: Path, tmp_path: Path) -> None:
    archive = small_archive(ham_dir, tmp_path)
    out = tmp_path / "out"
    code = main(
        [
            "bench",
            "adapt",
            "--data",
            str(archive),
            "--fold",
            f"site-x={SHIPPED}",
            "--k",
            "30",
            "--draws",
            "2",
            "--repeats",
            "1",
            "--workers",
            "1",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    report = json.loads((out / "adapt.json").read_text())
    [fold] = report["folds"]
    entry = fold["by_k"]["30"]
    assert entry["draws"] == 2
    scored = [r for r in entry["rows"] if "adapted" in r]
    assert scored, entry["rows"]
    for row in scored:
        assert 0.0 <= row["adapted"]["malignant_auc"] <= 1.0
        assert 0.0 < row["threshold"] < 1.0
    assert (out / "adapt-auc.png").stat().st_size > 1000
    assert "site-x" in (out / "adapt.md").read_text()
