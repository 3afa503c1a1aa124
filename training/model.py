"""The classifier: backbone -> GAP -> Dropout -> Dense(7) logits, and layer freezing.

The head is kept linear after pooling so the Grad-CAM gradient converts to
builtin TFLite ops and equals CAM exactly (DESIGN.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from device.errors import DatasetError
from training.backbones import FEATURE_LAYER, Backbone

# The Keras model contract that conversion reads: the last conv activation and the
# pre-softmax class scores are layers with these names.
FEATURE_MAP_LAYER = FEATURE_LAYER
LOGITS_LAYER = "logits"


def build_classifier(backbone: Backbone, num_classes: int, dropout: float):
    """Attach the named head (``gap``, ``dropout``, ``logits``) to a backbone."""
    import keras
    from keras import layers

    features = backbone.model.get_layer(FEATURE_LAYER).output
    x = layers.GlobalAveragePooling2D(name="gap")(features)
    x = layers.Dropout(dropout, name="dropout")(x)
    logits = layers.Dense(num_classes, name=LOGITS_LAYER)(x)
    return keras.Model(backbone.model.input, logits, name="skinscan_classifier")


def set_trainable(model, block_names: list[str], first_trainable_block: str | None) -> int:
    """Freeze everything below ``first_trainable_block``; keep every BatchNorm frozen.

    Args:
        model: the classifier.
        block_names: the backbone's block prefixes, bottom to top.
        first_trainable_block: the lowest block to train, or None to train the head only.

    Returns:
        The number of trainable weight tensors.

    Raises:
        ValueError: if ``first_trainable_block`` is not a known block.
    """
    from keras import layers

    trainable_prefixes: set[str] = set()
    if first_trainable_block is not None:
        if first_trainable_block not in block_names:
            raise ValueError(f"unknown block {first_trainable_block!r}; blocks are {block_names}")
        start = block_names.index(first_trainable_block)
        trainable_prefixes = set(block_names[start:])
    for layer in model.layers:
        if layer.name in ("gap", "dropout", "logits"):
            layer.trainable = True
        elif isinstance(layer, layers.BatchNormalization):
            # Frozen BN runs in inference mode: small batches cannot disturb ImageNet statistics.
            layer.trainable = False
        else:
            prefix = layer.name.split("_")[0]
            layer.trainable = prefix in trainable_prefixes
    count = len(model.trainable_weights)
    if count == 0:
        raise ValueError("no trainable weights: check first_trainable_block")
    return count


def load_keras_model(path: Path) -> Any:
    """Load a run's ``model.keras``; importing this module registered its custom layers.

    Raises:
        DatasetError: the file is missing.
    """
    if not Path(path).is_file():
        raise DatasetError(f"{path}: missing from the run folder")
    import keras

    return keras.models.load_model(path, compile=False)
