"""The labelled-folder loader of skinscan adapt (eval's layout plus basis and date)."""

from __future__ import annotations

from pathlib import Path

import pytest
from bundle_factory import write_rows_csv

from clinic.adaptation.cases import load_csv_cases, normalise_basis
from device.errors import DatasetError


def _folder(tmp_path: Path) -> Path:
    images = tmp_path / "images"
    images.mkdir()
    for i in range(5):
        (images / f"IMG_{i}.jpg").write_bytes(b"\xff\xd8 not decoded here \xff\xd9")
    return images


def test_rows_become_cases_with_basis_and_date(tmp_path: Path) -> None:
    images = _folder(tmp_path)
    rows = [
        {"image_id": "IMG_0", "dx": "mel", "basis": "histo", "date": "2026-03-01"},
        {"image_id": "IMG_1", "dx": "nv", "basis": "follow_up", "date": ""},
        {"image_id": "IMG_2", "dx": "other", "basis": "consensus", "date": "2026-04-02"},
        {"image_id": "IMG_3", "dx": "scc", "basis": "histopathology", "date": ""},
        {"image_id": "IMG_1", "dx": "nv", "basis": "", "date": ""},
    ]
    cases, skipped = load_csv_cases(write_rows_csv(tmp_path / "c.csv", rows), images)
    by_id = {c.case_id: c for c in cases}
    assert set(by_id) == {"IMG_0", "IMG_1", "IMG_2"}
    assert by_id["IMG_0"].dx == "mel" and by_id["IMG_0"].label == 4
    assert by_id["IMG_0"].basis == "histopathology"
    assert by_id["IMG_0"].confirmed_at == "2026-03-01"
    assert by_id["IMG_0"].image == images / "IMG_0.jpg"
    assert by_id["IMG_1"].basis == "follow-up" and by_id["IMG_1"].confirmed_at is None
    assert by_id["IMG_2"].dx is None and by_id["IMG_2"].label is None
    reasons = dict(skipped)
    assert "scc" in reasons["IMG_3"]
    assert reasons["IMG_1"] == "duplicate row"


def test_ham10000_dx_type_is_read_as_the_basis(tmp_path: Path) -> None:
    images = _folder(tmp_path)
    rows = [{"image_id": "IMG_0", "dx": "bcc", "dx_type": "histo"}]
    cases, _ = load_csv_cases(write_rows_csv(tmp_path / "c.csv", rows), images)
    assert cases[0].basis == "histopathology"


def test_missing_column_or_folder_is_a_dataset_error(tmp_path: Path) -> None:
    images = _folder(tmp_path)
    no_dx = write_rows_csv(tmp_path / "c.csv", [{"image_id": "IMG_0", "label": "mel"}])
    with pytest.raises(DatasetError, match="dx"):
        load_csv_cases(no_dx, images)
    with pytest.raises(DatasetError, match="not found"):
        load_csv_cases(tmp_path / "absent.csv", images)


def test_basis_spellings() -> None:
    assert normalise_basis("Histo") == "histopathology"
    assert normalise_basis("follow-up") == "follow-up"
    assert normalise_basis("biopsy?") == "unknown"
