"""k-means segmentation finds drawn lesions, reports none when there is none, and is scored."""

import cv2
import numpy as np
import pytest

from device.imaging.hair import remove_hair
from device.imaging.pipeline import to_working_size
from device.imaging.segment import dice, iou, kmeans, segment_lesion
from device.phantoms import make_phantom


@pytest.mark.parametrize("seed", range(6))
def test_phantom_lesion_is_found_with_high_dice(seed):
    phantom = make_phantom(seed, size=(150, 200), hair=False)
    found = segment_lesion(phantom.image)
    assert found.found
    assert dice(found.mask, phantom.mask) > 0.8


def test_no_lesion_falls_back():
    skin = np.full((150, 200, 3), (215, 170, 145), np.uint8)
    noise = np.random.default_rng(0).normal(0, 2, skin.shape)
    found = segment_lesion(np.clip(skin + noise, 0, 255).astype(np.uint8))
    assert not found.found
    assert not found.mask.any()


def test_box_encloses_the_mask():
    found = segment_lesion(make_phantom(2, size=(150, 200)).image)
    x0, y0, x1, y1 = found.box
    ys, xs = np.nonzero(found.mask)
    assert xs.min() == x0 and xs.max() == x1 - 1 and ys.min() == y0 and ys.max() == y1 - 1


def test_deterministic():
    image = make_phantom(5, size=(150, 200)).image
    assert np.array_equal(segment_lesion(image).mask, segment_lesion(image).mask)


def test_kmeans_separates_two_clusters():
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(0, 1, (100, 3)), rng.normal(10, 1, (50, 3))])
    labels, centres = kmeans(points.astype(np.float32), 2, 20)
    assert sorted(np.bincount(labels)) == [50, 100]
    assert np.allclose(sorted(centres[:, 0]), [0, 10], atol=0.5)


def test_dice_and_iou_definitions():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[:5] = True
    b[:5, :5] = True
    assert dice(a, b) == pytest.approx(2 * 25 / 75)
    assert iou(a, b) == pytest.approx(25 / 50)
    assert dice(np.zeros((3, 3), bool), np.zeros((3, 3), bool)) == 1.0


def test_mean_dice_on_real_masks(ham_dir):
    """A sample of 100 real images: mean Dice within reach of the reported full-set figure."""
    paths = sorted((ham_dir / "images").glob("*.jpg"))[::100]
    scores = []
    for path in paths:
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        work = remove_hair(to_working_size(image, 200)[0]).image
        truth = cv2.imread(str(ham_dir / "masks" / f"{path.stem}_segmentation.png"), 0) > 0
        scores.append(dice(segment_lesion(work).mask, truth))
    assert np.mean(scores) > 0.70
