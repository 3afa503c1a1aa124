"""Every augmentation is a random transform that keeps shape and dtype and can be seeded."""

import numpy as np
import pytest

from device.errors import ConfigError
from device.phantoms import make_phantom
from training.augment import (
    AugmentConfig,
    augment,
    random_colour,
    random_flip,
    random_resized_crop,
    random_rotate_zoom,
)

IMAGE = make_phantom(0, size=(224, 224)).image
CFG = AugmentConfig()

TRANSFORMS = {
    "flip": lambda image, rng: random_flip(image, rng),
    "rotate_zoom": lambda image, rng: random_rotate_zoom(image, rng, True, CFG.zoom),
    "resized_crop": lambda image, rng: random_resized_crop(
        image, rng, CFG.crop_scale, CFG.crop_ratio
    ),
    "colour": lambda image, rng: random_colour(image, rng, CFG),
    "all": lambda image, rng: augment(image, rng, CFG),
}


@pytest.mark.parametrize("name", TRANSFORMS)
def test_shape_dtype_kept_and_seeded(name):
    transform = TRANSFORMS[name]
    a = transform(IMAGE, np.random.default_rng(1))
    b = transform(IMAGE, np.random.default_rng(1))
    assert a.shape == IMAGE.shape and a.dtype == np.uint8
    assert np.array_equal(a, b)


@pytest.mark.parametrize("name", TRANSFORMS)
def test_transform_is_random(name):
    transform = TRANSFORMS[name]
    outputs = {transform(IMAGE, np.random.default_rng(seed)).tobytes() for seed in range(8)}
    assert len(outputs) > 1


def test_rotation_covers_the_full_circle():
    rng = np.random.default_rng(0)
    flat = AugmentConfig(zoom=(1.0, 1.0))
    # An arrow pointing right; after rotation its centroid direction spreads over all quadrants.
    image = np.zeros((224, 224, 3), np.uint8)
    image[108:116, 112:200] = 255
    quadrants = set()
    for _ in range(64):
        out = random_rotate_zoom(image, rng, True, flat.zoom)[..., 0]
        ys, xs = np.nonzero(out > 128)
        quadrants.add((xs.mean() > 112, ys.mean() > 112))
    assert len(quadrants) == 4


def test_resized_crop_magnifies_by_the_drawn_scale():
    # A grid of 1-px lines: a crop of area fraction s stretches the line spacing by 1/sqrt(s).
    image = np.zeros((224, 224, 3), np.uint8)
    image[::8] = 255
    rng = np.random.default_rng(3)
    for _ in range(8):
        out = random_resized_crop(image, rng, (0.25, 0.25), (1.0, 1.0))[:, 100, 0]
        rows = np.flatnonzero(out > 100)
        runs = rows[np.flatnonzero(np.diff(rows) > 1) + 1]
        spacing = np.diff(runs).mean()
        assert spacing == pytest.approx(16, abs=1.0)


def test_resized_crop_of_the_whole_image_is_identity():
    out = random_resized_crop(IMAGE, np.random.default_rng(0), (1.0, 1.0), (1.0, 1.0))
    assert np.array_equal(out, IMAGE)


def test_config_round_trips_and_old_runs_resume_without_crop():
    assert AugmentConfig.from_dict(CFG.to_dict()) == CFG
    old = {k: v for k, v in CFG.to_dict().items() if not k.startswith("crop_")}
    assert AugmentConfig.from_dict(old).crop_scale == (1.0, 1.0)


@pytest.mark.parametrize(
    "change", [{"crop_scale": [0.5, 1.5]}, {"zoom": [1.2, 1.0]}, {"crop_ratio": [0, 1]}, {"x": 1}]
)
def test_bad_config_is_a_config_error(change):
    with pytest.raises(ConfigError):
        AugmentConfig.from_dict({**CFG.to_dict(), **change})
