"""preprocess(): the one frame -> model input path shared by device and training."""

import json

import cv2
import numpy as np
import pytest

from device.errors import ConfigError
from device.imaging.io import read_image
from device.imaging.pipeline import PreprocessSpec, default_spec, preprocess, to_working_size
from device.imaging.roi import CropParams, crop_and_resize, square_roi
from device.imaging.segment import segment_lesion
from device.phantoms import make_phantom


@pytest.mark.parametrize("size", [(150, 200), (480, 640), (1080, 1920), (300, 300)])
def test_output_is_model_input_for_any_frame_size(size):
    result = preprocess(make_phantom(1, size=size).image)
    assert result.model_input.shape == (224, 224, 3)
    assert result.model_input.dtype == np.uint8
    x0, y0, x1, y1 = result.roi_box
    assert 0 <= x0 < x1 <= size[1] and 0 <= y0 < y1 <= size[0]
    assert abs((x1 - x0) - (y1 - y0)) <= 2  # square up to rounding


def test_roi_contains_the_lesion_box():
    result = preprocess(make_phantom(2).image)
    assert result.lesion_found
    lx0, ly0, lx1, ly1 = result.lesion_box
    x0, y0, x1, y1 = result.roi_box
    assert x0 <= lx0 and y0 <= ly0 and lx1 <= x1 and ly1 <= y1


def test_deterministic_bit_for_bit():
    frame = make_phantom(9).image
    assert np.array_equal(preprocess(frame).model_input, preprocess(frame).model_input)


def test_no_lesion_gives_centre_crop():
    rng = np.random.default_rng(0)
    skin = np.full((480, 640, 3), (215, 170, 145), np.float64) + rng.normal(0, 2, (480, 640, 3))
    result = preprocess(np.clip(skin, 0, 255).astype(np.uint8))
    assert not result.lesion_found
    assert result.roi_box == (80, 0, 560, 480)


def test_square_roi_rules():
    params = CropParams(margin=0.15, min_fraction=0.5)
    assert square_roi((150, 200), None, params) == (25, 0, 175, 150)
    # a tiny lesion gets at least half the short side
    x0, _, x1, _ = square_roi((150, 200), (100, 70, 104, 74), params)
    assert x1 - x0 == 75
    # a lesion at the edge is shifted inside, never padded
    x0, y0, _, _ = square_roi((150, 200), (0, 0, 40, 40), params)
    assert x0 == 0 and y0 == 0


def test_spec_round_trips_through_json():
    spec = PreprocessSpec()
    again = PreprocessSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    assert again.digest() == spec.digest()


def test_digest_changes_with_any_parameter():
    base = PreprocessSpec()
    changed = PreprocessSpec(crop=CropParams(margin=0.2))
    assert base.digest() != changed.digest()


def test_unknown_spec_key_is_a_config_error():
    data = PreprocessSpec().to_dict()
    data["sharpen"] = True
    with pytest.raises(ConfigError, match="sharpen"):
        PreprocessSpec.from_dict(data)


def test_real_images_preprocess(ham_dir):
    for path in sorted((ham_dir / "images").glob("*.jpg"))[:5]:
        result = preprocess(read_image(path))
        assert result.model_input.shape == (224, 224, 3)
        assert result.model_input.std() > 5


def _without_hair_removal(spec: PreprocessSpec) -> PreprocessSpec:
    return PreprocessSpec.from_dict({**spec.to_dict(), "hair_removal": False})


def test_v2_crops_the_full_resolution_frame():
    frame = make_phantom(4, size=(450, 600), hair=False).image
    spec = _version(2, hair_removal=False)
    result = preprocess(frame, spec)
    assert np.array_equal(result.model_input, crop_and_resize(frame, result.roi_box, 224))


def test_v2_keeps_detail_that_v1_blurs_away():
    frame = make_phantom(5, size=(450, 600), hair=False).image
    v2 = _version(2, hair_removal=False)
    v1 = PreprocessSpec.from_dict({**v2.to_dict(), "version": 1})

    def sharpness(image):
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        return cv2.Laplacian(grey, cv2.CV_64F).var()

    assert sharpness(preprocess(frame, v2).model_input) > 2 * sharpness(
        preprocess(frame, v1).model_input
    )


def _version(version: int, **changes) -> PreprocessSpec:
    """A spec of an older ``version``: that version's defaults with ``changes``."""
    return PreprocessSpec.from_dict({**default_spec(version).to_dict(), **changes})


def test_v2_inpaints_hair_inside_the_crop():
    hairy = make_phantom(3, size=(450, 600))
    clean = make_phantom(3, size=(450, 600), hair=False).image
    spec = _version(2, crop={"margin": 0.25, "min_fraction": 0.75})
    removed = preprocess(hairy.image, spec)
    kept = preprocess(hairy.image, _without_hair_removal(spec))
    reference = crop_and_resize(clean, removed.roi_box, 224).astype(np.float64)
    on_hair = crop_and_resize(hairy.hair_mask.astype(np.uint8), removed.roi_box, 224) > 0
    assert on_hair.sum() > 100
    error_kept = np.abs(kept.model_input[on_hair] - reference[on_hair]).mean()
    error_removed = np.abs(removed.model_input[on_hair] - reference[on_hair]).mean()
    assert removed.hair_fraction > 0
    assert error_removed < 0.4 * error_kept


def test_v3_removes_hair_to_segment_but_feeds_the_model_the_photographed_crop():
    hairy = make_phantom(3, size=(450, 600))
    crop = {"margin": 0.25, "min_fraction": 0.5}
    v3 = _version(3, crop=crop)
    v1 = _version(1, crop=crop)
    result = preprocess(hairy.image, v3)
    assert result.hair_fraction > 0
    work, _ = to_working_size(hairy.image, v3.work_long_side)
    x0, y0, x1, y1 = (v // 3 for v in result.roi_box)
    assert np.array_equal(result.model_input, crop_and_resize(work, (x0, y0, x1, y1), 224))
    # Same lesion box and crop as v1, whose segmentation also ran on the hair-removed
    # image, but v1 feeds the inpainted pixels to the model.
    inpainted = preprocess(hairy.image, v1)
    assert result.lesion_box == inpainted.lesion_box
    assert result.roi_box == inpainted.roi_box
    assert not np.array_equal(result.model_input, inpainted.model_input)


def test_v3_gives_a_large_frame_the_detail_of_the_training_images():
    # HAM10000 here is 200x150: a 600x450 camera frame must reach the model exactly as
    # its 200x150 copy does, not sharper than anything the model was trained on.
    frame = make_phantom(7, size=(450, 600)).image
    copy = cv2.resize(frame, (200, 150), interpolation=cv2.INTER_AREA)
    assert np.array_equal(preprocess(frame).model_input, preprocess(copy).model_input)


def test_v3_default_crop_is_the_whole_short_side():
    frame = make_phantom(2, size=(450, 600), hair=False).image
    x0, y0, x1, y1 = preprocess(frame, default_spec(3)).roi_box
    assert (x1 - x0, y1 - y0) == (450, 450)
    assert preprocess(frame, default_spec(3)).model_input.shape == (224, 224, 3)


def test_version_1_specs_still_load_and_crop_the_working_image():
    data = default_spec(3).to_dict()
    data.update(version=1, hair_removal=False)
    spec = PreprocessSpec.from_dict(data)
    frame = make_phantom(6, size=(450, 600), hair=False).image
    work, _ = to_working_size(frame, spec.work_long_side)
    roi = square_roi(work.shape[:2], segment_lesion(work, spec.segment).box, spec.crop)
    expected = crop_and_resize(work, roi, spec.input_size)
    assert np.array_equal(preprocess(frame, spec).model_input, expected)
    assert spec.to_dict()["resize_rule"] != PreprocessSpec().to_dict()["resize_rule"]


def test_unsupported_version_is_a_config_error():
    data = PreprocessSpec().to_dict()
    data["version"] = 99
    with pytest.raises(ConfigError, match="version"):
        PreprocessSpec.from_dict(data)
