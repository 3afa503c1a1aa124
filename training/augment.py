"""Training-time augmentation: random transforms of uint8 RGB model inputs.

Each transform is a plain function of (image, rng) so tests can run it alone.
Dermoscopy has no canonical orientation, so rotation covers the full circle and
all flips are allowed. A random resized crop (a window of random area and aspect
ratio, stretched back to the full input) varies scale and framing, as a
hand-held dermoscope does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from device.errors import ConfigError


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random transforms.

    Attributes:
        flip: random horizontal and vertical flips.
        rotate: random rotation through the full circle.
        crop_scale: (min, max) area of the random resized crop, as a fraction of the image.
        crop_ratio: (min, max) aspect ratio (width / height) of that crop, drawn log-uniformly.
        zoom: (min, max) scale factor.
        brightness: max additive shift, in grey levels.
        contrast: max relative contrast change.
        hue: max hue shift, in OpenCV hue units (0-180 is the full circle).
        saturation: max relative saturation change.
    """

    flip: bool = True
    rotate: bool = True
    crop_scale: tuple[float, float] = (0.5, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    zoom: tuple[float, float] = (1.0, 1.1)
    brightness: float = 20.0
    contrast: float = 0.2
    hue: float = 4.0
    saturation: float = 0.15

    def to_dict(self) -> dict:
        """JSON-ready dict for the run folder."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> AugmentConfig:
        """Rebuild from :meth:`to_dict` output (JSON lists become tuples).

        A run configured before the random resized crop existed did not crop, so a
        missing crop range means no crop and an old run resumes as it started.
        """
        data = {"crop_scale": (1.0, 1.0), "crop_ratio": (1.0, 1.0), **data}
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"augment: unknown keys {unknown}")
        for key in ("crop_scale", "crop_ratio", "zoom"):
            low, high = (float(v) for v in data[key])
            if not 0 < low <= high:
                raise ConfigError(f"augment.{key}: need 0 < min <= max, got {data[key]}")
            data[key] = (low, high)
        if data["crop_scale"][1] > 1:
            raise ConfigError(f"augment.crop_scale: max must be <= 1, got {data['crop_scale']}")
        return cls(**data)


def random_flip(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flip horizontally and/or vertically, each with probability 1/2."""
    if rng.random() < 0.5:
        image = image[:, ::-1]
    if rng.random() < 0.5:
        image = image[::-1]
    return np.ascontiguousarray(image)


def random_resized_crop(
    image: np.ndarray,
    rng: np.random.Generator,
    scale: tuple[float, float],
    ratio: tuple[float, float],
) -> np.ndarray:
    """Cut a window of random area (fraction ``scale``) and aspect ``ratio``; resize it back."""
    height, width = image.shape[:2]
    area = height * width * rng.uniform(*scale)
    aspect = float(np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]))))
    crop_w = int(round(min(width, np.sqrt(area * aspect))))
    crop_h = int(round(min(height, np.sqrt(area / aspect))))
    if (crop_w, crop_h) == (width, height):
        return image
    x0 = int(rng.integers(0, width - crop_w + 1))
    y0 = int(rng.integers(0, height - crop_h + 1))
    window = image[y0 : y0 + crop_h, x0 : x0 + crop_w]
    return cv2.resize(window, (width, height), interpolation=cv2.INTER_LINEAR)


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
    image = random_resized_crop(image, rng, cfg.crop_scale, cfg.crop_ratio)
    if cfg.flip:
        image = random_flip(image, rng)
    image = random_rotate_zoom(image, rng, cfg.rotate, cfg.zoom)
    return random_colour(image, rng, cfg)
