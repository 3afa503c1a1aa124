"""The imbalance probe's head trainer learns, and each strategy changes what it learns."""

import numpy as np
import pytest

from device.metrics import balanced_accuracy
from training.experiments.imbalance_probe import STRATEGIES, train_head


def _imbalanced(seed: int = 0):
    rng = np.random.default_rng(seed)
    counts = [400, 200, 60, 30, 20, 15, 10]
    labels = np.concatenate([np.full(c, k) for k, c in enumerate(counts)])
    centres = rng.normal(0, 2.0, (7, 8))
    features = centres[labels] + rng.normal(0, 1.5, (len(labels), 8))
    return features, labels


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_learns_better_than_chance(strategy):
    features, labels = _imbalanced()
    params = train_head(features, labels, strategy, steps=600)
    logits = np.hstack([features, np.ones((len(features), 1))]) @ params
    assert balanced_accuracy(labels, logits) > 0.5


def test_class_weighting_raises_minority_recall():
    features, labels = _imbalanced(1)
    x = np.hstack([features, np.ones((len(features), 1))])
    plain = balanced_accuracy(labels, x @ train_head(features, labels, "none", steps=600))
    weighted = balanced_accuracy(
        labels, x @ train_head(features, labels, "inverse_frequency", steps=600)
    )
    assert weighted > plain
