"""Synthetic dermoscopy-like frames ("phantoms") with ground-truth lesion masks.

Dataset images may not be committed, so the simulator's default camera and the
tests draw their own.

* :func:`make_phantom`: the tests' fixture: a skin-toned background with texture,
  an irregular pigmented blob, optional hairs, dermoscope vignetting, and on request
  a fault (blur, under/over-exposure, a black frame, or no lesion at all). Its skin
  colour is not the training images' light, so the device calls it unusual.
* :func:`make_lesion` / :func:`sim_phantom`: the simulator's lesion photos, drawn
  under the training images' light, one kind per result screen: a smooth symmetric
  brown nevus (Monitor), an asymmetric multi-coloured lesion with an atypical
  network, dots and a blue-white veil (Refer, or Uncertain — refer), a checkered
  object that is no lesion at all (Uncertain), and a blurred nevus (Retake).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FAULTS = ("blur", "dark", "bright", "black", "no_lesion")
# The simulator's lesion photos (see make_lesion), one of each result screen in turn.
LESION_KINDS = ("nevus", "melanoma", "unusual", "blurred")
# The chromaticity (R, G, B, mean 1) of the light in the training images: the shipped
# bundle's colour reference. Skin drawn in it reads as normal light, not "unusual".
SKIN_CHROMATICITY = np.array([1.183378, 0.885035, 0.931587], np.float32)


@dataclass(frozen=True)
class Phantom:
    """A synthetic frame (RGB uint8) and its lesion mask (bool; all False if no lesion)."""

    image: np.ndarray
    mask: np.ndarray
    hair_mask: np.ndarray


def _blob_mask(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    centre = np.array([width, height]) * (0.5 + rng.uniform(-0.08, 0.08, 2))
    radius = min(height, width) * rng.uniform(0.18, 0.3)
    angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    # A few low-frequency harmonics make an irregular but closed border.
    wobble = np.ones_like(angles)
    for harmonic in (2, 3, 5):
        wobble += rng.uniform(0.03, 0.12) * np.sin(harmonic * angles + rng.uniform(0, 2 * np.pi))
    points = np.stack(
        [
            centre[0] + radius * wobble * np.cos(angles),
            centre[1] + radius * wobble * np.sin(angles),
        ],
        axis=1,
    ).astype(np.int32)
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [points], 1)
    return mask.astype(bool)


def _draw_hairs(rng: np.random.Generator, image: np.ndarray, count: int) -> np.ndarray:
    height, width = image.shape[:2]
    mask = np.zeros((height, width), np.uint8)
    thickness = max(1, round(min(height, width) / 240))
    for _ in range(count):
        start = rng.uniform([0, 0], [width, height])
        direction = rng.normal(size=2)
        direction /= np.linalg.norm(direction) + 1e-9
        length = rng.uniform(0.4, 0.9) * max(height, width)
        bend = rng.normal(size=2) * length * 0.1
        ts = np.linspace(0, 1, 20)[:, None]
        curve = start + ts * direction * length + (ts * (1 - ts)) * bend
        cv2.polylines(mask, [curve.astype(np.int32)], False, 1, thickness, cv2.LINE_AA)
    colour = np.array([35, 25, 20], np.float32)
    hair = mask.astype(bool)
    image[hair] = colour
    return hair


def make_phantom(
    seed: int,
    size: tuple[int, int] = (480, 640),
    *,
    hair: bool = True,
    fault: str | None = None,
) -> Phantom:
    """Draw a phantom frame.

    Args:
        seed: random seed; the same seed always gives the same frame.
        size: (height, width) in pixels.
        hair: draw a few dark hairs across the frame.
        fault: one of FAULTS, or None for a good frame.

    Raises:
        ValueError: for an unknown fault.
    """
    if fault is not None and fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; expected one of {FAULTS}")
    rng = np.random.default_rng(seed)
    height, width = size
    skin = np.array([222, 176, 150], np.float32) * rng.uniform(0.85, 1.05)
    texture = cv2.GaussianBlur(rng.normal(0, 6, (height, width)).astype(np.float32), (0, 0), 3)
    image = np.clip(skin[None, None, :] + texture[..., None], 0, 255)

    mask = np.zeros((height, width), bool)
    if fault != "no_lesion":
        mask = _blob_mask(rng, height, width)
        pigment = np.array([95, 55, 40], np.float32) * rng.uniform(0.7, 1.2)
        # Darker core, softer rim: distance inside the blob controls the pigment.
        inside = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
        depth = np.clip(inside / (inside.max() + 1e-6) * 1.6, 0, 1)[..., None]
        dots = cv2.GaussianBlur(rng.normal(0, 14, (height, width)).astype(np.float32), (0, 0), 1.5)
        lesion = pigment + dots[..., None]
        alpha = np.where(mask[..., None], 0.55 + 0.45 * depth, 0.0)
        image = image * (1 - alpha) + lesion * alpha

    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    radius = np.hypot((xs - width / 2) / (width / 2), (ys - height / 2) / (height / 2))
    image *= np.clip(1.15 - 0.35 * radius**2, 0.2, 1.0)[..., None]
    image = np.clip(image, 0, 255).astype(np.uint8)

    hair_mask = np.zeros((height, width), bool)
    if hair:
        hair_mask = _draw_hairs(rng, image, count=int(rng.integers(3, 7)))

    if fault == "blur":
        image = cv2.GaussianBlur(image, (0, 0), max(height, width) / 90)
    elif fault == "dark":
        image = (image * 0.08).astype(np.uint8)
    elif fault == "bright":
        image = np.clip(image.astype(np.float32) * 2.2 + 60, 0, 255).astype(np.uint8)
    elif fault == "black":
        image = np.zeros_like(image)
    return Phantom(image=image, mask=mask, hair_mask=hair_mask)


def _noise(rng: np.random.Generator, height: int, width: int, sigma: float, scale: float):
    """Gaussian noise smoothed at ``scale`` pixels, times ``sigma``."""
    noise = rng.normal(0, 1, (height, width)).astype(np.float32)
    return cv2.GaussianBlur(noise, (0, 0), scale) * sigma


def _standard(field: np.ndarray) -> np.ndarray:
    return (field - field.mean()) / (field.std() + 1e-6)


def _outline(
    rng: np.random.Generator, height: int, width: int, radius: float, irregular: float
) -> np.ndarray:
    """A closed lesion outline: an ellipse whose border wobbles by ``irregular``."""
    angles = np.linspace(0, 2 * np.pi, 96, endpoint=False)
    wobble = np.ones_like(angles)
    for harmonic in (2, 3, 5, 7, 11):
        amplitude = irregular * rng.uniform(0.3, 1.0)
        amplitude *= 0.5 if harmonic == 2 else 1 / (1 + 0.3 * harmonic)
        wobble += amplitude * np.sin(harmonic * angles + rng.uniform(0, 2 * np.pi))
    cx = width / 2 + rng.uniform(-0.04, 0.04) * width
    cy = height / 2 + rng.uniform(-0.04, 0.04) * height
    points = np.stack(
        [cx + radius * wobble * np.cos(angles), cy + 0.85 * radius * wobble * np.sin(angles)], 1
    ).astype(np.int32)
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [points], 1)
    return mask.astype(bool)


def _depth(mask: np.ndarray, steepness: float) -> np.ndarray:
    """0 at the border rising to 1 inside: how much pigment covers the skin."""
    inside = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    return np.clip(inside / (inside.max() + 1e-6) * steepness, 0, 1)[..., None]


def _nevus(rng, image, height, width, radius):
    mask = _outline(rng, height, width, radius, 0.05)
    colour = np.array([150, 95, 70], np.float32) * rng.uniform(0.85, 1.1)
    pigment = colour + _noise(rng, height, width, 10, 1.2)[..., None]
    alpha = np.where(mask[..., None], 0.85 * _depth(mask, 2.5), 0.0)
    return image * (1 - alpha) + pigment * alpha, mask


def _melanoma(rng, image, height, width, radius):
    mask = _outline(rng, height, width, radius * 1.15, 0.35)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    # Asymmetry: the pigment is darker towards one side.
    side = ((xs - width / 2) * np.cos(angle) + (ys - height / 2) * np.sin(angle)) / radius
    blotches = _standard(_noise(rng, height, width, 1, 14)) + 0.8 * side
    dark = np.array([55, 32, 28], np.float32)
    brown = np.array([115, 65, 45], np.float32)
    light = np.array([160, 105, 80], np.float32)
    pigment = np.where(
        (blotches > 0.5)[..., None], dark, np.where((blotches < -0.8)[..., None], light, brown)
    )
    # An atypical network: dark lines along the zero crossings of band-pass noise.
    band = _noise(rng, height, width, 1, 2.0) - _noise(rng, height, width, 1, 5.0)
    pigment = np.where((np.abs(band) < 0.02)[..., None], pigment * 0.6, pigment)
    # A blue-white veil over part of the raised centre.
    inside = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    veil = (_standard(_noise(rng, height, width, 1, 20)) > 0.3) & (inside > 0.3 * inside.max())
    blue = np.array([80, 90, 125], np.float32)
    pigment = np.where(veil[..., None], 0.35 * pigment + 0.65 * blue, pigment)
    pigment = pigment + _noise(rng, height, width, 12, 0.8)[..., None]
    dots = (rng.uniform(0, 1, (height, width)) > 0.996) & mask
    dots = cv2.dilate(dots.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    pigment[dots] = (25, 18, 18)
    alpha = np.where(mask[..., None], 0.97 * _depth(mask, 4.0), 0.0)
    return image * (1 - alpha) + pigment * alpha, mask


def _unusual(rng, image, height, width, radius):
    """A green and yellow checkered patch: no lesion the model was trained on."""
    ys, xs = np.mgrid[0:height, 0:width]
    side = max(4, round(min(height, width) / 20))
    checker = (((xs // side) + (ys // side)) % 2).astype(bool)
    mask = (np.abs(xs - width / 2) < radius) & (np.abs(ys - height / 2) < radius)
    image = image.copy()
    image[mask & checker] = (40, 160, 60)
    image[mask & ~checker] = (230, 230, 60)
    return image, mask


def make_lesion(seed: int, kind: str, size: tuple[int, int] = (480, 640)) -> Phantom:
    """Draw a lesion photo under the training images' light.

    Args:
        seed: random seed; the same seed and kind always give the same frame.
        kind: one of LESION_KINDS: "nevus", "melanoma", "unusual" or "blurred"
            (a nevus blurred as by hand shake).
        size: (height, width) in pixels.

    Raises:
        ValueError: for an unknown kind.
    """
    if kind not in LESION_KINDS:
        raise ValueError(f"unknown lesion kind {kind!r}; expected one of {LESION_KINDS}")
    rng = np.random.default_rng(seed)
    height, width = size
    skin = SKIN_CHROMATICITY * rng.uniform(185, 210) * rng.uniform(0.97, 1.03, 3)
    image = np.ones((height, width, 3), np.float32) * skin.astype(np.float32)
    # Skin texture: broad mottling and fine grain (which the sharpness gate sees).
    image += _noise(rng, height, width, 6, 6)[..., None]
    image += _noise(rng, height, width, 4, 0.5)[..., None]
    radius = min(height, width) * rng.uniform(0.22, 0.3)
    draw = {"melanoma": _melanoma, "unusual": _unusual}.get(kind, _nevus)
    image, mask = draw(rng, image, height, width, radius)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    radial = np.hypot((xs - width / 2) / (width / 2), (ys - height / 2) / (height / 2))
    image *= np.clip(1.08 - 0.2 * radial**2, 0.3, 1.0)[..., None]
    image = np.clip(image, 0, 255).astype(np.uint8)
    if kind == "blurred":
        image = cv2.GaussianBlur(image, (0, 0), max(height, width) / 80)
    return Phantom(image=image, mask=mask, hair_mask=np.zeros((height, width), bool))


def sim_phantom(index: int, size: tuple[int, int] = (480, 640)) -> Phantom:
    """The simulator's ``index``-th frame: the lesion kinds in turn, a new seed each round."""
    kind = LESION_KINDS[index % len(LESION_KINDS)]
    return make_lesion(index // len(LESION_KINDS), kind, size)
