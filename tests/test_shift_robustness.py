"""Acquisition robustness: the illuminant estimate, the crop rule, the shifts, augmentation.

Spec 6's colour clamp itself is tested in test_colour_clamp.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from device.app.results import roi_photo
from device.errors import ConfigError
from device.evaluation.shift_report import highest_threshold_for_sensitivity
from device.evaluation.shifts import (
    REALISTIC_THRESHOLD_SHIFTS,
    SHIFTS,
    colour_temperature_gains,
    image_seed,
    shift_by_name,
)
from device.imaging.colour import ColourParams, chromaticity, illuminant_estimate
from device.imaging.pipeline import SPEC_VERSION, PreprocessSpec, default_spec, preprocess
from device.imaging.roi import CropParams, square_roi
from device.imaging.segment import segment_lesion
from device.phantoms import make_phantom
from training.augment import AugmentConfig, augment, random_acquisition

ROOT = Path(__file__).resolve().parents[1]


def _phantom(seed: int = 1, size: tuple[int, int] = (150, 200)) -> np.ndarray:
    return make_phantom(seed, size=size, hair=False).image


# ---- the illuminant estimate -------------------------------------------------------------


def test_vignette_corners_do_not_steer_the_estimate() -> None:
    frame = _phantom(3).copy()
    dark = frame.copy()
    dark[:40, :40] = (0, 0, 60)  # a bluish black corner, below the "dark" limit
    params = ColourParams()
    np.testing.assert_allclose(
        chromaticity(illuminant_estimate(dark, params)),
        chromaticity(illuminant_estimate(frame, params)),
        atol=0.02,
    )


def test_colour_params_are_validated() -> None:
    with pytest.raises(ConfigError, match="method"):
        ColourParams(method="grey-world")
    with pytest.raises(ConfigError, match="power"):
        ColourParams(power=0.5)


# ---- spec versions -----------------------------------------------------------------------


def test_the_shipped_bundle_spec_is_spec_version_6_with_spec_3_geometry() -> None:
    manifest = json.loads((ROOT / "device/models/default/manifest.json").read_text())
    spec = PreprocessSpec.from_dict(manifest["preprocessing"])
    assert spec.version == SPEC_VERSION == 6 and spec.fitted
    v3 = default_spec(3)
    assert (spec.crop, spec.segment, spec.hair, spec.work_long_side) == (
        v3.crop,
        v3.segment,
        v3.hair,
        v3.work_long_side,
    )
    assert PreprocessSpec().version == 6
    assert PreprocessSpec().colour.method == "shades_of_gray"


def test_spec_3_cannot_claim_the_colour_clamp() -> None:
    data = {**PreprocessSpec().to_dict(), "version": 3}
    with pytest.raises(ConfigError, match="version 3"):
        PreprocessSpec.from_dict(data)


# ---- the crop ----------------------------------------------------------------------------


def test_v3_crop_rule_is_the_whole_short_side_kept_inside() -> None:
    params = CropParams(margin=0.25, min_fraction=1.0)
    roi = square_roi((150, 200), (0, 10, 190, 150), params)
    assert roi == (20, 0, 170, 150)


def test_crop_params_are_validated() -> None:
    with pytest.raises(ConfigError, match="min_fraction"):
        CropParams(min_fraction=1.5)
    with pytest.raises(ConfigError, match="margin"):
        CropParams(margin=-0.1)


def test_the_photo_shown_matches_the_model_input() -> None:
    frame = _phantom(6, size=(450, 600))
    frame = shift_by_name("scale-closer").apply(frame, seed=1)
    result = preprocess(frame)
    x0, y0, x1, y1 = result.roi_box
    photo = roi_photo(frame, result.roi_box, side=224)
    assert x1 - x0 == y1 - y0
    # Same square of the frame as the model input (cut from the 200 px working copy).
    grey_photo = photo.astype(float).mean(axis=2)
    grey_input = result.model_input.astype(float).mean(axis=2)
    assert np.corrcoef(grey_photo.ravel(), grey_input.ravel())[0, 1] > 0.9


# ---- the shifts ----------------------------------------------------------------------------


def test_every_shift_is_deterministic_and_changes_the_frame() -> None:
    frame = _phantom(7)
    for shift in SHIFTS:
        a = shift.apply(frame, seed=5)
        b = shift.apply(frame, seed=5)
        assert a.dtype == np.uint8 and a.ndim == 3, shift.name
        np.testing.assert_array_equal(a, b)
        if shift.name == "none":
            np.testing.assert_array_equal(a, frame)
        elif a.shape == frame.shape:
            assert np.abs(a.astype(int) - frame).mean() > 0.5, shift.name


def test_shift_geometry() -> None:
    frame = _phantom(8)
    assert shift_by_name("resolution-3x").apply(frame).shape == (450, 600, 3)
    assert shift_by_name("resolution-4x").apply(frame).shape == (600, 800, 3)
    assert shift_by_name("rotation-45").apply(frame).shape == frame.shape
    before = segment_lesion(frame).mask.mean()
    assert segment_lesion(shift_by_name("scale-closer").apply(frame, 0)).mask.mean() > before
    assert segment_lesion(shift_by_name("scale-further").apply(frame, 0)).mask.mean() < before


def test_colour_temperature_runs_warm_to_cool() -> None:
    warm, cool = colour_temperature_gains(3000), colour_temperature_gains(10000)
    assert warm[0] / warm[2] > 2 and cool[2] / cool[0] > 1.3
    np.testing.assert_allclose(colour_temperature_gains(6500), 1.0)
    frame = _phantom(9)
    red_to_blue = lambda im: im[..., 0].mean() / im[..., 2].mean()  # noqa: E731
    assert red_to_blue(shift_by_name("colour-3000K").apply(frame)) > red_to_blue(frame)


def test_realistic_threshold_shifts_are_benchmark_shifts() -> None:
    for name in REALISTIC_THRESHOLD_SHIFTS:
        assert shift_by_name(name).family in ("colour", "resolution")
    with pytest.raises(KeyError, match="known"):
        shift_by_name("fog")
    assert image_seed("ISIC_1", 0) == image_seed("ISIC_1", 0) != image_seed("ISIC_2", 0)


@pytest.mark.parametrize("minimum", [0.5, 0.85, 0.9, 1.0])
def test_highest_threshold_keeps_the_sensitivity(minimum: float) -> None:
    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 1, 37)
    t = highest_threshold_for_sensitivity(scores, minimum)
    assert np.mean(scores >= t) >= minimum
    higher = scores[scores > t]
    if len(higher):
        assert np.mean(scores >= higher.min()) < minimum


# ---- augmentation --------------------------------------------------------------------------


def test_runs_without_acquisition_augmentation_settings_resume_without_it() -> None:
    old = {k: v for k, v in AugmentConfig().to_dict().items() if k in (
        "flip", "rotate", "crop_scale", "crop_ratio", "zoom", "brightness", "contrast", "hue",
        "saturation",
    )}  # fmt: skip
    cfg = AugmentConfig.from_dict(old)
    assert cfg.channel_gain == 0 and cfg.gamma == (1.0, 1.0)
    assert cfg.blur_probability == 0 and cfg.jpeg_probability == 0


def test_acquisition_augmentation_varies_tone_and_sharpness() -> None:
    image = preprocess(_phantom(10, size=(450, 600))).model_input
    off = AugmentConfig.from_dict(
        {**AugmentConfig().to_dict(), "channel_gain": 0.0, "gamma": (1.0, 1.0),
         "blur_probability": 0.0, "jpeg_probability": 0.0}
    )  # fmt: skip
    np.testing.assert_array_equal(random_acquisition(image, np.random.default_rng(0), off), image)
    full = AugmentConfig()
    shifted = [random_acquisition(image, np.random.default_rng(s), full) for s in range(12)]
    assert np.std([s.mean() for s in shifted]) > 2
    sharpness = [cv2.Laplacian(s[..., 1], cv2.CV_64F).var() for s in shifted]
    assert min(sharpness) < 0.7 * max(sharpness)  # some were blurred
    assert augment(image, np.random.default_rng(0), full).shape == image.shape
    with pytest.raises(ConfigError, match="jpeg_probability"):
        AugmentConfig.from_dict({**full.to_dict(), "jpeg_probability": 2})
