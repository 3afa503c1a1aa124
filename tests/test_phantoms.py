"""Phantoms: deterministic synthetic frames with ground truth."""

import numpy as np
import pytest

from device.phantoms import FAULTS, make_phantom


def test_same_seed_same_frame():
    assert np.array_equal(make_phantom(4).image, make_phantom(4).image)
    assert not np.array_equal(make_phantom(4).image, make_phantom(5).image)


def test_mask_marks_a_darker_lesion():
    phantom = make_phantom(1, hair=False)
    grey = phantom.image.mean(axis=2)
    assert 0.03 < phantom.mask.mean() < 0.4
    assert grey[phantom.mask].mean() < grey[~phantom.mask].mean() - 40


def test_hairs_are_drawn_dark():
    phantom = make_phantom(2, hair=True)
    assert phantom.hair_mask.any()
    assert phantom.image[phantom.hair_mask].mean() < 60


@pytest.mark.parametrize("fault", FAULTS)
def test_each_fault_changes_the_frame(fault):
    assert not np.array_equal(make_phantom(3, fault=fault).image, make_phantom(3).image)


def test_unknown_fault_is_refused():
    with pytest.raises(ValueError, match="unknown fault"):
        make_phantom(1, fault="smudge")
