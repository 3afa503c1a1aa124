"""Integer-friendly input normalisation for full-integer conversion.

Models normalise raw 0..255 pixels inside the graph with ``Rescaling(scale, offset)``,
i.e. ``x * scale + offset``. The int8 converter lowers that to MUL then ADD and
quantizes the intermediate product on its own range, which is coarser than one
pixel level: on the EfficientNet-Lite0 classifier its step was 1.5 grey levels, so
every image lost input precision before the first convolution. Writing the same
function as ``(x + offset / scale) * scale`` (subtract first) keeps the intermediate
on the integer pixel grid (step 1.0) and the product on the normalised grid, so the
quantized input stage is lossless. The float function is unchanged.
"""

from __future__ import annotations

from typing import Any

import keras


class CentredRescaling(keras.layers.Layer):
    """``(x + shift) * scale``: the same function as ``Rescaling(scale, offset)``
    with ``shift = offset / scale``, in an order that quantizes without loss."""

    def __init__(self, scale: float, shift: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scale = float(scale)
        self.shift = float(shift)

    def call(self, inputs: Any) -> Any:
        x = keras.ops.cast(inputs, self.compute_dtype)
        return (x + self.shift) * self.scale

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scale": self.scale, "shift": self.shift}


def _centred(layer: Any) -> Any | None:
    """A ``CentredRescaling`` equal to a scalar ``Rescaling`` layer, or None."""
    if not isinstance(layer, keras.layers.Rescaling):
        return None
    scale, offset = layer.scale, layer.offset
    if not all(isinstance(v, (int, float)) for v in (scale, offset)) or scale == 0:
        return None
    return CentredRescaling(scale, offset / scale, name=layer.name)


def _layers(model: Any) -> list[Any]:
    """Every layer of ``model``, inside nested models too (an ensemble nests its members)."""
    found = []
    for layer in model.layers:
        found.append(layer)
        if isinstance(layer, keras.Model):
            found.extend(_layers(layer))
    return found


def integer_friendly(model: Any) -> Any:
    """A copy of a functional ``model`` (same layer names and weights) whose scalar
    ``Rescaling`` layers, nested ones included, subtract before they scale. Returns
    ``model`` itself when it has none."""
    if not any(_centred(layer) is not None for layer in _layers(model)):
        return model

    def clone(layer: Any) -> Any:
        return _centred(layer) or layer.__class__.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    copy.set_weights(model.get_weights())
    return copy
