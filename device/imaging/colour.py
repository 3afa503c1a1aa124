"""Colour constancy: Shades of Gray (Finlayson & Trezzi 2004) for dermoscopy frames.

Every camera, lens and LED ring renders skin with its own colour balance. Shades
of Gray estimates the illuminant of an image as the Minkowski p-norm mean of
each channel and divides it out, so that the estimate becomes neutral grey at
the image's own brightness. With p = 6 it sits between grey-world (p = 1) and
max-RGB (p = infinity); the top ISIC 2018/2019 entries used it on every image,
train and test.

With a ``reference`` chromaticity the estimate is mapped to that colour instead
of neutral grey: the mean illuminant of the training images
(:func:`fit_reference`). This lets a model trained on the archive's own colours
(no colour constancy) be fed frames from another camera relit to the archive's
average white balance, and keeps skin looking like skin to an ImageNet backbone.

Dermoscope frames have black vignette corners and specular highlights. Both
carry no information about the illuminant, so pixels that are nearly black or
clipped in any channel are left out of the estimate (all pixels are corrected).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from device.errors import ConfigError
from device.imaging.validate import ensure_rgb_uint8

METHODS = ("none", "shades_of_gray")


@dataclass(frozen=True)
class ColourParams:
    """Parameters of the colour normalisation.

    Attributes:
        method: "shades_of_gray" or "none".
        power: the Minkowski norm p (6 in the ISIC literature).
        dark: pixels whose brightest channel is below this grey level are ignored
            (vignette corners).
        clipped: pixels with any channel at or above this grey level are ignored
            (specular highlights, saturated sensor).
        max_gain: per-channel gains are clamped to [1 / max_gain, max_gain], so a
            frame that is one colour (a lesion filling it) is not recoloured wildly.
        reference: the chromaticity (R, G, B, mean 1) the illuminant estimate is
            mapped to; None maps it to neutral grey.
    """

    method: str = "shades_of_gray"
    power: float = 6.0
    dark: int = 20
    clipped: int = 250
    max_gain: float = 2.5
    reference: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"preprocessing.colour.method: {self.method!r} not in {METHODS}")
        if self.power < 1:
            raise ConfigError(f"preprocessing.colour.power: must be >= 1, got {self.power}")
        if not 0 <= self.dark < self.clipped <= 256:
            raise ConfigError("preprocessing.colour: need 0 <= dark < clipped <= 256")
        if self.max_gain < 1:
            raise ConfigError(f"preprocessing.colour.max_gain: must be >= 1, got {self.max_gain}")
        if self.reference is not None:
            try:
                reference = np.asarray(self.reference, dtype=np.float64)
            except (TypeError, ValueError):
                reference = np.zeros(0)
            if (
                reference.shape != (3,)
                or not np.all(np.isfinite(reference))
                or np.any(reference <= 0)
            ):
                raise ConfigError(
                    "preprocessing.colour.reference: need three positive numbers, got "
                    f"{self.reference!r}"
                )
            # Stored normalised to mean 1 so that equal references compare and hash equal.
            normalised = tuple(round(float(v), 6) for v in reference / reference.mean())
            object.__setattr__(self, "reference", normalised)


NO_COLOUR_CONSTANCY = ColourParams(method="none")


def illuminant_estimate(image: np.ndarray, params: ColourParams) -> np.ndarray:
    """The Shades-of-Gray illuminant of an RGB uint8 image: three channel means, 0-255.

    Falls back to every pixel when fewer than 1% are usable (an all-dark frame).
    """
    image = ensure_rgb_uint8(image, "image")
    pixels = image.reshape(-1, 3)
    usable = (pixels.max(axis=1) >= params.dark) & (pixels.max(axis=1) < params.clipped)
    if usable.mean() < 0.01:
        usable = np.ones(len(pixels), bool)
    values = pixels[usable].astype(np.float64) / 255.0
    estimate = np.power(np.mean(np.power(values, params.power), axis=0), 1.0 / params.power)
    return estimate * 255.0


def chromaticity(estimate: np.ndarray) -> np.ndarray:
    """An illuminant estimate scaled to channel mean 1 (its colour without its brightness)."""
    estimate = np.maximum(np.asarray(estimate, dtype=np.float64), 1e-3)
    return estimate / estimate.mean()


def channel_gains(image: np.ndarray, params: ColourParams) -> np.ndarray:
    """Per-channel gains that map the image's illuminant estimate to the target colour.

    The target is neutral grey, or ``params.reference``; the estimate's brightness
    is kept (exposure is not colour).
    """
    if params.method == "none":
        return np.ones(3)
    target = np.ones(3) if params.reference is None else np.asarray(params.reference)
    gains = target / chromaticity(illuminant_estimate(image, params))
    return np.clip(gains, 1.0 / params.max_gain, params.max_gain)


def fit_reference(images, params: ColourParams) -> tuple[float, float, float]:
    """The mean illuminant chromaticity of ``images`` (an iterable of RGB uint8 arrays).

    The geometric mean, so that a cast and its opposite cancel; fitted on the
    training split only.

    Raises:
        ValueError: no images.
    """
    logs = [np.log(chromaticity(illuminant_estimate(image, params))) for image in images]
    if not logs:
        raise ValueError("fit_reference needs at least one image")
    mean = np.exp(np.mean(logs, axis=0))
    return tuple(float(v) for v in mean / mean.mean())  # type: ignore[return-value]


def normalise_colour(image: np.ndarray, params: ColourParams) -> np.ndarray:
    """Return ``image`` with its illuminant divided out (a copy; uint8 RGB in and out)."""
    image = ensure_rgb_uint8(image, "image")
    if params.method == "none":
        return image
    gains = channel_gains(image, params).astype(np.float32)
    corrected = image.astype(np.float32) * gains
    return np.clip(corrected + 0.5, 0, 255).astype(np.uint8)
