"""Frame -> model input: the deterministic preprocessing shared by device and training.

Steps: scale the frame so its long side is ``work_long_side`` (the resolution of
the HAM10000 images the model learned from), remove hair, segment the lesion,
crop a square ROI around it, and resize to the model input. The spec travels in
the model bundle's manifest, so the device always preprocesses the way the
model was trained.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import cv2
import numpy as np

from device.errors import ConfigError
from device.imaging.hair import HairParams, remove_hair
from device.imaging.roi import Box, CropParams, crop_and_resize, square_roi
from device.imaging.segment import SegmentParams, segment_lesion
from device.imaging.validate import ensure_rgb_uint8

SPEC_VERSION = 1


@dataclass(frozen=True)
class PreprocessSpec:
    """Everything that determines the model input for a frame.

    Attributes:
        version: version of this preprocessing algorithm.
        input_size: side of the square RGB uint8 model input.
        work_long_side: long side the frame is scaled to before any processing.
        hair_removal: whether DullRazor hair removal runs.
        hair: hair removal parameters.
        segment: k-means segmentation parameters.
        crop: ROI crop parameters.
    """

    version: int = SPEC_VERSION
    input_size: int = 224
    work_long_side: int = 200
    hair_removal: bool = True
    hair: HairParams = field(default_factory=HairParams)
    segment: SegmentParams = field(default_factory=SegmentParams)
    crop: CropParams = field(default_factory=CropParams)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; includes the resize rule in words for the manifest reader."""
        data = asdict(self)
        data["resize_rule"] = (
            "scale long side to work_long_side (INTER_AREA down, INTER_LINEAR up); square crop "
            "around the lesion box with margin, clamped to [min_fraction, 1] x short side and "
            "kept inside the image; resize to input_size (INTER_AREA down, INTER_LINEAR up); RGB "
            "uint8, no normalisation (the model normalises)"
        )
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessSpec:
        """Build a spec from :meth:`to_dict` output. Raises ConfigError on unknown keys."""
        data = dict(data)
        data.pop("resize_rule", None)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"preprocessing: unknown keys {unknown}")
        if data.get("version", SPEC_VERSION) != SPEC_VERSION:
            raise ConfigError(
                f"preprocessing.version: {data['version']} is not supported (need {SPEC_VERSION})"
            )
        nested = {"hair": HairParams, "segment": SegmentParams, "crop": CropParams}
        try:
            for key, kind in nested.items():
                if key in data:
                    data[key] = kind(**data[key])
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"preprocessing: {exc}") from exc

    def digest(self) -> str:
        """A short stable hash of the spec: the key of preprocessed caches."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Preprocessed:
    """The model input for a frame and what was found on the way.

    Attributes:
        model_input: input_size x input_size x 3 RGB uint8.
        roi_box: the square crop in frame coordinates (x0, y0, x1, y1).
        lesion_box: the lesion's bounding box in frame coordinates, or None.
        mask: the lesion mask at working resolution.
        hair_fraction: fraction of working-image pixels inpainted as hair.
    """

    model_input: np.ndarray
    roi_box: Box
    lesion_box: Box | None
    mask: np.ndarray
    hair_fraction: float

    @property
    def lesion_found(self) -> bool:
        """True when segmentation found a lesion (otherwise a centre crop was used)."""
        return self.lesion_box is not None


def to_working_size(frame: np.ndarray, long_side: int) -> tuple[np.ndarray, float]:
    """Scale ``frame`` so its long side is ``long_side``; returns (image, frame/work scale)."""
    height, width = frame.shape[:2]
    scale = long_side / max(height, width)
    if scale == 1.0:
        return frame, 1.0
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(frame, size, interpolation=interpolation), 1.0 / scale


def _to_frame(box: Box, scale: float, shape: tuple[int, int]) -> Box:
    height, width = shape
    x0, y0, x1, y1 = box
    return (
        max(0, int(round(x0 * scale))),
        max(0, int(round(y0 * scale))),
        min(width, int(round(x1 * scale))),
        min(height, int(round(y1 * scale))),
    )


def preprocess(frame: np.ndarray, spec: PreprocessSpec | None = None) -> Preprocessed:
    """Turn an RGB uint8 frame of any size into the model input, deterministically."""
    frame = ensure_rgb_uint8(frame, "frame")
    spec = spec or PreprocessSpec()
    work, scale = to_working_size(frame, spec.work_long_side)
    hair_fraction = 0.0
    if spec.hair_removal:
        removal = remove_hair(work, spec.hair)
        work, hair_fraction = removal.image, removal.fraction
    segmentation = segment_lesion(work, spec.segment)
    roi = square_roi(work.shape[:2], segmentation.box, spec.crop)
    model_input = crop_and_resize(work, roi, spec.input_size)
    shape = frame.shape[:2]
    return Preprocessed(
        model_input=model_input,
        roi_box=_to_frame(roi, scale, shape),
        lesion_box=None if segmentation.box is None else _to_frame(segmentation.box, scale, shape),
        mask=segmentation.mask,
        hair_fraction=hair_fraction,
    )
