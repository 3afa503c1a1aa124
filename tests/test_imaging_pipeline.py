"""preprocess(): the one frame -> model input path shared by device and training (specs 3, 6)."""

import json
from dataclasses import replace

import cv2
import numpy as np
import pytest

from device.errors import ConfigError
from device.imaging.hair import remove_hair
from device.imaging.io import read_image
from device.imaging.pipeline import (
    SPEC_VERSION,
    PreprocessSpec,
    default_spec,
    preprocess,
    to_working_size,
)
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


def _spec(version: int, **changes) -> PreprocessSpec:
    """``default_spec(version)`` with ``changes``, through the manifest's dict form."""
    return PreprocessSpec.from_dict({**default_spec(version).to_dict(), **changes})


def test_v3_removes_hair_to_segment_but_feeds_the_model_the_photographed_crop():
    hairy = make_phantom(3, size=(450, 600))
    v3 = _spec(3, crop={"margin": 0.25, "min_fraction": 0.5})
    result = preprocess(hairy.image, v3)
    assert result.hair_fraction > 0
    work, _ = to_working_size(hairy.image, v3.work_long_side)
    x0, y0, x1, y1 = (v // 3 for v in result.roi_box)
    assert np.array_equal(result.model_input, crop_and_resize(work, (x0, y0, x1, y1), 224))
    # The lesion was found on the hair-removed copy, whose pixels the model never sees.
    hairless = remove_hair(work, v3.hair).image
    assert segment_lesion(hairless, v3.segment).box == tuple(v // 3 for v in result.lesion_box)
    inpainted = crop_and_resize(hairless, (x0, y0, x1, y1), 224)
    assert not np.array_equal(result.model_input, inpainted)


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


@pytest.mark.parametrize("version", [1, 2, 4, 5])
def test_a_retired_spec_is_refused_by_name(version):
    data = {**default_spec(3).to_dict(), "version": version}
    with pytest.raises(ConfigError, match=f"preprocessing spec {version} is retired"):
        PreprocessSpec.from_dict(data)
    with pytest.raises(ConfigError, match="use a bundle of spec 3 or 6"):
        default_spec(version)


def test_the_kept_specs_share_one_path_and_differ_only_in_the_colour_step():
    v3, v6 = default_spec(3), default_spec()
    assert v6.version == SPEC_VERSION == 6 and PreprocessSpec() == v6
    assert replace(v6, version=3, colour=v3.colour) == v3
    assert v3.fitted and not v6.fitted  # training fits spec 6's colour region


def test_an_unfitted_spec_6_does_not_preprocess():
    with pytest.raises(ConfigError, match="none fitted"):
        preprocess(make_phantom(1).image, default_spec(6))


def test_old_manifests_load_with_the_no_op_settings_of_retired_specs():
    # Manifests sealed before the retirement (the shipped one) still carry these keys.
    data = default_spec(3).to_dict()
    data["segment"]["min_contrast"] = 0.0
    data["crop"]["max_fraction"] = 1.0
    assert PreprocessSpec.from_dict(data) == default_spec(3)
    del data["colour"]  # written before spec 4: no colour step
    assert PreprocessSpec.from_dict(data) == default_spec(3)
    for section, key, value in (("segment", "min_contrast", 8.0), ("crop", "max_fraction", 1.5)):
        changed = json.loads(json.dumps(data))
        changed[section][key] = value
        with pytest.raises(ConfigError, match=f"{section}.{key}: {value} was a setting of retired"):
            PreprocessSpec.from_dict(changed)


def test_unsupported_version_is_a_config_error():
    data = PreprocessSpec().to_dict()
    data["version"] = 99
    with pytest.raises(ConfigError, match="version"):
        PreprocessSpec.from_dict(data)
