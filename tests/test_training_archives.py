"""Bigger archives: the ISIC one-hot CSV, a plain image/dx CSV, and a cache shared by processes."""

from __future__ import annotations

import csv
import logging
import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import write_synthetic_ham

from device.errors import DatasetError
from device.imaging.pipeline import default_spec
from training.archives import IMAGE_LEVEL_WARNING
from training.data import build_cache, grouped_split, load_metadata

ONEHOT = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture
def isic_archive(tmp_path: Path) -> tuple[Path, list[dict[str, str]]]:
    """An ISIC 2019-style folder made from the synthetic HAM10000 images.

    Returns the folder and the HAM rows (image_id, lesion_id, dx) it was made from.
    """
    ham = write_synthetic_ham(tmp_path / "ham", per_class=3, lesions_with_two_images=1)
    ham_rows = list(csv.DictReader((ham / "HAM10000_metadata.csv").open()))
    root = tmp_path / "isic"
    shutil.copytree(ham / "images", root / "ISIC_2019_Training_Input")
    column = {"mel": "MEL", "nv": "NV", "bcc": "BCC", "akiec": "AK", "bkl": "BKL"}
    column.update(df="DF", vasc="VASC")
    truth, meta = [], []
    for row in ham_rows:
        hot = [1.0 if c == column[row["dx"]] else 0.0 for c in ONEHOT]
        truth.append([row["image_id"], *hot])
        meta.append([row["image_id"], "45.0", "anterior torso", row["lesion_id"], "female"])
    # SCC and UNK rows (no device class), a row with two classes set, one with a missing file
    for image_id, hot_column in (("ISIC_9000001", "SCC"), ("ISIC_9000002", "UNK")):
        truth.append([image_id, *[1.0 if c == hot_column else 0.0 for c in ONEHOT]])
    truth.append(["ISIC_9000003", *[1.0 if c in ("MEL", "NV") else 0.0 for c in ONEHOT]])
    truth.append(["ISIC_9000004", *[1.0 if c == "MEL" else 0.0 for c in ONEHOT]])
    _write_csv(root / "ISIC_2019_Training_GroundTruth.csv", ["image", *ONEHOT], truth)
    _write_csv(
        root / "ISIC_2019_Training_Metadata.csv",
        ["image", "age_approx", "anatom_site_general", "lesion_id", "sex"],
        meta,
    )
    return root, ham_rows


def test_isic_onehot_maps_to_the_seven_classes_and_reports_scc_unk(isic_archive):
    root, ham_rows = isic_archive
    samples, report = load_metadata(root)
    assert report.layout == "isic_onehot"
    assert {s.image_id: s.dx for s in samples} == {r["image_id"]: r["dx"] for r in ham_rows}
    reasons = {entry["image_id"]: entry["reason"] for entry in report.skipped}
    assert "SCC is not one of the 7" in reasons["ISIC_9000001"]
    assert "UNK is not one of the 7" in reasons["ISIC_9000002"]
    assert "2 classes" in reasons["ISIC_9000003"]
    assert reasons["ISIC_9000004"] == "image file missing"
    assert len(report.skipped) == 4 and report.kept == len(ham_rows)
    # lesion ids come from the metadata CSV, so the split is lesion-grouped
    assert report.grouping == "lesion_id"
    assert {s.image_id: s.lesion_id for s in samples} == {
        r["image_id"]: r["lesion_id"] for r in ham_rows
    }
    assert {s.localization for s in samples} == {"anterior torso"}


def test_isic_split_keeps_each_lesion_on_one_side(isic_archive):
    root, _ = isic_archive
    samples, _ = load_metadata(root)
    for seed in range(4):
        assignment = grouped_split(samples, seed=seed)
        sides: dict[str, set[str]] = {}
        for s in samples:
            sides.setdefault(s.lesion_id, set()).add(assignment[s.image_id])
        assert all(len(v) == 1 for v in sides.values())
        assert any(len([s for s in samples if s.lesion_id == k]) > 1 for k in sides)


def test_plain_csv_groups_by_patient(tmp_path):
    ham = write_synthetic_ham(tmp_path / "ham", per_class=4, lesions_with_two_images=0)
    rows = list(csv.DictReader((ham / "HAM10000_metadata.csv").open()))
    # Two lesions per patient, in different classes: patient grouping is stricter than lesion
    plain = [
        [r["image_id"], r["dx"].upper() if i % 3 == 0 else r["dx"], r["lesion_id"], f"P{i // 2}"]
        for i, r in enumerate(rows)
    ]
    plain.append(["ISIC_8000001", "SCC", "L_scc", "P_scc"])
    _write_csv(ham / "labels.csv", ["image_id", "dx", "lesion_id", "patient_id"], plain)
    (ham / "HAM10000_metadata.csv").unlink()
    samples, report = load_metadata(ham)
    assert report.layout == "plain" and report.grouping == "patient_id"
    assert {s.dx for s in samples} == {r["dx"] for r in rows}  # MEL, AKIEC... mapped
    assert "not one of the 7" in report.skipped[0]["reason"]
    for seed in range(4):
        assignment = grouped_split(samples, seed=seed)
        for i in range(0, len(rows) - 1, 2):
            assert assignment[rows[i]["image_id"]] == assignment[rows[i + 1]["image_id"]]


def test_plain_csv_without_ids_is_image_level_and_says_so(tmp_path, caplog):
    ham = write_synthetic_ham(tmp_path / "ham", per_class=2, lesions_with_two_images=0)
    rows = list(csv.DictReader((ham / "HAM10000_metadata.csv").open()))
    labels = tmp_path / "my_labels.csv"
    _write_csv(labels, ["image", "dx"], [[r["image_id"], r["dx"]] for r in rows])
    with caplog.at_level(logging.WARNING, logger="training.data"):
        samples, report = load_metadata(labels)  # a CSV path, images found next to it
    assert report.grouping == "image" and len(samples) == 0  # images are in ham/images
    shutil.copy(labels, ham / "labels.csv")
    (ham / "HAM10000_metadata.csv").unlink()
    with caplog.at_level(logging.WARNING, logger="training.data"):
        samples, report = load_metadata(ham)
    assert len(samples) == len(rows) and report.grouping == "image"
    assert IMAGE_LEVEL_WARNING in caplog.text and "LEAK RISK" in caplog.text


def test_a_folder_with_no_known_layout_is_a_dataset_error(tmp_path):
    _write_csv(tmp_path / "labels.csv", ["file", "label"], [["a", "mel"]])
    with pytest.raises(DatasetError, match="neither an ISIC one-hot CSV"):
        load_metadata(tmp_path)
    with pytest.raises(DatasetError, match=r"labels\.csv"):
        load_metadata(tmp_path / "empty")


def _build(args: tuple[str, str]) -> tuple[str, float]:
    data, cache = args
    samples, _ = load_metadata(data)
    built = build_cache(samples, Path(cache), default_spec(3), workers=1)
    return built.image_ids[0], float(np.asarray(built.images).astype(np.float64).sum())


def test_two_processes_building_one_cache_agree_and_leave_one_folder(tmp_path):
    ham = write_synthetic_ham(tmp_path / "ham", per_class=2, lesions_with_two_images=0)
    cache = tmp_path / "cache"
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        first, second = pool.map(_build, [(str(ham), str(cache))] * 2)
    assert first == second and first[1] > 0
    folders = [p for p in cache.iterdir() if p.is_dir()]
    assert len(folders) == 1 and not any(".tmp-" in p.name for p in cache.iterdir())


def test_the_report_names_the_grouping_and_warns_loudly_when_image_level():
    from training.report import _data_and_recipe

    data = {"images": {"train": 7, "val": 2, "test": 2}, "skipped": []}
    grouped = "\n".join(_data_and_recipe({**data, "split_grouping": "patient_id"}, {}))
    assert "split grouped by `patient_id`" in grouped and "WARNING" not in grouped
    image_level = "\n".join(_data_and_recipe({**data, "split_grouping": "image"}, {}))
    assert f"**WARNING: {IMAGE_LEVEL_WARNING}.**" in image_level
    # Several archives: one entry each; only an image-level one earns the warning.
    two_grouped = "\n".join(
        _data_and_recipe({**data, "split_grouping": "lesion_id; lesion_id"}, {})
    )
    assert "WARNING" not in two_grouped
    one_image_level = "\n".join(
        _data_and_recipe({**data, "split_grouping": "lesion_id; image"}, {})
    )
    assert "WARNING" in one_image_level


def test_the_report_cites_every_archive_of_a_multi_archive_run():
    from training.report import CITATION, citation_of

    assert citation_of({"layout": "ham10000", "dataset": ""}) == CITATION
    cited = citation_of({"layout": "ham10000+plain", "dataset": "HAM10000: X; plain archive /a"})
    assert "plain archive /a" in cited and "HAM10000" in cited
