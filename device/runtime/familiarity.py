"""Is this frame like the images the model learned from? A density check on its features.

The classifier's last feature map, averaged over space (the same 1280 numbers
the head sees), is compared with the training images' features: a Gaussian in
the top principal components (Mahalanobis distance) plus the energy left
outside them (what the training images never varied in). Both parts are scaled
to mean 1 on the training images, and the score is their mean. A frame from
another camera, a non-lesion, or an image the pipeline mangled lands far out
in one of them, even when the softmax is confidently wrong.

The threshold is the 97.5th percentile of the validation images' scores, so
about one in-distribution frame in forty is called unfamiliar. Above it the
device says "Uncertain — refer" instead of "Monitor" (a referral stays a
referral). The model lives in the bundle as ``familiarity.npz`` (numpy arrays,
no pickle) and is fitted by ``skinscan convert``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from device.errors import BundleModelError

FAMILIARITY_FILE = "familiarity.npz"
VALIDATION_QUANTILE = 0.975
_ARRAYS = ("mean", "components", "scales", "residual_scale", "threshold")


def pooled(feature_map: np.ndarray) -> np.ndarray:
    """Spatial mean of a (H, W, C) or (N, H, W, C) feature map: (C,) or (N, C)."""
    feature_map = np.asarray(feature_map, dtype=np.float64)
    return feature_map.mean(axis=(-3, -2))


@dataclass(frozen=True)
class FeatureDensity:
    """A fitted density of pooled training features.

    Attributes:
        mean: feature mean, (C,).
        components: orthonormal principal directions, (C, k).
        scales: standard deviation along each direction, (k,).
        residual_scale: mean squared residual outside the components on training images.
        threshold: scores above it are unfamiliar.
    """

    mean: np.ndarray
    components: np.ndarray
    scales: np.ndarray
    residual_scale: float
    threshold: float

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Unfamiliarity scores of pooled features (N, C) or (C,); about 1 on training images."""
        centred = np.atleast_2d(np.asarray(features, dtype=np.float64)) - self.mean
        projected = centred @ self.components
        mahalanobis = np.mean((projected / self.scales) ** 2, axis=1)
        residual = centred - projected @ self.components.T
        leftover = np.sum(residual**2, axis=1) / self.residual_scale
        return 0.5 * (mahalanobis + leftover)

    def score(self, feature_map: np.ndarray) -> float:
        """Score of one (H, W, C) feature map."""
        return float(self.scores(pooled(feature_map))[0])

    def is_unfamiliar(self, feature_map: np.ndarray) -> bool:
        """True when the frame's features lie outside what training covered."""
        return self.score(feature_map) > self.threshold

    def with_threshold(self, threshold: float) -> FeatureDensity:
        """The same density with another threshold."""
        return FeatureDensity(
            self.mean, self.components, self.scales, self.residual_scale, float(threshold)
        )

    def to_bytes(self) -> bytes:
        """Serialise to ``.npz`` bytes (no pickle)."""
        buffer = io.BytesIO()
        np.savez(
            buffer,
            mean=self.mean.astype(np.float32),
            components=self.components.astype(np.float32),
            scales=self.scales.astype(np.float32),
            residual_scale=np.float64(self.residual_scale),
            threshold=np.float64(self.threshold),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, label: str = FAMILIARITY_FILE) -> FeatureDensity:
        """Read :meth:`to_bytes` output. Raises BundleModelError when it is not one."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
                missing = [name for name in _ARRAYS if name not in arrays]
                if missing:
                    raise BundleModelError(f"{label}: missing arrays {missing}")
                values = {name: np.asarray(arrays[name], np.float64) for name in _ARRAYS}
        except (OSError, ValueError) as exc:
            raise BundleModelError(f"{label}: not a familiarity model ({exc})") from exc
        density = cls(
            mean=values["mean"],
            components=values["components"],
            scales=values["scales"],
            residual_scale=float(values["residual_scale"]),
            threshold=float(values["threshold"]),
        )
        c, k = density.components.shape if density.components.ndim == 2 else (0, 0)
        if density.mean.shape != (c,) or density.scales.shape != (k,) or k == 0:
            raise BundleModelError(f"{label}: inconsistent array shapes")
        if not (np.all(density.scales > 0) and density.residual_scale > 0):
            raise BundleModelError(f"{label}: scales must be positive")
        return density


def fit_feature_density(
    train_features: np.ndarray,
    val_features: np.ndarray,
    components: int = 32,
    quantile: float = VALIDATION_QUANTILE,
) -> FeatureDensity:
    """Fit the density on training features and its threshold on validation features.

    Args:
        train_features: pooled features of training images, (N, C), N > components.
        val_features: pooled features of validation images, (M, C).
        components: principal directions kept.
        quantile: share of validation images that stay familiar.
    """
    x = np.asarray(train_features, dtype=np.float64)
    if x.ndim != 2 or len(x) <= components:
        raise ValueError(f"need more than {components} training feature rows, got {x.shape}")
    mean = x.mean(axis=0)
    centred = x - mean
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    basis = vt[:components].T
    scales = np.maximum(singular[:components] / np.sqrt(len(x) - 1), 1e-6)
    residual = centred - (centred @ basis) @ basis.T
    residual_scale = max(float(np.mean(np.sum(residual**2, axis=1))), 1e-12)
    density = FeatureDensity(mean, basis, scales, residual_scale, np.inf)
    threshold = float(np.quantile(density.scores(val_features), quantile))
    return density.with_threshold(threshold)
