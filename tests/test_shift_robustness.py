"""Spec v4's acquisition robustness: colour constancy, the lesion-scaled crop, the shifts."""

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
from device.imaging.colour import ColourParams, channel_gains, normalise_colour
from device.imaging.pipeline import PreprocessSpec, default_spec, preprocess
from device.imaging.roi import CropParams, crop_and_resize, square_roi
from device.imaging.segment import segment_lesion
from device.phantoms import make_phantom
from training.augment import AugmentConfig, augment, random_acquisition

ROOT = Path(__file__).resolve().parents[1]


def _phantom(seed: int = 1, size: tuple[int, int] = (150, 200)) -> np.ndarray:
    return make_phantom(seed, size=size, hair=False).image


# ---- colour constancy --------------------------------------------------------------------


def test_shades_of_gray_undoes_a_colour_cast() -> None:
    frame = _phantom()
    params = ColourParams()
    for name in ("colour-3000K", "colour-8000K"):
        cast = shift_by_name(name).apply(frame)
        before = np.abs(cast.astype(float) - frame).mean()
        after = np.abs(
            normalise_colour(cast, params).astype(float) - normalise_colour(frame, params)
        ).mean()
        assert after < 0.35 * before, name


def test_shades_of_gray_makes_the_illuminant_grey_and_keeps_brightness() -> None:
    frame = _phantom(2)
    out = normalise_colour(frame, ColourParams())
    gains_after = channel_gains(out, ColourParams())
    np.testing.assert_allclose(gains_after, 1.0, atol=0.03)
    assert abs(out.mean() - frame.mean()) < 0.1 * frame.mean()


def test_vignette_corners_do_not_steer_the_estimate() -> None:
    frame = _phantom(3).copy()
    dark = frame.copy()
    dark[:40, :40] = (0, 0, 60)  # a bluish black corner, below the "dark" limit
    np.testing.assert_allclose(
        channel_gains(dark, ColourParams()), channel_gains(frame, ColourParams()), atol=0.02
    )


def test_colour_params_are_validated() -> None:
    with pytest.raises(ConfigError, match="method"):
        ColourParams(method="grey-world")
    with pytest.raises(ConfigError, match="power"):
        ColourParams(power=0.5)


# ---- spec versions -----------------------------------------------------------------------


def test_the_shipped_v3_bundle_spec_loads_without_colour_constancy() -> None:
    manifest = json.loads((ROOT / "device/models/default/manifest.json").read_text())
    spec = PreprocessSpec.from_dict(manifest["preprocessing"])
    if spec.version == 3:
        assert spec.colour.method == "none"
        assert spec.crop.max_fraction == 1.0
        assert spec.segment.min_contrast == 0.0
    assert PreprocessSpec().version == 5
    assert PreprocessSpec().colour.method == "shades_of_gray"


def test_an_older_version_cannot_claim_v4_features() -> None:
    data = {**PreprocessSpec().to_dict(), "version": 3}
    with pytest.raises(ConfigError, match="version 3"):
        PreprocessSpec.from_dict(data)


def test_v4_sees_a_colour_cast_frame_much_like_the_original() -> None:
    frame = _phantom(4, size=(450, 600))
    cast = shift_by_name("colour-3000K").apply(frame)
    v3, v4 = default_spec(3), PreprocessSpec()

    def gap(spec: PreprocessSpec) -> float:
        a = preprocess(frame, spec).model_input.astype(float)
        b = preprocess(cast, spec).model_input.astype(float)
        return float(np.abs(a - b).mean())

    assert gap(v4) < 0.35 * gap(v3)


# ---- the lesion-scaled crop ----------------------------------------------------------------


def test_crop_of_a_large_lesion_touching_the_border_keeps_all_of_it() -> None:
    height, width = 150, 200
    box = (0, 10, 190, 150)  # touches the left and bottom borders, wider than the short side
    params = CropParams(margin=0.2, min_fraction=0.8, max_fraction=1.5)
    roi = square_roi((height, width), box, params)
    x0, y0, x1, y1 = roi
    assert x1 - x0 == y1 - y0 == 225  # 1.5 x the short side: the clamp
    assert x0 <= box[0] and y0 <= box[1] and x1 >= box[2] and y1 >= box[3]
    image = np.zeros((height, width, 3), np.uint8)
    image[box[1] : box[3], box[0] : box[2]] = 200
    crop = crop_and_resize(image, roi, 224)
    assert crop.shape == (224, 224, 3)
    # Padding mirrors the image, so no black frame is invented around it.
    assert crop.mean() > 0.5 * 200


def test_v3_crop_rule_is_unchanged_with_max_fraction_one() -> None:
    params = CropParams(margin=0.25, min_fraction=1.0)
    roi = square_roi((150, 200), (0, 10, 190, 150), params)
    assert roi == (20, 0, 170, 150)


def test_crop_params_are_validated() -> None:
    with pytest.raises(ConfigError, match="max_fraction"):
        CropParams(max_fraction=0.5)


def test_v4_lesion_share_of_the_input_depends_less_on_distance() -> None:
    frame = _phantom(5, size=(450, 600))
    closer = shift_by_name("scale-closer").apply(frame, seed=3)

    def share(image: np.ndarray, spec: PreprocessSpec) -> float:
        result = preprocess(image, spec)
        lx0, _, lx1, _ = result.lesion_box
        rx0, _, rx1, _ = result.roi_box
        return (lx1 - lx0) / (rx1 - rx0)

    v3_change = share(closer, default_spec(3)) / share(frame, default_spec(3))
    v4_change = share(closer, PreprocessSpec()) / share(frame, PreprocessSpec())
    assert v3_change > 1.15  # closer: v3 shows a bigger lesion
    assert 1.0 <= v4_change < v3_change


def test_v4_crop_keeps_the_lesion_share_for_lesions_of_0_6_to_1_short_side() -> None:
    v3, v4 = default_spec(3).crop, PreprocessSpec().crop
    shares3, shares4 = [], []
    for side in (90, 110, 130, 150):  # 0.6-1.0 of the 150 px short side
        box = (100 - side // 2, 75 - side // 2, 100 + side // 2, 75 + side // 2)
        for params, shares in ((v3, shares3), (v4, shares4)):
            x0, _, x1, _ = square_roi((150, 200), box, params)
            shares.append((box[2] - box[0]) / (x1 - x0))
    np.testing.assert_allclose(shares4, 1 / (1 + 2 * v4.margin), atol=0.01)
    assert shares3[-1] / shares3[0] > 1.6


def test_the_photo_shown_matches_the_padded_model_input() -> None:
    frame = _phantom(6, size=(450, 600))
    frame = shift_by_name("scale-closer").apply(frame, seed=1)
    result = preprocess(frame)
    x0, y0, x1, y1 = result.roi_box
    photo = roi_photo(frame, result.roi_box, side=224)
    assert x1 - x0 == y1 - y0
    # Same square of the frame as the model input (which is colour-normalised).
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


def test_runs_before_spec_4_resume_without_acquisition_augmentation() -> None:
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
