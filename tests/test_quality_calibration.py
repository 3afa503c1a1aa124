"""The quality-gate calibration: lesion-grouped sample, blur by known sigmas, chosen limits."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import write_synthetic_ham

from device.cli import main
from training.quality_calibration import (
    BlurTable,
    blur_copy,
    desaturate,
    lesion_sample,
    measure_blur,
)


@pytest.fixture(scope="module")
def ham(tmp_path_factory):
    return write_synthetic_ham(tmp_path_factory.mktemp("ham"), per_class=3)


def test_the_sample_takes_one_image_per_lesion_and_is_reproducible(ham):
    paths = lesion_sample(ham, 12, seed=3)
    assert len(paths) == 12
    assert paths == lesion_sample(ham, 12, seed=3)
    assert paths != lesion_sample(ham, 12, seed=4)
    lesions = {}
    for row in (ham / "HAM10000_metadata.csv").read_text().splitlines()[1:]:
        lesion, image_id = row.split(",")[:2]
        lesions[image_id] = lesion
    chosen = [lesions[p.stem] for p in paths]
    assert len(set(chosen)) == len(chosen)


def test_blur_sigma_is_in_analysis_pixels():
    image = np.zeros((300, 400, 3), np.uint8)
    image[:, 200:] = 255
    edge = blur_copy(image, 1.0)[150, 190:210, 0]
    # sigma 1 at the 200 px analysis width is sigma 2 on a 400 px image
    assert 0 < edge[8] < 128 < edge[11] < 255
    assert blur_copy(image, 0.0) is image


def test_blur_lowers_both_measures(ham):
    table = measure_blur(lesion_sample(ham, 8, seed=0), sigmas=(0.0, 1.0, 3.0))
    assert table.sharpness.shape == table.reblur_loss.shape == (8, 3)
    assert np.all(np.diff(table.sharpness, axis=1) < 0)
    assert np.all(np.diff(table.reblur_loss, axis=1) < 0)


def test_the_chosen_limits_respect_the_budget_for_sharp_images():
    rng = np.random.default_rng(0)
    sharp = rng.uniform(20, 100, 200)
    blurred = rng.uniform(1, 30, 200)
    table = BlurTable(
        sigmas=(0.0, 1.5),
        sharpness=np.stack([sharp, blurred], axis=1),
        reblur_loss=np.stack([rng.uniform(0.5, 0.8, 200), rng.uniform(0.2, 0.6, 200)], axis=1),
        still_sharpness=sharp,
        still_reblur_loss=rng.uniform(0.5, 0.8, 200),
    )
    low_sharpness, low_loss = table.choose_limits(0.05, 1.5, (10, 20, 25, 40), (0.0, 0.4, 0.55))
    refused = table.refused(low_sharpness, low_loss)
    assert refused[0] <= 0.05 and refused[-1] <= 0.05
    assert (low_sharpness, low_loss) == (20, 0.4)
    with pytest.raises(ValueError, match="no limit pair"):
        table.choose_limits(0.0, 1.5, (90,), (0.0,))


def test_desaturate_spans_grey_to_the_original():
    image = np.array([[[200, 100, 50]]], np.uint8)
    assert np.all(desaturate(image, 0.0) == desaturate(image, 0.0)[..., :1])
    assert np.array_equal(desaturate(image, 1.0), image)


def test_the_command_prints_the_tables(ham, capsys):
    assert main(["calibrate-quality", "--data", str(ham), "--count", "10"]) == 0
    out = capsys.readouterr().out
    assert "| min_sharpness | min_reblur_loss | sharp refused |" in out
    assert "chosen: min_sharpness =" in out
    assert "| min_colourfulness | real images refused |" in out
    assert f"All {len(list((ham / 'images').glob('*.jpg')))} images" in out
