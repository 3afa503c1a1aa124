"""Synthetic dermoscopy-like frames ("phantoms") with ground-truth lesion masks.

Dataset images may not be committed, so the simulator's default camera and the
tests draw their own: a skin-toned background with texture, an irregular
pigmented blob, optional hairs, dermoscope vignetting, and on request a fault
(blur, under/over-exposure, a black frame, or no lesion at all).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FAULTS = ("blur", "dark", "bright", "black", "no_lesion")


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
