"""Training-time augmentation: random transforms of uint8 RGB model inputs.

Each transform is a plain function of (image, rng) so tests can run it alone.
Dermoscopy has no canonical orientation, so rotation covers the full circle and
all flips are allowed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random transforms.

    Attributes:
        flip: random horizontal and vertical flips.
        rotate: random rotation through the full circle.
        zoom: (min, max) scale factor.
        brightness: max additive shift, in grey levels.
        contrast: max relative contrast change.
        hue: max hue shift, in OpenCV hue units (0-180 is the full circle).
        saturation: max relative saturation change.
    """

    flip: bool = True
    rotate: bool = True
    zoom: tuple[float, float] = (0.9, 1.25)
    brightness: float = 20.0
    contrast: float = 0.2
    hue: float = 4.0
    saturation: float = 0.15

    def to_dict(self) -> dict:
        """JSON-ready dict for the run folder."""
        return asdict(self)


def random_flip(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flip horizontally and/or vertically, each with probability 1/2."""
    if rng.random() < 0.5:
        image = image[:, ::-1]
    if rng.random() < 0.5:
        image = image[::-1]
    return np.ascontiguousarray(image)


def random_rotate_zoom(
    image: np.ndarray, rng: np.random.Generator, rotate: bool, zoom: tuple[float, float]
) -> np.ndarray:
    """Rotate by a uniform angle in [0, 360) and scale, about the centre; reflect at borders."""
    size = image.shape[0]
    angle = rng.uniform(0, 360) if rotate else 0.0
    scale = rng.uniform(*zoom)
    matrix = cv2.getRotationMatrix2D((size / 2, size / 2), angle, scale)
    return cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )


def random_colour(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Jitter brightness, contrast, hue and saturation."""
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-cfg.hue, cfg.hue)) % 180
    hsv[..., 1] *= 1 + rng.uniform(-cfg.saturation, cfg.saturation)
    out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    mean = out.mean()
    out = (out - mean) * (1 + rng.uniform(-cfg.contrast, cfg.contrast)) + mean
    out += rng.uniform(-cfg.brightness, cfg.brightness)
    return np.clip(out, 0, 255).astype(np.uint8)


def augment(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Apply every configured random transform to one uint8 RGB image."""
    if cfg.flip:
        image = random_flip(image, rng)
    image = random_rotate_zoom(image, rng, cfg.rotate, cfg.zoom)
    return random_colour(image, rng, cfg)
