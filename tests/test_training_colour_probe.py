"""The colour-shortcut probe finds a cast that encodes the diagnosis, and no more."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from bundle_factory import write_rows_csv

from device.evaluation.shifts import shift_by_name
from device.phantoms import make_phantom
from training.colour_probe import probe


def _archive(root: Path, cast_follows_diagnosis: bool) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(48):
        dx = ("mel", "nv")[i % 2]
        clinic = i % 2 if cast_follows_diagnosis else int(rng.integers(2))
        phantom = make_phantom(i, size=(150, 200), hair=False)
        image = shift_by_name(("colour-4000K", "colour-8000K")[clinic]).apply(phantom.image)
        image_id = f"ISIC_{i:04d}"
        cv2.imwrite(str(root / "images" / f"{image_id}.jpg"), image[..., ::-1])
        if i % 3:  # some images have no mask: the whole frame is used
            mask = phantom.mask.astype(np.uint8) * 255
            cv2.imwrite(str(root / "masks" / f"{image_id}_segmentation.png"), mask)
        rows.append({"image_id": image_id, "dx": dx, "split": ("train", "val")[i % 8 >= 6]})
    return write_rows_csv(root / "split.csv", rows)


def test_a_cast_that_follows_the_diagnosis_is_found(tmp_path: Path) -> None:
    result = probe(tmp_path, _archive(tmp_path, cast_follows_diagnosis=True))
    assert result["val_malignant_auc"] > 0.95
    assert 0.5 < result["share_with_mask"] < 0.8


def test_a_cast_unrelated_to_the_diagnosis_predicts_nothing(tmp_path: Path) -> None:
    result = probe(tmp_path, _archive(tmp_path, cast_follows_diagnosis=False))
    assert result["val_malignant_auc"] < 0.8


def test_skinscan_colour_probe_writes_the_figures(tmp_path: Path, capsys) -> None:
    import json

    from device.cli import main

    split = _archive(tmp_path, cast_follows_diagnosis=True)
    out = tmp_path / "probe.json"
    args = ["colour-probe", "--data", str(tmp_path), "--split", str(split), "--json", str(out)]
    assert main(args) == 0
    written = json.loads(out.read_text())
    assert written["val_malignant_auc"] > 0.95
    assert json.loads(capsys.readouterr().out) == written
