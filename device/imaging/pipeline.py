"""Frame -> model input: the deterministic preprocessing shared by device and training.

One path, six named steps (:func:`preprocess`):

1. **working copy**: the frame scaled so its long side is ``work_long_side``
   (200 px, the resolution of the HAM10000 copies the models are trained on, so a
   sharper camera's frame reaches the model with the training images' detail);
2. **colour clamp** (spec 6; off in spec 3): the working copy's Shades-of-Gray
   illuminant is clamped into the training images' range
   (:mod:`device.imaging.colour`): left as photographed inside it, relit to its
   nearest edge outside it;
3. **hair mask**: DullRazor finds hair and inpaints it, for segmentation only;
4. **segmentation**: k-means colour clustering finds the lesion in the
   hair-removed copy;
5. **ROI**: a square around the lesion, cut from the working copy as photographed
   (not inpainted: inpainting the model input cost about 5 points of balanced
   accuracy, see docs/preprocessing.md);
6. **resize** to the model input.

The spec travels in the model bundle's manifest, so the device always preprocesses
the way the model was trained. Two specs are kept: 6, the shipped bundle's and
``skinscan train``'s, and 3, the same path with the colour clamp off (``skinscan
train --recipe v3``). Specs 1, 2, 4 and 5 are retired (:data:`RETIRED_VERSIONS`):
a bundle of one is refused with a message that names it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import cv2
import numpy as np

from device.errors import ConfigError
from device.imaging.colour import NO_COLOUR_CONSTANCY, ColourParams, clamp_colour
from device.imaging.hair import HairParams, remove_hair
from device.imaging.roi import Box, CropParams, crop_and_resize, square_roi
from device.imaging.segment import SegmentParams, segment_lesion
from device.imaging.validate import ensure_rgb_uint8

SPEC_VERSION = 6
"""The spec of the shipped bundle (device/models/default) and of ``skinscan train``."""

SUPPORTED_VERSIONS = (3, 6)

RETIRED_VERSIONS = {
    1: "it inpainted hair into the model input, which cost accuracy",
    2: "it cropped the full-resolution frame and inpainted hair into the model input",
    4: "it normalised every frame's colour to grey and cropped by lesion size; never shipped",
    5: "it mapped every frame's colour to a reference and cropped by lesion size; never shipped",
}

# Settings of retired specs that kept specs write with their no-op value (manifests
# sealed before the retirement carry them): key -> (the no-op value, retired specs).
_RETIRED_SETTINGS = {
    ("segment", "min_contrast"): (0.0, "4 and 5"),
    ("crop", "max_fraction"): (1.0, "4 and 5"),
}

RESIZE_RULES = {
    3: (
        "scale the frame so its long side is work_long_side (INTER_AREA down, INTER_LINEAR "
        "up; the training images' resolution); find hair there and segment the hair-removed "
        "copy; square crop of the un-inpainted working image around the lesion box with "
        "margin, clamped to [min_fraction, 1] x short side and kept inside the image; resize "
        "to input_size (INTER_AREA down, INTER_LINEAR up); RGB uint8, no normalisation (the "
        "model normalises)"
    ),
    6: (
        "as version 3 (square crop of the un-inpainted working image, kept inside it), "
        "except that first the Shades-of-Gray illuminant estimate of the working image is "
        "clamped into colour.region (an ellipse in (log R/G, log B/G) around "
        "colour.reference, fitted on the training images): inside it the image is left "
        "unchanged; outside it the channels are scaled so the estimate moves to the "
        "ellipse's edge along the line to its centre, the estimate's brightness kept"
    ),
}


def check_version(version: Any) -> None:
    """Raise ConfigError unless ``version`` is a kept spec; a retired one is named as such."""
    if version in RETIRED_VERSIONS:
        raise ConfigError(
            f"preprocessing spec {version} is retired ({RETIRED_VERSIONS[version]}); its "
            "models cannot be run any more: use a bundle of spec 3 or 6, or train again "
            "(skinscan train: spec 6; --recipe v3: spec 3) and convert that run"
        )
    if version not in SUPPORTED_VERSIONS:
        raise ConfigError(
            f"preprocessing.version: {version!r} is not supported "
            f"(supported: {list(SUPPORTED_VERSIONS)})"
        )


@dataclass(frozen=True)
class PreprocessSpec:
    """Everything that determines the model input for a frame.

    The defaults are spec 6 before training has fitted its colour region
    (:func:`training.data.with_colour_reference` fits it on the training split).

    Attributes:
        version: 6 (colour clamp on) or 3 (off); the rest of the path is the same.
        input_size: side of the square RGB uint8 model input.
        work_long_side: long side of the working copy, where hair and lesion are
            found and the ROI is cut (the training images' resolution).
        hair_removal: whether DullRazor finds hair for segmentation (the model
            input is never inpainted).
        hair: hair removal parameters.
        segment: k-means segmentation parameters.
        crop: ROI crop parameters.
        colour: the colour clamp: Shades of Gray with a fitted region (spec 6), or
            method "none" (spec 3).
    """

    version: int = SPEC_VERSION
    input_size: int = 224
    work_long_side: int = 200
    hair_removal: bool = True
    hair: HairParams = field(default_factory=HairParams)
    segment: SegmentParams = field(default_factory=SegmentParams)
    crop: CropParams = field(default_factory=CropParams)
    colour: ColourParams = field(default_factory=ColourParams)

    def __post_init__(self) -> None:
        check_version(self.version)
        if self.version == 3 and self.colour.method != "none":
            raise ConfigError(
                "preprocessing: version 3 has no colour step (colour.method must be 'none'; "
                "clamping the colour is version 6)"
            )
        if self.version == 6 and self.colour.method == "none":
            raise ConfigError(
                "preprocessing: version 6 clamps the colour; it needs a colour method"
            )

    @property
    def fitted(self) -> bool:
        """True when the spec can preprocess: spec 3, or spec 6 with its region fitted."""
        return self.colour.fitted

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; includes the resize rule in words for the manifest reader."""
        data = json.loads(json.dumps(asdict(self)))  # tuples (the colour reference) as lists
        data["resize_rule"] = RESIZE_RULES[self.version]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessSpec:
        """Build a spec from :meth:`to_dict` output (or an older manifest's).

        Specs written before colour existed have no ``colour`` entry: they had none.
        Settings of retired specs are accepted at their no-op value and dropped.

        Raises:
            ConfigError: a retired or unknown version, unknown keys or bad values.
        """
        data = dict(data)
        check_version(data.get("version", SPEC_VERSION))
        data.pop("resize_rule", None)
        data.setdefault("colour", asdict(NO_COLOUR_CONSTANCY))
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"preprocessing: unknown keys {unknown}")
        nested = {
            "hair": HairParams,
            "segment": SegmentParams,
            "crop": CropParams,
            "colour": ColourParams,
        }
        try:
            for key, kind in nested.items():
                if key in data:
                    data[key] = kind(**_without_retired_settings(key, data[key]))
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"preprocessing: {exc}") from exc

    def digest(self) -> str:
        """A short stable hash of the spec: the key of preprocessed caches."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _without_retired_settings(section: str, values: Any) -> Any:
    """``values`` of a spec section without retired settings that hold their no-op value."""
    if not isinstance(values, dict):
        return values
    values = dict(values)
    for (where, key), (no_op, specs) in _RETIRED_SETTINGS.items():
        if where == section and key in values:
            value = values.pop(key)
            if value != no_op:
                raise ConfigError(
                    f"preprocessing.{section}.{key}: {value!r} was a setting of retired specs "
                    f"{specs}; specs 3 and 6 have none"
                )
    return values


def default_spec(version: int = SPEC_VERSION) -> PreprocessSpec:
    """The default spec of a kept version: what ``skinscan train`` starts from.

    Version 6's colour region is None here: training fits it on its own training
    split. Version 3 is the same spec with no colour step.
    """
    check_version(version)
    if version == 3:
        return PreprocessSpec(version=3, colour=NO_COLOUR_CONSTANCY)
    return PreprocessSpec()


@dataclass(frozen=True)
class Preprocessed:
    """The model input for a frame and what was found on the way.

    Attributes:
        model_input: input_size x input_size x 3 RGB uint8.
        roi_box: the square crop in frame coordinates (x0, y0, x1, y1).
        lesion_box: the lesion's bounding box in frame coordinates, or None.
        mask: the lesion mask at working resolution.
        hair_fraction: fraction of working-image pixels found to be hair.
        unusual_light: the frame's light was further from the training images' than
            nearly all of theirs (beyond the region's unusual radius; spec 6 only);
            its colours were pulled back into the range.
    """

    model_input: np.ndarray
    roi_box: Box
    lesion_box: Box | None
    mask: np.ndarray
    hair_fraction: float
    unusual_light: bool = False

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


def to_frame_box(box: Box, scale: float, shape: tuple[int, int]) -> Box:
    """Map a working-image box to frame coordinates (``scale`` frame px per working px)."""
    height, width = shape
    x0, y0, x1, y1 = box
    return (
        max(0, int(round(x0 * scale))),
        max(0, int(round(y0 * scale))),
        min(width, int(round(x1 * scale))),
        min(height, int(round(y1 * scale))),
    )


def hair_mask(image: np.ndarray, spec: PreprocessSpec) -> tuple[np.ndarray, np.ndarray]:
    """(``image`` with hair inpainted, for segmentation only; the boolean hair mask)."""
    if not spec.hair_removal:
        return image, np.zeros(image.shape[:2], bool)
    removal = remove_hair(image, spec.hair)
    return removal.image, removal.mask


def preprocess(frame: np.ndarray, spec: PreprocessSpec | None = None) -> Preprocessed:
    """Turn an RGB uint8 frame of any size into the model input, deterministically.

    Args:
        frame: the camera frame or image file, RGB uint8.
        spec: the bundle's spec; None is spec 3 (it needs nothing fitted: callers
            that only want the lesion mask, and tests).

    Raises:
        ConfigError: a spec 6 whose colour region was never fitted.
    """
    frame = ensure_rgb_uint8(frame, "frame")
    spec = spec or default_spec(3)
    working, scale = to_working_size(frame, spec.work_long_side)
    photographed, unusual_light = clamp_colour(working, spec.colour)
    hairless, hair = hair_mask(photographed, spec)
    segmentation = segment_lesion(hairless, spec.segment)
    roi = square_roi(photographed.shape[:2], segmentation.box, spec.crop)
    model_input = crop_and_resize(photographed, roi, spec.input_size)
    shape = frame.shape[:2]
    lesion = segmentation.box
    return Preprocessed(
        model_input=model_input,
        roi_box=to_frame_box(roi, scale, shape),
        lesion_box=None if lesion is None else to_frame_box(lesion, scale, shape),
        mask=segmentation.mask,
        hair_fraction=float(hair.mean()),
        unusual_light=bool(unusual_light),
    )
