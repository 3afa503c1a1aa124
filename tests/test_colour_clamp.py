"""Spec v6: the illuminant clamped into the training images' range, and bundles re-specced to it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from bundle_factory import make_bundle, synthetic_frames, write_rows_csv
from conftest import write_synthetic_ham

from device.errors import ConfigError, SkinScanError
from device.evaluation.shifts import shift_by_name
from device.imaging.colour import (
    ColourParams,
    IlluminantRegion,
    chromaticity,
    clamped_target,
    fit_region,
    illuminant_estimate,
    normalise_colour,
    region_distance,
)
from device.imaging.io import read_image
from device.imaging.pipeline import PreprocessSpec, default_spec, preprocess
from device.labels import CLASS_CODES
from device.phantoms import make_phantom
from training.data import Sample, with_colour_reference


def _phantom(seed: int) -> np.ndarray:
    return make_phantom(seed, size=(150, 200), hair=False).image


def _tinted(frame: np.ndarray, gains: tuple[float, float, float]) -> np.ndarray:
    return np.clip(frame.astype(np.float64) * np.array(gains) + 0.5, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def training_frames() -> list[np.ndarray]:
    """Phantoms under a spread of mild, archive-like white balances."""
    rng = np.random.default_rng(0)
    frames = []
    for seed in range(40):
        red, blue = rng.normal(1.0, 0.06), rng.normal(1.0, 0.04)
        frames.append(_tinted(_phantom(seed % 8 + 1), (red, 1.0, blue)))
    return frames


@pytest.fixture(scope="module")
def clamp(training_frames) -> ColourParams:
    reference, region = fit_region(training_frames, ColourParams(), quantile=0.9)
    return ColourParams(reference=reference, region=region)


@pytest.mark.parametrize(
    ("covariance", "radius", "match"),
    [
        ((1.0, 2.0, 1.0), 1.0, "positive definite"),
        ((-1.0, 0.0, 1.0), 1.0, "positive definite"),
        ((1.0, 0.0), 1.0, "three numbers"),
        ((1.0, 0.0, 1.0), -1.0, "radius"),
        ((1.0, 0.0, 1.0), float("nan"), "radius"),
    ],
)
def test_a_bad_region_is_a_config_error(covariance, radius, match) -> None:
    with pytest.raises(ConfigError, match=match):
        IlluminantRegion(covariance, radius)


def test_the_unusual_radius_is_never_inside_the_correction_radius() -> None:
    with pytest.raises(ConfigError, match="unusual_radius"):
        IlluminantRegion((0.01, 0.0, 0.01), 2.0, unusual_radius=1.0)
    assert IlluminantRegion((0.01, 0.0, 0.01), 2.0, unusual_radius=2.0).unusual_radius == 2.0


def test_a_region_needs_its_centre() -> None:
    with pytest.raises(ConfigError, match="reference"):
        ColourParams(region=IlluminantRegion((0.01, 0.0, 0.01), 2.0))


def test_the_fitted_region_holds_the_quantile_of_the_training_images(training_frames) -> None:
    params = ColourParams()
    reference, region = fit_region(training_frames, params, quantile=0.9)
    chromas = np.array([chromaticity(illuminant_estimate(f, params)) for f in training_frames])
    # The centre is the geometric-mean chromaticity, so a cast and its opposite cancel.
    centre = np.exp(np.mean(np.log(chromas), axis=0))
    np.testing.assert_allclose(reference, centre / centre.mean(), rtol=1e-6)
    assert abs(np.mean(reference) - 1.0) < 1e-9
    distances = region_distance(chromas, np.asarray(reference), region)
    inside = distances <= region.radius
    assert inside.mean() == pytest.approx(0.9, abs=1 / len(training_frames))
    assert region.quantile == 0.9
    # "Unusual" is kept for light further out than 99% of the training images'.
    assert region.unusual_quantile == 0.99 and region.unusual_radius >= region.radius
    assert (distances > region.unusual_radius).mean() <= 0.01 + 1 / len(training_frames)
    with pytest.raises(ValueError):
        fit_region(training_frames[:2], params)
    with pytest.raises(ValueError):
        fit_region(training_frames, params, quantile=0.0)


def test_identical_white_balances_still_give_a_region() -> None:
    frame = _phantom(3)
    reference, region = fit_region([frame, frame.copy(), frame.copy()], ColourParams())
    assert region.radius == pytest.approx(0, abs=1e-6)
    params = ColourParams(reference=reference, region=region)
    cast = shift_by_name("colour-4000K").apply(frame)
    target = clamped_target(chromaticity(illuminant_estimate(cast, params)), params)
    np.testing.assert_allclose(target, reference, atol=1e-4)  # radius 0: to the centre


def test_a_frame_inside_the_region_is_left_exactly_as_it_is(training_frames, clamp) -> None:
    chromas = [chromaticity(illuminant_estimate(f, clamp)) for f in training_frames]
    distances = region_distance(np.array(chromas), np.asarray(clamp.reference), clamp.region)
    frame = training_frames[int(np.argmin(distances))]
    out = normalise_colour(frame, clamp)
    assert out is frame or np.array_equal(out, frame)


def test_a_cast_outside_is_moved_to_the_edge_towards_the_centre(training_frames, clamp) -> None:
    frame = shift_by_name("colour-3000K").apply(training_frames[0])
    before = chromaticity(illuminant_estimate(frame, clamp))
    reference = np.asarray(clamp.reference)
    assert region_distance(before, reference, clamp.region) > 2 * clamp.region.radius
    target = clamped_target(before, clamp)
    assert float(region_distance(target, reference, clamp.region)) == pytest.approx(
        clamp.region.radius, rel=1e-6
    )
    out = normalise_colour(frame, clamp)
    after = chromaticity(illuminant_estimate(out, clamp))
    # The corrected frame's own estimate lands near the edge (clipping moves it a little).
    assert float(region_distance(after, reference, clamp.region)) < 1.5 * clamp.region.radius
    assert abs(out.mean() - frame.mean()) < 0.15 * frame.mean()


def test_only_version_6_may_carry_a_region(clamp) -> None:
    with pytest.raises(ConfigError, match="version 6"):
        replace(default_spec(3), colour=clamp)
    assert default_spec(6).colour.region is None


def test_the_reference_is_stored_with_mean_one(clamp) -> None:
    params = ColourParams(reference=(2.5, 1.8, 1.7), region=clamp.region)
    assert params.reference is not None
    assert abs(np.mean(params.reference) - 1.0) < 1e-6
    assert params.reference[0] > params.reference[1] > params.reference[2]


@pytest.mark.parametrize(
    "bad", [(1.0, 1.0), (1.0, -1.0, 1.0), (1.0, float("nan"), 1.0), ("a", "b", "c")]
)
def test_a_bad_reference_is_a_config_error(bad, clamp) -> None:
    with pytest.raises(ConfigError, match="reference"):
        ColourParams(reference=bad, region=clamp.region)


def test_a_reference_without_a_region_is_retired_spec_5(clamp) -> None:
    with pytest.raises(ConfigError, match="retired spec 5"):
        ColourParams(reference=clamp.reference)


def test_a_v6_spec_keeps_v3_geometry_and_round_trips(clamp) -> None:
    v3, v6 = default_spec(3), replace(default_spec(6), colour=clamp)
    assert (v6.crop, v6.segment, v6.input_size) == (v3.crop, v3.segment, v3.input_size)
    data = json.loads(json.dumps(v6.to_dict()))
    assert isinstance(data["colour"]["region"]["covariance"], list)
    again = PreprocessSpec.from_dict(data)
    assert again == v6 and again.digest() == v6.digest() != default_spec(6).digest()
    with pytest.raises(ConfigError):
        replace(default_spec(6), colour=ColourParams(method="none"))


def test_the_pipeline_keeps_in_range_frames_and_pulls_back_a_cast(training_frames, clamp) -> None:
    v3, v6 = default_spec(3), replace(default_spec(6), colour=clamp)
    chromas = np.array([chromaticity(illuminant_estimate(f, clamp)) for f in training_frames])
    distances = region_distance(chromas, np.asarray(clamp.reference), clamp.region)
    inside = training_frames[int(np.argmin(distances))]
    assert np.array_equal(preprocess(inside, v6).model_input, preprocess(inside, v3).model_input)
    warm = shift_by_name("colour-3000K").apply(inside)
    plain = preprocess(inside, v3).model_input.astype(float)
    gap_v3 = np.abs(preprocess(warm, v3).model_input - plain).mean()
    gap_v6 = np.abs(preprocess(warm, v6).model_input - plain).mean()
    assert gap_v6 < 0.6 * gap_v3


def test_the_pipeline_says_when_the_light_was_unusual(training_frames, clamp) -> None:
    v6 = replace(default_spec(6), colour=clamp)
    chromas = np.array([chromaticity(illuminant_estimate(f, clamp)) for f in training_frames])
    distances = region_distance(chromas, np.asarray(clamp.reference), clamp.region)
    inside = training_frames[int(np.argmin(distances))]
    warm = shift_by_name("colour-3000K").apply(inside)
    assert preprocess(inside, v6).unusual_light is False
    assert preprocess(warm, v6).unusual_light is True
    # Corrected but not unusual: between the correction radius and the unusual one.
    between = [
        f
        for f, d in zip(training_frames, distances, strict=True)
        if clamp.region.radius < d <= clamp.region.unusual_radius
    ]
    assert between, "the fixture needs a frame in the ring between the two radii"
    assert not np.array_equal(normalise_colour(between[0], clamp), between[0])
    assert preprocess(between[0], v6).unusual_light is False
    # Spec 3 has no colour step and nothing to report.
    assert preprocess(warm, default_spec(3)).unusual_light is False


def test_the_flag_reaches_the_saved_record() -> None:
    from app_fakes import sample_result

    from device.app.results import record_from_result, result_from_record
    from device.ui.screens import UNUSUAL_LIGHT_NOTE

    view = replace(sample_result(p_malignant=0.04, tier="monitor"), unusual_light=True)
    record = record_from_result(view, device_id="d", bundle_id="b", bundle_sha256="0" * 64)
    assert record.extra["unusual_light"] == "1"
    assert result_from_record(record).unusual_light is True
    assert UNUSUAL_LIGHT_NOTE.startswith("Unusual light")


def _samples(folder: Path, frames: list[np.ndarray]) -> list[Sample]:
    samples = []
    for i, frame in enumerate(frames):
        path = folder / f"ISIC_{i}.jpg"
        cv2.imwrite(str(path), frame[..., ::-1])
        samples.append(Sample(f"ISIC_{i}", f"HAM_{i}", "nv", path))
    return samples


def test_training_fits_the_region_for_version_6(tmp_path: Path, training_frames) -> None:
    samples = _samples(tmp_path, training_frames[:10])
    fitted = with_colour_reference(default_spec(6), samples)
    assert fitted.colour.region is not None and fitted.colour.region.quantile == 0.975
    assert with_colour_reference(fitted, samples) is fitted


def test_training_fits_on_the_readable_training_images_only(tmp_path: Path) -> None:
    frames = [shift_by_name("colour-3000K").apply(_phantom(s)) for s in (7, 8, 9)]
    samples = _samples(tmp_path, frames)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    samples.append(Sample("broken", "HAM_x", "nv", tmp_path / "broken.jpg"))
    fitted = with_colour_reference(default_spec(6), samples)
    assert fitted.colour.reference is not None
    # Warm light: the fitted centre is reddish, as the training images are.
    assert fitted.colour.reference[0] > fitted.colour.reference[2]
    assert with_colour_reference(fitted, samples[:1]) is fitted
    assert with_colour_reference(default_spec(3), samples) == default_spec(3)


def test_the_current_recipe_is_spec_6_with_acquisition_augmentation() -> None:
    import argparse

    from training.augment import AugmentConfig
    from training.cli import configure, recipe_overrides
    from training.train_config import TrainConfig

    parser = argparse.ArgumentParser()
    configure(parser)
    recipe = parser.parse_args(["--data", "x"]).recipe  # skinscan train without --recipe
    assert recipe == "current"
    cfg = TrainConfig(data_dir="x", run_dir="run")
    for name, value in recipe_overrides(recipe).items():
        setattr(cfg, name, value)
    spec = PreprocessSpec.from_dict(cfg.preprocessing)
    assert spec == default_spec(6) and not spec.fitted  # fitted by the run, on its train split
    augment = AugmentConfig.from_dict(cfg.augment)
    assert augment.channel_gain > 0 and augment.blur_probability > 0
    assert augment.jpeg_probability > 0 and tuple(augment.gamma) != (1.0, 1.0)


def test_a_spec_6_run_records_its_fitted_region_for_conversion(tmp_path: Path) -> None:
    from training.train_config import TrainConfig
    from training.train_data import _Data

    ham = write_synthetic_ham(tmp_path / "ham", per_class=4)
    run = tmp_path / "run"
    run.mkdir()
    cfg = TrainConfig(data_dir=str(ham), run_dir=str(run), cache_dir=str(tmp_path / "cache"))
    cfg.workers = 1
    data = _Data(cfg, run)
    recorded = json.loads((run / "config.json").read_text())["preprocessing"]
    spec = PreprocessSpec.from_dict(recorded)
    assert spec.version == 6 and spec.fitted
    assert spec == with_colour_reference(default_spec(6), data.by_split["train"][2])
    # The cached model inputs were made with the recorded spec, as the device will make them.
    first = data.by_split["train"][2][0]
    expected = preprocess(read_image(first.path), spec).model_input
    np.testing.assert_array_equal(data.by_split["train"][0][0], expected)
    # Conversion takes the spec from config.json, and a bundle of it loads.
    bundle = make_bundle(tmp_path / "bundle", preprocessing=recorded)
    from device.runtime.bundle import load_bundle

    assert load_bundle(bundle).preprocess == spec


def _split_folder(root: Path) -> tuple[Path, Path]:
    images = root / "images"
    images.mkdir()
    rows = []
    rng = np.random.default_rng(5)
    for split, count, seed in (("train", 35, 1), ("val", 42, 2), ("test", 21, 3)):
        frames, labels = synthetic_frames(count, seed=seed)
        for i, (frame, label) in enumerate(zip(frames, labels, strict=True)):
            image_id = f"ISIC_{split}_{i}"
            tinted = _tinted(frame, (rng.normal(1, 0.05), 1.0, rng.normal(1, 0.05)))
            cv2.imwrite(str(images / f"{image_id}.jpg"), tinted[..., ::-1])
            rows.append(
                {
                    "image_id": image_id,
                    "dx": CLASS_CODES[label],
                    "split": split,
                    "sex": ("male", "female")[i % 2],
                    "age": str(30 + 5 * (i % 9)),
                    "localization": ("back", "face", "lower extremity")[i % 3],
                }
            )
    return write_rows_csv(root / "split.csv", rows), images


def test_a_spec_3_bundle_is_re_specced_with_its_calibration_refitted(tmp_path: Path) -> None:
    from conversion.clamp_colour import clamp_bundle_colour
    from device.runtime.bundle import load_bundle

    split_csv, images = _split_folder(tmp_path)
    source = make_bundle(
        tmp_path / "v3",
        preprocessing=default_spec(3).to_dict(),
        metrics={"int8_test": {"balanced_accuracy": 0.5}, "parity": {"kept": True}},
    )
    source_manifest = (source / "manifest.json").read_bytes()
    out = tmp_path / "v3k"
    record = clamp_bundle_colour(
        source, out, split_csv, images, quantile=0.9, confidence=0.0, workers=1
    )
    assert (source / "manifest.json").read_bytes() == source_manifest
    bundle = load_bundle(out)
    manifest = bundle.manifest
    assert manifest.bundle_id == "tiny-test-clamp"
    spec = PreprocessSpec.from_dict(manifest.preprocessing)
    assert spec.version == 6 and spec.colour.region is not None
    assert spec.colour.region.radius == pytest.approx(record["radius"])
    assert manifest.metrics["parity"] == {"kept": True}
    assert manifest.metrics["colour_clamp"]["val"]["n_images"] == 42
    assert manifest.metrics["int8_test"]["n_images"] == 21  # re-measured, not the stale 0.5
    assert "shift_threshold" in manifest.metrics and bundle.familiarity is not None
    in_distribution = manifest.metrics["shift_threshold"]["in_distribution_threshold"]
    assert in_distribution == pytest.approx(record["val"]["referral_threshold"])
    assert manifest.calibration.referral_threshold <= in_distribution
    subgroups = manifest.metrics["subgroups_int8_test"]
    assert sum(g["n"] for g in subgroups["sex"].values()) == 21
    assert set(subgroups["localization"]) == {"back", "face", "lower extremity"}
    card = (out / "MODEL_CARD.md").read_text()
    assert "clamped into" in card and "By localization" in card
    with pytest.raises(SkinScanError, match="not empty"):
        clamp_bundle_colour(source, out, split_csv, images, confidence=0.0)
    with pytest.raises(SkinScanError, match="version 3"):
        clamp_bundle_colour(out, tmp_path / "again", split_csv, images, confidence=0.0)
