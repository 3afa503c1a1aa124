"""Controlled acquisition shifts: what another camera, lens or LED ring does to a frame.

Each :class:`Shift` is a deterministic function of (image, seed) applied to the
frame *before* the device pipeline, so the benchmark measures the whole chain
(quality-independent: the gate is not applied, as in ``skinscan eval``). The
families:

* ``colour``: white balance of another illuminant, as colour temperature. The
  frame is taken to be white-balanced for 6500 K and is re-lit at another
  temperature in linear light (sRGB decoded, channel gains, re-encoded; bright
  channels clip). The gains are the sRGB white points of a black body
  (Charity's table) relative to 6500 K, scaled to keep the luminance of white,
  as a camera's auto-exposure does.
* ``tone``: gamma of another tone curve; exposure (a gain in linear light,
  clipped like a sensor).
* ``vignetting``: a radial fall-off to 45% at the corners, as a lens of another
  field of view.
* ``compression``: JPEG at quality 30.
* ``resolution``: a sharper sensor: the frame upscaled 3x or 4x (bicubic) with an
  optical blur, as a camera that resolves the same field with more pixels.
* ``scale``: the lesion photographed from closer (it fills 60-90% of the frame,
  drawn per image) or further away (the frame shrunk to 60% inside mirrored skin).
* ``rotation``: 45 degrees, borders mirrored.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import cv2
import numpy as np

from device.imaging.segment import segment_lesion
from device.imaging.validate import ensure_rgb_uint8

# sRGB white point of a black body at each temperature (Charity's blackbody table, 2° CMF).
_WHITE_POINTS = {
    3000: (255, 180, 107),
    4000: (255, 209, 163),
    5000: (255, 228, 206),
    6500: (255, 249, 253),
    8000: (227, 233, 255),
    10000: (204, 219, 255),
}


_LUMINANCE = np.array([0.2126, 0.7152, 0.0722], np.float32)


@dataclass(frozen=True)
class Shift:
    """One acquisition shift.

    Attributes:
        name: short id used in reports, e.g. "colour-3000K".
        family: "none", "colour", "tone", "vignetting", "compression", "resolution",
            "scale" or "rotation".
        description: what it stands for, in words.
        kind: the transform applied.
        value: its strength.
    """

    name: str
    family: str
    description: str
    kind: str
    value: float

    def apply(self, image: np.ndarray, seed: int = 0) -> np.ndarray:
        """The shifted frame (a new RGB uint8 array; the input is not changed)."""
        image = ensure_rgb_uint8(image, "frame")
        transform = _TRANSFORMS[self.kind]
        return transform(image, self.value, np.random.default_rng(seed))


def _to_linear(image: np.ndarray) -> np.ndarray:
    x = image.astype(np.float32) / 255.0
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _to_srgb(linear: np.ndarray) -> np.ndarray:
    x = np.clip(linear, 0.0, 1.0)
    x = np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1 / 2.4) - 0.055)
    return (x * 255.0 + 0.5).astype(np.uint8)


def colour_temperature_gains(kelvin: int) -> np.ndarray:
    """Linear-light channel gains that re-light a 6500 K-balanced frame at ``kelvin``."""
    white = _to_linear(np.array([[_WHITE_POINTS[kelvin]]], np.uint8))[0, 0]
    reference = _to_linear(np.array([[_WHITE_POINTS[6500]]], np.uint8))[0, 0]
    gains = white / reference
    # Auto-exposure keeps the luminance of white: the light changes colour, not level.
    return gains / float(np.dot(_LUMINANCE, gains))


def _identity(image: np.ndarray, value: float, rng: np.random.Generator) -> np.ndarray:
    return image.copy()


def _colour(image: np.ndarray, value: float, rng: np.random.Generator) -> np.ndarray:
    return _to_srgb(_to_linear(image) * colour_temperature_gains(int(value)))


def _gamma(image: np.ndarray, value: float, rng: np.random.Generator) -> np.ndarray:
    return (np.power(image.astype(np.float32) / 255.0, value) * 255.0 + 0.5).astype(np.uint8)


def _exposure(image: np.ndarray, value: float, rng: np.random.Generator) -> np.ndarray:
    return _to_srgb(_to_linear(image) * value)


def _vignetting(image: np.ndarray, value: float, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    radius = np.hypot((xs + 0.5) / width - 0.5, (ys + 0.5) / height - 0.5) / np.hypot(0.5, 0.5)
    falloff = 1.0 - (1.0 - value) * radius**2
    return _to_srgb(_to_linear(image) * falloff[..., None])


def _jpeg(image: np.ndarray, value: float, rng: np.random.Generator) -> np.ndarray:
    ok, encoded = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(value)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return np.ascontiguousarray(cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1])


def _resolution(image: np.ndarray, value: float, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape[:2]
    big = cv2.resize(
        image, (int(width * value), int(height * value)), interpolation=cv2.INTER_CUBIC
    )
    # The optics of the sharper camera: a blur of half a source pixel.
    return cv2.GaussianBlur(big, (0, 0), 0.5 * value)


def _closer(image: np.ndarray, value: float, rng: np.random.Generator) -> np.ndarray:
    """Zoom on the lesion until it spans a random 60-90% of the frame."""
    height, width = image.shape[:2]
    found = segment_lesion(image).box
    x0, y0, x1, y1 = (
        found if found is not None else (width / 4, height / 4, 3 * width / 4, 3 * height / 4)
    )
    extent = max((x1 - x0) / width, (y1 - y0) / height)
    zoom = max(1.0, rng.uniform(0.6, value) / max(extent, 1e-3))
    win_w, win_h = width / zoom, height / zoom
    cx = min(max((x0 + x1) / 2, win_w / 2), width - win_w / 2)
    cy = min(max((y0 + y1) / 2, win_h / 2), height - win_h / 2)
    matrix = np.array([[zoom, 0, (width / 2) - zoom * cx], [0, zoom, (height / 2) - zoom * cy]])
    return cv2.warpAffine(
        image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )


def _further(image: np.ndarray, value: float, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), 0.0, value)
    return cv2.warpAffine(
        image, matrix, (width, height), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT_101
    )


def _rotation(image: np.ndarray, value: float, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), value, 1.0)
    return cv2.warpAffine(
        image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )


_TRANSFORMS = {
    "identity": _identity,
    "colour_temperature": _colour,
    "gamma": _gamma,
    "exposure": _exposure,
    "vignetting": _vignetting,
    "jpeg": _jpeg,
    "upscale_blur": _resolution,
    "closer": _closer,
    "further": _further,
    "rotation": _rotation,
}

UNSHIFTED = Shift("none", "none", "the frame as it is", "identity", 0.0)

SHIFTS: tuple[Shift, ...] = (
    UNSHIFTED,
    Shift("colour-3000K", "colour", "warm light, 3000 K", "colour_temperature", 3000),
    Shift("colour-4000K", "colour", "warm-white LED, 4000 K", "colour_temperature", 4000),
    Shift("colour-8000K", "colour", "cool LED or shade, 8000 K", "colour_temperature", 8000),
    Shift("colour-10000K", "colour", "very cool light, 10000 K", "colour_temperature", 10000),
    Shift("gamma-0.7", "tone", "flatter tone curve, gamma 0.7", "gamma", 0.7),
    Shift("gamma-1.5", "tone", "steeper tone curve, gamma 1.5", "gamma", 1.5),
    Shift("exposure-0.6", "tone", "under-exposed, 0.6x light", "exposure", 0.6),
    Shift("exposure-1.5", "tone", "over-exposed, 1.5x light, clipped", "exposure", 1.5),
    Shift("vignetting", "vignetting", "lens fall-off to 45% at the corners", "vignetting", 0.45),
    Shift("jpeg-q30", "compression", "JPEG quality 30", "jpeg", 30),
    Shift("resolution-3x", "resolution", "sharper sensor: 3x pixels, blur", "upscale_blur", 3),
    Shift("resolution-4x", "resolution", "sharper sensor: 4x pixels, blur", "upscale_blur", 4),
    Shift("scale-closer", "scale", "closer: lesion spans 60-90% of the frame", "closer", 0.9),
    Shift("scale-further", "scale", "further: frame shrunk to 60% in skin", "further", 0.6),
    Shift("rotation-45", "rotation", "rotated 45 degrees", "rotation", 45),
)

# The shifts a field camera realistically brings in colour and resolution: the shipped
# referral threshold must keep malignant sensitivity >= 0.85 under the worst of them.
# Dermoscope LED rings are white LEDs of about 4000-6500 K (8000 K covers a cool one,
# or a camera's auto white balance erring blue); 3000 K and 10000 K are stress tests.
REALISTIC_THRESHOLD_SHIFTS = ("colour-4000K", "colour-8000K", "resolution-3x", "resolution-4x")


def shift_by_name(name: str) -> Shift:
    """The benchmark shift called ``name``; KeyError lists the known names."""
    for shift in SHIFTS:
        if shift.name == name:
            return shift
    raise KeyError(f"unknown shift {name!r}; known: {[s.name for s in SHIFTS]}")


def image_seed(image_id: str, seed: int) -> int:
    """A stable per-image seed (the same on every machine and run)."""
    return zlib.crc32(f"{seed}:{image_id}".encode())
