"""DullRazor-style hair removal removes drawn hairs and keeps the lesion."""

import cv2
import numpy as np

from device.imaging.hair import HairParams, hair_mask, remove_hair


def _scene(with_hair: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 200x150 skin image with a dark lesion disc and, optionally, three thin hairs."""
    image = np.full((150, 200, 3), (215, 170, 145), np.uint8)
    lesion = np.zeros((150, 200), np.uint8)
    cv2.circle(lesion, (100, 75), 35, 1, -1)
    image[lesion.astype(bool)] = (90, 55, 40)
    hair = np.zeros((150, 200), np.uint8)
    if with_hair:
        cv2.line(hair, (5, 10), (195, 140), 1, 1)
        cv2.line(hair, (10, 140), (190, 20), 1, 1)
        cv2.line(hair, (0, 70), (60, 60), 1, 2)
        image[hair.astype(bool)] = (30, 22, 18)
    return image, lesion.astype(bool), hair.astype(bool)


def test_hair_pixels_become_skin_coloured():
    image, lesion, hair = _scene(with_hair=True)
    cleaned = remove_hair(image).image
    skin_hair = hair & ~lesion
    before = image[skin_hair].astype(float).mean(axis=0)
    after = cleaned[skin_hair].astype(float).mean(axis=0)
    skin = np.array([215, 170, 145], float)
    assert np.abs(before - skin).max() > 100
    assert np.abs(after - skin).max() < 30


def test_lesion_pixels_are_kept():
    image, lesion, hair = _scene(with_hair=True)
    cleaned = remove_hair(image).image
    interior = cv2.erode(lesion.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool) & ~hair
    assert np.abs(cleaned[interior].astype(int) - image[interior].astype(int)).mean() < 3


def test_detected_mask_covers_the_hairs_not_the_lesion():
    image, lesion, hair = _scene(with_hair=True)
    mask = hair_mask(image, HairParams())
    assert mask[hair & ~lesion].mean() > 0.9
    interior = cv2.erode(lesion.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    # The mask is dilated by one pixel on purpose, to cover each hair's soft edge.
    near_hair = cv2.dilate(hair.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert mask[interior & ~near_hair].mean() < 0.02


def test_image_without_hair_is_returned_unchanged():
    image, _, _ = _scene(with_hair=False)
    result = remove_hair(image)
    assert result.fraction == 0.0
    assert np.array_equal(result.image, image)


def test_deterministic():
    image, _, _ = _scene(with_hair=True)
    assert np.array_equal(remove_hair(image).image, remove_hair(image).image)
