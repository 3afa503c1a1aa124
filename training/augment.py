"""Training-time augmentation: random transforms of uint8 RGB model inputs.

Each transform is a plain function of (image, rng) so tests can run it alone.
Dermoscopy has no canonical orientation, so rotation covers the full circle and
all flips are allowed. A random resized crop (a window of random area and aspect
ratio, stretched back to the full input) varies scale and framing, as a
hand-held dermoscope does.

The acquisition transforms stand in for cameras HAM10000 never saw: a residual
colour cast per channel (what colour constancy leaves), gamma (another tone
curve), optical blur or a lower optical resolution, and JPEG compression.
Missing from a run's config (runs before spec 4), they are off.
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
        channel_gain: max per-channel gain change, as a log factor (0.1 is about +-10%).
        gamma: (min, max) gamma of the tone curve, drawn log-uniformly.
        blur_probability: chance of an optical blur or resolution loss.
        blur_sigma: max Gaussian sigma of that blur, in model-input pixels.
        jpeg_probability: chance of re-encoding as JPEG.
        jpeg_quality: (min, max) JPEG quality of that re-encoding.
    """

    flip: bool = True
    rotate: bool = True
    crop_scale: tuple[float, float] = (0.5, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    zoom: tuple[float, float] = (0.7, 1.15)
    brightness: float = 20.0
    contrast: float = 0.2
    hue: float = 4.0
    saturation: float = 0.15
    channel_gain: float = 0.08
    gamma: tuple[float, float] = (0.75, 1.35)
    blur_probability: float = 0.3
    blur_sigma: float = 1.5
    jpeg_probability: float = 0.25
    jpeg_quality: tuple[float, float] = (30.0, 90.0)

    def to_dict(self) -> dict:
        """JSON-ready dict for the run folder."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> AugmentConfig:
        """Rebuild from :meth:`to_dict` output (JSON lists become tuples).

        A run configured before the random resized crop existed did not crop, so a
        missing crop range means no crop and an old run resumes as it started.
        """
        off = {
            "crop_scale": (1.0, 1.0),
            "crop_ratio": (1.0, 1.0),
            "channel_gain": 0.0,
            "gamma": (1.0, 1.0),
            "blur_probability": 0.0,
            "jpeg_probability": 0.0,
            "jpeg_quality": (90.0, 90.0),
        }
        data = {**off, **data}
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"augment: unknown keys {unknown}")
        for key in ("crop_scale", "crop_ratio", "zoom", "gamma", "jpeg_quality"):
            low, high = (float(v) for v in data[key])
            if not 0 < low <= high:
                raise ConfigError(f"augment.{key}: need 0 < min <= max, got {data[key]}")
            data[key] = (low, high)
        if data["crop_scale"][1] > 1:
            raise ConfigError(f"augment.crop_scale: max must be <= 1, got {data['crop_scale']}")
        for key in ("blur_probability", "jpeg_probability"):
            if not 0 <= float(data[key]) <= 1:
                raise ConfigError(f"augment.{key}: must be in [0, 1], got {data[key]}")
        if data["jpeg_quality"][1] > 100:
            quality = data["jpeg_quality"]
            raise ConfigError(f"augment.jpeg_quality: max must be <= 100, got {quality}")
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


def random_acquisition(
    image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig
) -> np.ndarray:
    """Another camera: channel gains, gamma, blur or lower resolution, JPEG compression."""
    if cfg.channel_gain > 0 or cfg.gamma != (1.0, 1.0):
        gains = np.exp(rng.uniform(-cfg.channel_gain, cfg.channel_gain, 3)).astype(np.float32)
        gamma = float(np.exp(rng.uniform(np.log(cfg.gamma[0]), np.log(cfg.gamma[1]))))
        scaled = np.clip(image.astype(np.float32) / 255.0 * gains, 0.0, 1.0)
        image = (np.power(scaled, gamma) * 255.0 + 0.5).astype(np.uint8)
    if cfg.blur_probability > 0 and rng.random() < cfg.blur_probability:
        sigma = rng.uniform(0.3, cfg.blur_sigma)
        if rng.random() < 0.5:
            image = cv2.GaussianBlur(image, (0, 0), sigma)
        else:
            size = image.shape[0]
            small = max(8, int(round(size / (1.0 + sigma))))
            image = cv2.resize(image, (small, small), interpolation=cv2.INTER_AREA)
            image = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    if cfg.jpeg_probability > 0 and rng.random() < cfg.jpeg_probability:
        quality = int(rng.uniform(*cfg.jpeg_quality))
        ok, encoded = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            image = np.ascontiguousarray(cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1])
    return image


def augment(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Apply every configured random transform to one uint8 RGB image."""
    image = random_resized_crop(image, rng, cfg.crop_scale, cfg.crop_ratio)
    if cfg.flip:
        image = random_flip(image, rng)
    image = random_rotate_zoom(image, rng, cfg.rotate, cfg.zoom)
    image = random_acquisition(image, rng, cfg)
    return random_colour(image, rng, cfg)
