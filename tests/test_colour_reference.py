"""Spec v5: Shades of Gray mapped to the training images' mean illuminant (a reference)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from device.errors import ConfigError
from device.evaluation.shifts import shift_by_name
from device.imaging.colour import (
    ColourParams,
    channel_gains,
    chromaticity,
    fit_reference,
    illuminant_estimate,
    normalise_colour,
)
from device.imaging.pipeline import PreprocessSpec, default_spec, preprocess
from device.phantoms import make_phantom
from training.data import Sample, with_colour_reference

WARM_SKIN = (1.25, 0.9, 0.85)


def _phantom(seed: int = 1) -> np.ndarray:
    return make_phantom(seed, size=(150, 200), hair=False).image


def test_the_reference_is_stored_with_mean_one() -> None:
    params = ColourParams(reference=(2.5, 1.8, 1.7))
    assert params.reference is not None
    assert abs(np.mean(params.reference) - 1.0) < 1e-6
    assert params.reference[0] > params.reference[1] > params.reference[2]


@pytest.mark.parametrize(
    "bad", [(1.0, 1.0), (1.0, -1.0, 1.0), (1.0, float("nan"), 1.0), ("a", "b", "c")]
)
def test_a_bad_reference_is_a_config_error(bad) -> None:
    with pytest.raises(ConfigError, match="reference"):
        ColourParams(reference=bad)


def test_normalising_maps_the_illuminant_to_the_reference_and_keeps_brightness() -> None:
    frame = _phantom(2)
    params = ColourParams(reference=WARM_SKIN)
    out = normalise_colour(frame, params)
    after = chromaticity(illuminant_estimate(out, params))
    np.testing.assert_allclose(after, params.reference, atol=0.03)
    assert abs(out.mean() - frame.mean()) < 0.12 * frame.mean()


def test_without_a_reference_the_target_is_neutral_grey_as_in_v4() -> None:
    frame = _phantom(3)
    grey = channel_gains(frame, ColourParams())
    estimate = illuminant_estimate(frame, ColourParams())
    np.testing.assert_allclose(grey, estimate.mean() / estimate, rtol=1e-9)


def test_a_colour_cast_is_undone_towards_the_reference() -> None:
    frame = _phantom(4)
    params = ColourParams(reference=WARM_SKIN)
    reference_view = normalise_colour(frame, params)
    for name in ("colour-3000K", "colour-10000K"):
        cast = shift_by_name(name).apply(frame)
        before = np.abs(cast.astype(float) - reference_view).mean()
        after = np.abs(normalise_colour(cast, params).astype(float) - reference_view).mean()
        assert after < 0.35 * before, name


def test_fit_reference_is_the_geometric_mean_chromaticity() -> None:
    frame = _phantom(5)
    params = ColourParams()
    warm = shift_by_name("colour-3000K").apply(frame)
    cool = shift_by_name("colour-10000K").apply(frame)
    fitted = np.asarray(fit_reference([warm, cool], params))
    chromas = [chromaticity(illuminant_estimate(i, params)) for i in (warm, cool)]
    expected = np.exp(np.mean(np.log(chromas), axis=0))
    np.testing.assert_allclose(fitted, expected / expected.mean(), rtol=1e-6)
    assert abs(fitted.mean() - 1.0) < 1e-9
    with pytest.raises(ValueError):
        fit_reference([], params)


def test_only_version_5_may_carry_a_reference() -> None:
    v4 = default_spec(4)
    assert v4.colour.reference is None
    with pytest.raises(ConfigError, match="version 5"):
        replace(v4, colour=ColourParams(reference=WARM_SKIN))
    assert default_spec(5).version == 5


def test_a_v5_spec_round_trips_through_json_and_changes_the_digest() -> None:
    spec = replace(default_spec(5), colour=ColourParams(reference=WARM_SKIN))
    data = spec.to_dict()
    assert data["colour"]["reference"] == list(spec.colour.reference)  # JSON-ready, no tuple
    again = PreprocessSpec.from_dict(json.loads(json.dumps(data)))
    assert again == spec
    assert again.digest() == spec.digest() != default_spec(5).digest()


def test_a_v4_manifest_dict_without_reference_loads_as_grey() -> None:
    data = default_spec(4).to_dict()
    del data["colour"]["reference"]
    spec = PreprocessSpec.from_dict(data)
    assert spec.version == 4 and spec.colour.reference is None


def test_the_pipeline_uses_the_reference() -> None:
    frame = _phantom(6)
    grey = preprocess(frame, default_spec(5)).model_input
    warm = preprocess(
        frame, replace(default_spec(5), colour=ColourParams(reference=WARM_SKIN))
    ).model_input
    red_minus_blue = lambda image: float(image[..., 0].mean() - image[..., 2].mean())  # noqa: E731
    assert red_minus_blue(warm) > red_minus_blue(grey) + 10


def _samples(tmp_path: Path, frames: list[np.ndarray]) -> list[Sample]:
    samples = []
    for i, frame in enumerate(frames):
        path = tmp_path / f"ISIC_{i}.jpg"
        cv2.imwrite(str(path), frame[..., ::-1])
        samples.append(Sample(f"ISIC_{i}", f"HAM_{i}", "nv", path))
    return samples


def test_training_fits_the_reference_on_the_given_images_once(tmp_path: Path) -> None:
    frames = [shift_by_name("colour-3000K").apply(_phantom(s)) for s in (7, 8, 9)]
    samples = _samples(tmp_path, frames)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    samples.append(Sample("broken", "HAM_x", "nv", tmp_path / "broken.jpg"))
    fitted = with_colour_reference(default_spec(5), samples)
    assert fitted.colour.reference is not None
    # Warm light: the fitted reference is reddish, as the training images are.
    assert fitted.colour.reference[0] > fitted.colour.reference[2]
    assert with_colour_reference(fitted, samples[:1]) is fitted
    assert with_colour_reference(default_spec(4), samples) == default_spec(4)
    assert with_colour_reference(default_spec(3), samples) == default_spec(3)
