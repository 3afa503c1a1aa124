"""Patient cards for the tests: a rendered QR code, and a photo-like one on skin."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def rendered_card(text: str, module_px: int = 12) -> np.ndarray:
    """A printed card as a flat RGB rendering: black modules on white, with the quiet zone."""
    code = cv2.QRCodeEncoder.create().encode(text)
    code = np.pad(code, 4, constant_values=255)
    code = cv2.resize(code, None, fx=module_px, fy=module_px, interpolation=cv2.INTER_NEAREST)
    return np.ascontiguousarray(np.repeat(code[..., None], 3, axis=2))


def photographed_card(
    text: str,
    background: np.ndarray,
    *,
    module_px: int = 6,
    angle: float = 12.0,
    blur_sigma: float = 1.5,
    light_falloff: float = 0.6,
    seed: int = 0,
) -> np.ndarray:
    """A card as the dermoscope camera sees it: on skin, greyish paper, rotated, blurred.

    Args:
        text: what the QR code holds.
        background: an RGB photo (e.g. a HAM10000 image), resized to 1024x768.
        module_px: size of one QR module in pixels.
        angle: rotation in degrees.
        blur_sigma: Gaussian blur (defocus, hand shake).
        light_falloff: brightness at the left edge relative to the right (uneven LED ring).
        seed: the sensor noise.
    """
    frame = cv2.resize(background, (1024, 768), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    code = rendered_card(text, module_px)[..., 0].astype(np.float32)
    paper = 40.0 + code * (200.0 / 255.0)  # grey ink on off-white paper
    h, w = code.shape
    top, left = (768 - h) // 2, (1024 - w) // 2
    frame[top : top + h, left : left + w] = paper[..., None] * np.array([1.0, 0.97, 0.92])
    rotation = cv2.getRotationMatrix2D((512, 384), angle, 1.0)
    frame = cv2.warpAffine(frame, rotation, (1024, 768), borderMode=cv2.BORDER_REFLECT)
    falloff = light_falloff + (1.0 - light_falloff) * np.linspace(0.0, 1.0, 1024)
    frame = cv2.GaussianBlur(frame * falloff[None, :, None], (0, 0), blur_sigma)
    noise = np.random.default_rng(seed).normal(0.0, 5.0, frame.shape)
    return np.clip(frame + noise, 0, 255).astype(np.uint8)


def write_rgb(path: Path, image: np.ndarray) -> Path:
    """Write an RGB image (PNG or JPEG by the suffix)."""
    assert cv2.imwrite(str(path), np.ascontiguousarray(image[..., ::-1])), path
    return path
