"""The int8 classifier's input stage keeps every pixel level (conversion.normalisation)."""

from __future__ import annotations

import numpy as np
import pytest
from bundle_factory import synthetic_model_inputs, tiny_keras_model

pytest.importorskip("tensorflow")
import tensorflow as tf

from conversion import tflite
from conversion.normalisation import CentredRescaling, integer_friendly


@pytest.fixture(scope="module")
def model():
    return tiny_keras_model()


def test_rewritten_model_computes_the_same_function(model) -> None:
    images, _ = synthetic_model_inputs(8, seed=3)
    x = images.astype(np.float32)
    friendly = integer_friendly(model)
    assert isinstance(friendly.get_layer("normalise"), CentredRescaling)
    assert [layer.name for layer in friendly.layers] == [layer.name for layer in model.layers]
    np.testing.assert_allclose(np.asarray(friendly(x)), np.asarray(model(x)), atol=1e-5)
    for a, b in zip(friendly.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_nested_models_are_rewritten_too(model) -> None:
    import keras

    inputs = keras.Input(model.inputs[0].shape[1:])
    outer = keras.Model(inputs, model(inputs))
    friendly = integer_friendly(outer)
    assert friendly is not outer
    nested = [layer for layer in friendly.layers if isinstance(layer, keras.Model)]
    assert isinstance(nested[0].get_layer("normalise"), CentredRescaling)
    x = synthetic_model_inputs(4, seed=5)[0].astype(np.float32)
    np.testing.assert_allclose(np.asarray(friendly(x)), np.asarray(outer(x)), atol=1e-5)


def test_model_without_rescaling_is_returned_unchanged() -> None:
    import keras

    inputs = keras.Input((4,))
    plain = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    assert integer_friendly(plain) is plain


def _first_conv_inputs(model_bytes: bytes, images: np.ndarray) -> list[np.ndarray]:
    """Dequantized outputs of every op before the first convolution."""
    interpreter = tf.lite.Interpreter(
        model_content=model_bytes, experimental_preserve_all_tensors=True
    )
    interpreter.allocate_tensors()
    details = {t["index"]: t for t in interpreter.get_tensor_details()}
    stage = []
    for op in interpreter._get_ops_details():
        if op["op_name"] in {"CONV_2D", "DEPTHWISE_CONV_2D"}:
            break
        stage.extend(op["outputs"])
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], images)
    interpreter.invoke()
    out = []
    for index in stage:
        scale, zero = details[index]["quantization"]
        out.append((interpreter.get_tensor(index).astype(np.float64) - zero) * scale)
    return out


def test_int8_input_stage_keeps_all_256_grey_levels(model) -> None:
    size = model.input_shape[1]
    grey = np.arange(256, dtype=np.uint8)
    image = np.resize(np.repeat(grey[:, None], 3, axis=1), (size * size, 3))
    batch = image.reshape(1, size, size, 3)
    images, _ = synthetic_model_inputs(40, seed=1)
    calibration = np.concatenate([images, batch])  # the ramp: calibration sees 0 and 255
    model_bytes = tflite.convert_classifier(model, lambda: iter(calibration))
    stage = _first_conv_inputs(model_bytes, batch)
    assert stage, "no op before the first convolution to check"
    for values in stage:
        levels = values.reshape(-1, values.shape[-1])[:256, 0]
        assert len(np.unique(levels)) == 256, "two pixel levels collapsed into one"
