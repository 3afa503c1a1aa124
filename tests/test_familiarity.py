"""The familiarity check: a feature density that turns "Monitor" into "Uncertain — refer"."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from bundle_factory import make_bundle, synthetic_frames, write_rows_csv

from device.app.results import record_from_result, result_from_analysis, result_from_record
from device.errors import BundleChecksumError, BundleModelError
from device.labels import CLASS_CODES
from device.runtime import Analyzer
from device.runtime.decision import decide
from device.runtime.familiarity import FeatureDensity, fit_feature_density, pooled
from device.runtime.manifest import Calibration, LabelSpec

LABELS = (
    LabelSpec(code="mel", name="Melanoma", malignant=True),
    LabelSpec(code="nv", name="Melanocytic nevus", malignant=False),
)
CALIBRATION = Calibration(temperature=1.0, referral_threshold=0.3, uncertainty_threshold=0.5)


def _gaussian(n: int, shift: float = 0.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(99).normal(size=(8, 64))
    return rng.normal(size=(n, 8)) @ basis + rng.normal(0, 0.1, (n, 64)) + shift


def test_scores_are_about_one_in_distribution_and_large_outside() -> None:
    density = fit_feature_density(_gaussian(600), _gaussian(300, seed=1), components=8)
    inside = density.scores(_gaussian(500, seed=2))
    assert 0.7 < np.median(inside) < 1.3
    assert np.mean(inside > density.threshold) < 0.06
    # Off the training subspace (a colour the model never saw) and far along it.
    off_plane = _gaussian(200, seed=3) + np.random.default_rng(4).normal(0, 1.0, (200, 64))
    assert np.mean(density.scores(off_plane) > density.threshold) > 0.9
    assert np.mean(density.scores(_gaussian(200, shift=6.0, seed=5)) > density.threshold) > 0.9


def test_round_trip_and_bad_files() -> None:
    density = fit_feature_density(_gaussian(300), _gaussian(100, seed=1), components=4)
    again = FeatureDensity.from_bytes(density.to_bytes())
    x = _gaussian(20, seed=7)
    np.testing.assert_allclose(again.scores(x), density.scores(x), rtol=1e-4)
    assert again.threshold == pytest.approx(density.threshold)
    with pytest.raises(BundleModelError, match="not a familiarity model"):
        FeatureDensity.from_bytes(b"not an npz")
    broken = FeatureDensity(density.mean[:3], density.components, density.scales, 1.0, 1.0)
    with pytest.raises(BundleModelError, match="shapes"):
        FeatureDensity.from_bytes(broken.to_bytes())
    with pytest.raises(ValueError, match="training feature rows"):
        fit_feature_density(_gaussian(4), _gaussian(4), components=8)


def test_pooled_is_the_spatial_mean() -> None:
    fm = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    np.testing.assert_allclose(pooled(fm), fm.mean(axis=(0, 1)))
    assert pooled(np.stack([fm, fm])).shape == (2, 4)


def test_unfamiliar_turns_monitor_into_uncertain_but_never_a_referral() -> None:
    calm = decide(np.array([0.05, 0.95]), LABELS, CALIBRATION)
    assert calm.risk_tier == "monitor" and not calm.unfamiliar
    odd = decide(np.array([0.05, 0.95]), LABELS, CALIBRATION, unfamiliar=True)
    assert odd.risk_tier == "uncertain" and odd.unfamiliar
    referred = decide(np.array([0.6, 0.4]), LABELS, CALIBRATION, unfamiliar=True)
    assert referred.risk_tier == "refer"


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, FeatureDensity]:
    root = tmp_path_factory.mktemp("familiar")
    plain = make_bundle(root / "plain")
    analyzer = Analyzer.from_path(plain)
    train, _ = synthetic_frames(84, seed=1)
    val, _ = synthetic_frames(42, seed=2)

    def features(frames: list[np.ndarray]) -> np.ndarray:
        return np.stack([pooled(analyzer.analyze(f, explain=False).feature_map) for f in frames])

    density = fit_feature_density(features(train), features(val), components=8)
    return plain, make_bundle(root / "familiar", familiarity=density), density


def test_a_bundle_with_the_check_flags_unlike_frames(bundles) -> None:
    plain, familiar, density = bundles
    analyzer = Analyzer.from_path(familiar)
    assert analyzer.bundle.familiarity is not None
    assert analyzer.bundle.familiarity.threshold == pytest.approx(density.threshold, rel=1e-6)
    frames, _ = synthetic_frames(28, seed=3)
    flags = [analyzer.analyze(f, explain=False).decision.unfamiliar for f in frames]
    assert np.mean(flags) <= 0.15
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (150, 200, 3), dtype=np.uint8)
    stripes = np.zeros((150, 200, 3), np.uint8)
    stripes[:, ::8] = (0, 255, 0)
    for frame in (noise, stripes):
        decision = analyzer.analyze(frame, explain=False).decision
        assert decision.unfamiliar
        assert decision.risk_tier in ("uncertain", "refer")
    # A bundle without the check never calls a frame unfamiliar.
    assert not Analyzer.from_path(plain).analyze(noise, explain=False).decision.unfamiliar


def test_the_flag_is_saved_with_the_scan(bundles) -> None:
    _, familiar, _ = bundles
    analyzer = Analyzer.from_path(familiar)
    noise = np.random.default_rng(1).integers(0, 255, (150, 200, 3), dtype=np.uint8)
    analysis = analyzer.analyze(noise)
    view = result_from_analysis(analysis, referral_threshold=0.4, quality={}, scan_key="k")
    assert view.unfamiliar
    record = record_from_result(view, device_id="d", bundle_id="b", bundle_sha256="0" * 64)
    assert result_from_record(record).unfamiliar


def test_a_tampered_familiarity_file_is_refused(bundles, tmp_path: Path) -> None:
    import shutil

    from device.runtime.bundle import load_bundle

    _, familiar, _ = bundles
    copy = tmp_path / "bundle"
    shutil.copytree(familiar, copy)
    data = bytearray((copy / "familiarity.npz").read_bytes())
    data[-40] ^= 0xFF
    (copy / "familiarity.npz").write_bytes(bytes(data))
    with pytest.raises(BundleChecksumError):
        load_bundle(copy)


def test_an_older_bundle_gets_the_check_fitted_from_images(tmp_path: Path) -> None:
    import cv2

    from conversion.refit_familiarity import refit_familiarity
    from device.runtime.bundle import load_bundle

    bundle = make_bundle(tmp_path / "bundle")
    assert load_bundle(bundle).familiarity is None
    images = tmp_path / "images"
    images.mkdir()
    rows = []
    for split, count, seed in (("train", 70, 1), ("val", 35, 2), ("test", 21, 3)):
        frames, labels = synthetic_frames(count, seed=seed)
        for i, (frame, label) in enumerate(zip(frames, labels, strict=True)):
            image_id = f"ISIC_{split}_{i}"
            cv2.imwrite(str(images / f"{image_id}.jpg"), frame[..., ::-1])
            rows.append({"image_id": image_id, "dx": CLASS_CODES[label], "split": split})
    split_csv = write_rows_csv(tmp_path / "split.csv", rows)
    report = refit_familiarity(bundle, split_csv, images, n_train=70)
    loaded = load_bundle(bundle)
    assert loaded.familiarity is not None
    assert loaded.manifest.familiarity.threshold == pytest.approx(report["threshold"])
    assert 0 < report["validation_fire_rate"] <= 0.05
    assert 0 <= report["test_fire_rate"] <= 0.3
    assert "Familiarity check" in (bundle / "MODEL_CARD.md").read_text()
