"""HeadBoostedAdamW: the head learns at a multiple of the backbone's rate, and survives a save."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from training.optimizer import HeadBoostedAdamW  # noqa: E402


def _model(multiplier: float):
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3, name="body")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="logits")(hidden))
    optimizer = HeadBoostedAdamW(head_multiplier=multiplier, learning_rate=1e-3, weight_decay=0.0)
    model.compile(optimizer=optimizer, loss="mse")
    return model


def _first_step_sizes(model) -> dict[str, float]:
    rng = np.random.default_rng(0)
    before = {w.path: w.numpy().copy() for w in model.trainable_weights}
    model.fit(rng.random((8, 4)), rng.random((8, 2)), batch_size=8, epochs=1, verbose=0)
    return {
        w.path: float(np.abs(w.numpy() - before[w.path]).max()) for w in model.trainable_weights
    }


@pytest.mark.parametrize("multiplier", [1.0, 10.0])
def test_head_step_is_the_multiple_of_the_backbone_step(multiplier):
    # Adam's first step moves every weight by about lr, whatever its gradient.
    steps = _first_step_sizes(_model(multiplier))
    assert steps["body/kernel"] == pytest.approx(1e-3, rel=0.01)
    assert steps["logits/kernel"] == pytest.approx(1e-3 * multiplier, rel=0.01)
    assert steps["logits/bias"] == pytest.approx(1e-3 * multiplier, rel=0.01)


def test_checkpoint_restores_the_optimiser_and_its_multiplier(tmp_path):
    model = _model(7.0)
    _first_step_sizes(model)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(again.optimizer, HeadBoostedAdamW)
    assert again.optimizer.head_multiplier == 7.0
    assert again.optimizer.head_layers == ("logits",)
    steps = _first_step_sizes(again)
    assert steps["logits/kernel"] > 3 * steps["body/kernel"]
