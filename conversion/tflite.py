"""Keras -> TFLite: the int8 classifier and the Grad-CAM gradient submodel.

Both functions return the flatbuffer as bytes; the caller writes files.

The Keras model contract (from ``skinscan train``): input float RGB 0..255 of
shape (S, S, 3), normalisation inside the model; the last conv activation is a
layer named ``feature_map``; the class scores come from a Dense layer named
``logits`` (pre-softmax). Everything between them is the *head*, usually
``gap`` -> ``dropout`` -> ``logits``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from training.model import FEATURE_MAP_LAYER, LOGITS_LAYER

log = logging.getLogger(__name__)

QUANTIZATIONS: tuple[str, ...] = ("int8",)


def _tf() -> Any:
    import tensorflow as tf

    return tf


def _keras() -> Any:
    import keras

    return keras


def _layer(model: Any, name: str) -> Any:
    try:
        return model.get_layer(name)
    except ValueError:
        names = ", ".join(layer.name for layer in model.layers[-8:])
        raise ValueError(
            f"the Keras model has no layer named {name!r} (last layers: {names}); "
            f"conversion needs the '{FEATURE_MAP_LAYER}' and '{LOGITS_LAYER}' layers"
        ) from None


def two_output_model(model: Any) -> Any:
    """A view of ``model`` with outputs ``[feature_map, logits]`` sharing its weights."""
    keras = _keras()
    fm = _layer(model, FEATURE_MAP_LAYER).output
    logits = _layer(model, LOGITS_LAYER).output
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, [fm, logits], name="skinscan_classifier")


def head_model(model: Any) -> Any:
    """The head of ``model`` as its own Keras model: feature map -> logits."""
    keras = _keras()
    fm = _layer(model, FEATURE_MAP_LAYER).output
    logits = _layer(model, LOGITS_LAYER).output
    return keras.Model(fm, logits, name="skinscan_head")


def head_layer_types(model: Any) -> list[str]:
    """Class names of the head's layers after the input, e.g. ['GlobalAveragePooling2D', ...]."""
    return [type(layer).__name__ for layer in head_model(model).layers[1:]]


def is_gap_dense_head(model: Any) -> bool:
    """True when the head is GAP -> (Dropout)* -> Dense: Grad-CAM then equals CAM."""
    types = head_layer_types(model)
    return (
        len(types) >= 2
        and types[0] == "GlobalAveragePooling2D"
        and types[-1] == "Dense"
        and all(t == "Dropout" for t in types[1:-1])
    )


def dense_kernel(model: Any) -> np.ndarray:
    """The ``logits`` layer's kernel W, shape (C, K)."""
    return np.asarray(_layer(model, LOGITS_LAYER).get_weights()[0], dtype=np.float64)


def convert_classifier(
    model: Any,
    representative: Callable[[], Iterable[np.ndarray]],
    *,
    quantization: str = "int8",
) -> bytes:
    """Convert ``model`` to a full-integer TFLite classifier.

    The result has one uint8 input (the raw RGB pixels) and two int8 outputs:
    the ``feature_map`` activation and the ``logits``. Only ``TFLITE_BUILTINS_INT8``
    ops are allowed, so it runs on LiteRT and tflite-runtime without Flex. The input
    normalisation is rewritten so that its int8 form keeps every pixel level
    (``conversion.normalisation``).

    Args:
        model: the trained Keras model (see the module docstring for its contract).
        representative: returns an iterable of preprocessed uint8 images (S, S, 3)
            used to calibrate activation ranges: at least 300 training images that
            cover every class.
        quantization: only "int8" is supported.

    Returns:
        The .tflite flatbuffer.

    Raises:
        ValueError: unknown quantization or a model without the required layers.
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {quantization!r}; supported: {QUANTIZATIONS}")
    from conversion.normalisation import integer_friendly

    tf = _tf()
    both = two_output_model(integer_friendly(model))

    def gen() -> Iterator[list[np.ndarray]]:
        for image in representative():
            yield [np.asarray(image, dtype=np.float32)[np.newaxis]]

    converter = tf.lite.TFLiteConverter.from_keras_model(both)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = gen
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.int8
    data = converter.convert()
    log.info("int8 classifier: %.2f MB", len(data) / 1e6)
    return bytes(data)


def convert_gradcam(model: Any) -> bytes:
    """Trace the Grad-CAM gradient over the head and convert it with builtin ops only.

    The submodel takes the (dequantized, float32) feature map A of shape
    (1, H, W, C) and a class one-hot of shape (1, K), and returns:

    * ``weights`` (1, C): the mean over H, W of d(logit_c)/dA, the Grad-CAM
      channel weights. The score is the pre-softmax logit: the softmax
      probability's gradient loses float32 precision when p is near 1.
    * ``cam`` (1, H, W): ``ReLU(sum_c weights[c] * A[..., c])``.

    Args:
        model: the trained Keras model.

    Returns:
        The float32 .tflite flatbuffer.
    """
    tf = _tf()
    head = head_model(model)
    fm_shape = tuple(int(d) for d in head.input.shape[1:])
    n_classes = int(head.output.shape[-1])

    # The head's weights enter the trace as constants through Keras 3's stateless_call.
    # Calling the head directly (or holding it in a tf.Module) leaves VAR_HANDLE and
    # READ_VARIABLE ops in the converted graph, whose variables are never initialised
    # on the device: the outputs are NaN.
    trainable = [tf.constant(np.asarray(v)) for v in head.trainable_variables]
    non_trainable = [tf.constant(np.asarray(v)) for v in head.non_trainable_variables]

    @tf.function(
        input_signature=[
            tf.TensorSpec((1, *fm_shape), tf.float32, name="feature_map"),
            tf.TensorSpec((1, n_classes), tf.float32, name="class_one_hot"),
        ]
    )
    def gradcam(feature_map: Any, class_one_hot: Any) -> dict[str, Any]:
        with tf.GradientTape() as tape:
            tape.watch(feature_map)
            logits, _ = head.stateless_call(trainable, non_trainable, feature_map, training=False)
            # Pre-softmax logit of the chosen class.
            score = tf.reduce_sum(logits * class_one_hot, axis=-1)
        grads = tape.gradient(score, feature_map)
        # Channel weights: gradients averaged over the spatial positions.
        weights = tf.reduce_mean(grads, axis=[1, 2])
        # Weighted sum of the feature map channels, then ReLU.
        cam = tf.nn.relu(tf.reduce_sum(feature_map * weights[:, tf.newaxis, tf.newaxis, :], -1))
        return {"weights": weights, "cam": cam}

    concrete = gradcam.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    data = converter.convert()
    log.info("gradcam submodel: %.1f kB", len(data) / 1e3)
    return bytes(data)


def reference_gradcam(
    model: Any, images: np.ndarray, class_indices: np.ndarray, batch_size: int = 16
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float Grad-CAM with ``tf.GradientTape`` on the Keras model: the parity reference.

    Args:
        model: the trained Keras model.
        images: preprocessed uint8 images (N, S, S, 3).
        class_indices: the class to explain for each image, shape (N,).
        batch_size: images per forward pass.

    Returns:
        ``(cams, feature_maps, logits)``: ReLU'd CAMs (N, H, W), float feature maps
        (N, H, W, C) and float logits (N, K).
    """
    tf = _tf()
    both = two_output_model(model)
    cams, fms, all_logits = [], [], []
    for start in range(0, len(images), batch_size):
        x = tf.convert_to_tensor(np.asarray(images[start : start + batch_size], np.float32))
        c = np.asarray(class_indices[start : start + batch_size])
        with tf.GradientTape() as tape:
            fm, logits = both(x, training=False)
            score = tf.reduce_sum(logits * tf.one_hot(c, logits.shape[-1]), axis=-1)
        grads = tape.gradient(score, fm)
        weights = tf.reduce_mean(grads, axis=[1, 2])
        cam = tf.nn.relu(tf.reduce_sum(fm * weights[:, tf.newaxis, tf.newaxis, :], -1))
        cams.append(cam.numpy())
        fms.append(fm.numpy())
        all_logits.append(logits.numpy())
    return np.concatenate(cams), np.concatenate(fms), np.concatenate(all_logits)


def float_logits(model: Any, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Float Keras logits for preprocessed uint8 images (N, S, S, 3)."""
    both = two_output_model(model)
    out = []
    for start in range(0, len(images), batch_size):
        x = np.asarray(images[start : start + batch_size], dtype=np.float32)
        out.append(np.asarray(both(x, training=False)[1]))
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
