"""Compare class-imbalance strategies on a linear probe, by validation balanced accuracy.

A cheap proxy for the full recipe: frozen ImageNet EfficientNet-Lite0 features of the
run's cached train and validation images (no augmentation), and a softmax head trained
with each strategy for the same number of steps. It ranks the strategies; it does not
predict the fine-tuned figures.

    python -m training.experiments.imbalance_probe RUN [--json OUT.json]

RUN is a finished run folder (``skinscan train``); the result is in docs/model-history.md.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from device.labels import CLASS_CODES
from device.metrics import balanced_accuracy

log = logging.getLogger(__name__)
STRATEGIES = ("none", "inverse_frequency", "balanced_sampling", "focal")


def pooled_features(images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """GAP features of the ImageNet backbone for uint8 images."""
    from training.backbones import build_backbone

    backbone = build_backbone("efficientnet_lite0").model
    out = []
    for start in range(0, len(images), batch_size):
        batch = np.asarray(images[start : start + batch_size], dtype=np.float32)
        out.append(np.asarray(backbone(batch, training=False)).mean(axis=(1, 2)))
    return np.concatenate(out)


def train_head(
    features: np.ndarray, labels: np.ndarray, strategy: str, steps: int = 3000, seed: int = 0
) -> np.ndarray:
    """Fit a softmax head with plain numpy Adam; returns (W, b) stacked as one (C+1, K) array."""
    rng = np.random.default_rng(seed)
    n, dims = features.shape
    k = len(CLASS_CODES)
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    class_weight = counts.sum() / (k * np.maximum(counts, 1))
    params = np.zeros((dims + 1, k))
    moment, velocity = np.zeros_like(params), np.zeros_like(params)
    x = np.hstack([features, np.ones((n, 1))])
    onehot = np.eye(k)[labels]
    sample_p = class_weight[labels] / class_weight[labels].sum()
    for step in range(1, steps + 1):
        if strategy == "balanced_sampling":
            rows = rng.choice(n, 64, p=sample_p)
        else:
            rows = rng.integers(0, n, 64)
        logits = x[rows] @ params
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        weights = class_weight[labels[rows]] if strategy == "inverse_frequency" else np.ones(64)
        grad_logits = probs - onehot[rows]
        if strategy == "focal":
            # gamma = 2: scale each example's gradient by (1 - p_true)^2, a standard approximation.
            p_true = (probs * onehot[rows]).sum(axis=1)
            weights = (1 - p_true) ** 2
        grad = x[rows].T @ (grad_logits * weights[:, None]) / 64 + 1e-4 * params
        moment = 0.9 * moment + 0.1 * grad
        velocity = 0.999 * velocity + 0.001 * grad**2
        params -= 1e-3 * (moment / (1 - 0.9**step)) / (np.sqrt(velocity / (1 - 0.999**step)) + 1e-8)
    return params


def main(argv: list[str] | None = None) -> int:
    """Print and optionally write validation balanced accuracy per strategy."""
    from training.data import load_preprocessed

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    x_train, y_train = load_preprocessed(args.run, "train")
    x_val, y_val = load_preprocessed(args.run, "val")
    f_train, f_val = pooled_features(x_train), pooled_features(x_val)
    mean, std = f_train.mean(axis=0), f_train.std(axis=0) + 1e-6
    f_train, f_val = (f_train - mean) / std, (f_val - mean) / std
    results = {}
    for strategy in STRATEGIES:
        params = train_head(f_train, y_train, strategy)
        logits = np.hstack([f_val, np.ones((len(f_val), 1))]) @ params
        results[strategy] = balanced_accuracy(y_val, logits)
        print(f"{strategy:<20} val balanced_accuracy {results[strategy]:.4f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
