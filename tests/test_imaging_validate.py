"""Bad image arrays get a clear ImageError, never a crash deep inside OpenCV."""

import numpy as np
import pytest

from device.errors import ImageError, SkinScanError
from device.imaging.hair import remove_hair
from device.imaging.pipeline import preprocess
from device.imaging.quality import QualityThresholds, assess_quality
from device.imaging.segment import segment_lesion
from device.imaging.validate import ensure_rgb_uint8

BAD_INPUTS = {
    "empty": (np.zeros((0, 0, 3), np.uint8), "empty"),
    "float dtype": (np.zeros((32, 32, 3), np.float32), "dtype"),
    "greyscale": (np.zeros((32, 32), np.uint8), "greyscale"),
    "four channels": (np.zeros((32, 32, 4), np.uint8), "4-channel"),
    "nan": (np.full((32, 32, 3), np.nan), "NaN"),
    "one pixel": (np.zeros((1, 1, 3), np.uint8), "too small"),
    "not an array": ([[1, 2, 3]], "numpy array"),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
@pytest.mark.parametrize(
    "stage",
    [
        ensure_rgb_uint8,
        preprocess,
        remove_hair,
        segment_lesion,
        lambda image: assess_quality(image, QualityThresholds()),
    ],
    ids=["validate", "preprocess", "hair", "segment", "quality"],
)
def test_bad_input_raises_image_error_naming_the_problem(name, stage):
    image, words = BAD_INPUTS[name]
    with pytest.raises(ImageError, match=words):
        stage(image)


def test_image_error_is_both_a_project_error_and_a_value_error():
    with pytest.raises(SkinScanError):
        ensure_rgb_uint8(np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError):
        ensure_rgb_uint8(np.zeros((2, 2), np.uint8))


def test_valid_image_passes_through_unchanged():
    image = np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3)
    assert np.array_equal(ensure_rgb_uint8(image), image)
