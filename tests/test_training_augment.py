"""Every augmentation is a random transform that keeps shape and dtype and can be seeded."""

import numpy as np
import pytest

from device.phantoms import make_phantom
from training.augment import (
    AugmentConfig,
    augment,
    random_colour,
    random_flip,
    random_rotate_zoom,
)

IMAGE = make_phantom(0, size=(224, 224)).image
CFG = AugmentConfig()

TRANSFORMS = {
    "flip": lambda image, rng: random_flip(image, rng),
    "rotate_zoom": lambda image, rng: random_rotate_zoom(image, rng, True, CFG.zoom),
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
