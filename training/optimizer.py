"""AdamW with a larger learning rate for the new head than for the pretrained backbone.

A freshly initialised head needs steps about ten times larger than the
pretrained layers it sits on; one global rate either starves the head or
disturbs the ImageNet features. Adam's steps do not depend on the gradient's
scale, so scaling gradients cannot do this: the rate itself must differ.
"""

from __future__ import annotations

from typing import Any

import keras


@keras.saving.register_keras_serializable(package="skinscan")
class HeadBoostedAdamW(keras.optimizers.AdamW):
    """AdamW whose updates of the layers named in ``head_layers`` use ``head_multiplier`` x lr.

    Args:
        head_multiplier: factor applied to the learning rate of head variables.
        head_layers: names of the layers that make up the head.
        **kwargs: passed to :class:`keras.optimizers.AdamW`.
    """

    def __init__(
        self, head_multiplier: float = 1.0, head_layers: tuple[str, ...] = ("logits",), **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.head_multiplier = float(head_multiplier)
        self.head_layers = tuple(head_layers)
        self._head_keys: set[Any] = set()

    def build(self, var_list) -> None:
        """Create the slots and remember which variables belong to the head."""
        super().build(var_list)
        self._head_keys = {
            self._var_key(v) for v in var_list if v.path.split("/")[0] in self.head_layers
        }

    def is_head(self, variable) -> bool:
        """True when ``variable`` is updated with the boosted learning rate."""
        return self._var_key(variable) in self._head_keys

    def update_step(self, gradient, variable, learning_rate):
        """One AdamW step, with the head's learning rate multiplied."""
        if self.is_head(variable):
            learning_rate = learning_rate * self.head_multiplier
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self) -> dict[str, Any]:
        """Serialisable config, so a checkpoint resumes with the same optimiser."""
        config = super().get_config()
        config.update(head_multiplier=self.head_multiplier, head_layers=list(self.head_layers))
        return config
