"""Features of confirmed cases through the device pipeline: gate, unreadable files, cache."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from bundle_factory import make_bundle, synthetic_frame

from clinic.adaptation.cases import Case
from clinic.adaptation.features import extract_features
from device.imaging.pipeline import preprocess
from device.runtime.bundle import load_bundle


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    return load_bundle(make_bundle(tmp_path_factory.mktemp("tiny") / "bundle"))


def _jpeg(path: Path, frame: np.ndarray) -> Path:
    cv2.imwrite(str(path), frame[..., ::-1])
    return path


def test_features_are_the_pooled_feature_map_and_bad_images_are_listed(tiny, tmp_path) -> None:
    rng = np.random.default_rng(0)
    good = [_jpeg(tmp_path / f"g{i}.jpg", synthetic_frame(4, rng)) for i in range(3)]
    plain = _jpeg(tmp_path / "plain.jpg", np.full((150, 200, 3), (225, 185, 160), np.uint8))
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 broken \xff\xd9")
    items = [(f"g{i}", p) for i, p in enumerate(good)]
    items += [("plain", plain), ("corrupt", corrupt), ("absent", tmp_path / "absent.jpg")]
    fs = extract_features(tiny, items, workers=1)
    assert fs.ids == ["g0", "g1", "g2"]
    reasons = dict(fs.excluded)
    assert set(reasons) == {"plain", "corrupt", "absent"}
    assert reasons["plain"].startswith("quality gate")
    assert "not found" in reasons["absent"]
    assert fs.features.shape == (3, 32) and fs.features.dtype == np.float32
    frame = cv2.imread(str(good[0]))[..., ::-1]
    out = tiny.classifier.classify(preprocess(frame, tiny.preprocess).model_input)
    np.testing.assert_allclose(fs.features[0], out.feature_map.mean(axis=(0, 1)), rtol=1e-5)
    np.testing.assert_allclose(fs.base_logits[0], out.logits, rtol=1e-5)


def test_bytes_cases_and_two_workers_give_the_same_features(tiny, tmp_path) -> None:
    rng = np.random.default_rng(1)
    paths = [_jpeg(tmp_path / f"c{i}.jpg", synthetic_frame(i % 7, rng)) for i in range(6)]
    by_path = extract_features(tiny, [(p.stem, p) for p in paths], workers=1)
    cases = [Case(case_id=p.stem, dx="nv", image=p.read_bytes()) for p in paths]
    by_bytes = extract_features(tiny, cases, workers=2)
    assert by_bytes.ids == by_path.ids
    np.testing.assert_array_equal(by_bytes.features, by_path.features)


def test_the_cache_answers_without_the_images(tiny, tmp_path) -> None:
    rng = np.random.default_rng(2)
    paths = [_jpeg(tmp_path / f"k{i}.jpg", synthetic_frame(5, rng)) for i in range(4)]
    items = [(p.stem, p) for p in paths]
    first = extract_features(tiny, items, workers=1, cache_dir=tmp_path / "cache")
    for p in paths:
        p.unlink()
    second = extract_features(tiny, items, workers=1, cache_dir=tmp_path / "cache")
    assert second.ids == first.ids
    np.testing.assert_array_equal(second.features, first.features)
    # Without the cache the images are gone, so they are listed as left out.
    assert len(extract_features(tiny, items, workers=1).excluded) == 4


def test_duplicate_ids_are_refused(tiny, tmp_path) -> None:
    path = _jpeg(tmp_path / "a.jpg", synthetic_frame(4, np.random.default_rng(3)))
    with pytest.raises(ValueError, match="unique"):
        extract_features(tiny, [("a", path), ("a", path)], workers=1)


def test_a_scan_that_passed_the_scanner_s_gate_is_not_gated_again(tiny, tmp_path) -> None:
    # The clinic keeps only the analysed square of a scan; the scanner's gate judged the
    # whole still. A second gate on the square would drop sharp scans as "blurred".
    blurred = cv2.GaussianBlur(synthetic_frame(4, np.random.default_rng(1)), (0, 0), 6)
    path = _jpeg(tmp_path / "soft.jpg", blurred)
    fresh = extract_features(tiny, [Case("fresh", "nv", path)], workers=1)
    assert fresh.ids == [] and fresh.excluded[0][1].startswith("quality gate")
    scanned = extract_features(tiny, [Case("scanned", "nv", path, passed_gate=True)], workers=1)
    assert scanned.ids == ["scanned"] and scanned.excluded == []
