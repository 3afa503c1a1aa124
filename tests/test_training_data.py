"""HAM10000 loading, lesion-grouped splits and the preprocessed cache."""

import csv
import shutil
from collections import Counter

import numpy as np
import pytest
from conftest import break_three_rows

from device.errors import DatasetError
from device.imaging.io import read_image
from device.imaging.pipeline import default_spec, preprocess
from training.data import build_cache, grouped_split, load_metadata


def _lesions_by_split(samples, assignment):
    sides = {}
    for s in samples:
        sides.setdefault(s.lesion_id, set()).add(assignment[s.image_id])
    return sides


def test_real_split_has_no_lesion_on_two_sides(ham_dir):
    samples, report = load_metadata(ham_dir)
    assert len(samples) == 10015 and not report.skipped
    assignment = grouped_split(samples, seed=0)
    assert all(len(sides) == 1 for sides in _lesions_by_split(samples, assignment).values())
    counts = Counter(assignment.values())
    assert counts["train"] / len(samples) == pytest.approx(0.70, abs=0.02)
    assert counts["val"] / len(samples) == pytest.approx(0.15, abs=0.02)
    # stratified: every class is on every side
    assert {(s.dx, assignment[s.image_id]) for s in samples} >= {
        (dx, split) for dx in {s.dx for s in samples} for split in ("train", "val", "test")
    }


def test_byte_identical_pairs_stay_together(ham_dir):
    samples, _ = load_metadata(ham_dir)
    for seed in (0, 1, 2):
        assignment = grouped_split(samples, seed=seed)
        assert assignment["ISIC_0029861"] == assignment["ISIC_0024366"]
        assert assignment["ISIC_0029938"] == assignment["ISIC_0024777"]


def test_identical_files_are_grouped_even_across_lesion_ids(synthetic_ham):
    images = synthetic_ham / "images"
    first, second = sorted(images.glob("*.jpg"))[:2]
    shutil.copy(first, second)  # same bytes, different lesion ids in the CSV
    samples, _ = load_metadata(synthetic_ham)
    for seed in range(5):
        assignment = grouped_split(samples, seed=seed)
        assert assignment[first.stem] == assignment[second.stem]


def test_split_is_seeded(synthetic_ham):
    samples, _ = load_metadata(synthetic_ham)
    assert grouped_split(samples, seed=3) == grouped_split(samples, seed=3)
    assert grouped_split(samples, seed=3) != grouped_split(samples, seed=4)


def test_bad_rows_are_skipped_and_listed(synthetic_ham):
    broken = break_three_rows(synthetic_ham)
    rows = list(csv.DictReader((synthetic_ham / "HAM10000_metadata.csv").open()))
    samples, report = load_metadata(synthetic_ham)
    reasons = {entry["image_id"]: entry["reason"] for entry in report.skipped}
    assert "unknown dx" in reasons[broken["unknown"]]
    assert "missing" in reasons[broken["missing"]]
    assert len(samples) == len(rows) - 2
    cache = build_cache(samples, synthetic_ham / "cache", default_spec(3), workers=1)
    assert broken["corrupt"] in cache.failed  # corrupt JPEG: listed, not fatal


def test_missing_metadata_is_a_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match=r"HAM10000_metadata\.csv"):
        load_metadata(tmp_path)


def test_cache_equals_device_preprocessing_and_is_reused(synthetic_ham):
    samples, _ = load_metadata(synthetic_ham)
    spec = default_spec(3)
    cache = build_cache(samples[:6], synthetic_ham / "cache", spec, workers=1)
    for row, sample in enumerate(samples[:6]):
        expected = preprocess(read_image(sample.path), spec).model_input
        assert np.array_equal(cache.images[row], expected)
    folders = list((synthetic_ham / "cache").iterdir())
    again = build_cache(samples[:6], synthetic_ham / "cache", spec, workers=1)
    assert list((synthetic_ham / "cache").iterdir()) == folders
    assert np.array_equal(np.asarray(again.images), np.asarray(cache.images))
    assert not any(".tmp" in f.name for f in folders)
