"""Frame -> model input: the deterministic preprocessing shared by device and training.

Steps: scale the frame so its long side is ``work_long_side``, find and remove
hair there, segment the lesion, choose a square ROI around it, and resize to the
model input. The spec travels in the model bundle's manifest, so the device
always preprocesses the way the model was trained.

Three versions exist. Version 1 cropped the ROI from the working image (long
side ``work_long_side``) after inpainting hair in it. Version 2 cropped the ROI
from the full-resolution frame and inpainted the hair mask there. Version 3
still removes hair, but only so that segmentation finds the lesion and not the
hair; it crops the *un-inpainted* working image:

- In a controlled ablation (training/reports/gpu-proxy/) inpainting the model
  input cost about 5 points of validation balanced accuracy over 5 seeds: the CNN
  learns to ignore hair it also sees in training, while inpainting smears lesion
  texture (dermatofibroma suffered most).
- The training images (the HAM10000 copies used here) are 200x150, so the model
  only ever learns from crops of a 200 px image. Cropping a device frame at full
  resolution would show the model sharper detail than it was trained on; cropping
  the working image gives device frames the training images' level of detail.

Version 4 is version 3 made robust to the acquisition: Shades-of-Gray colour
constancy on the working image (:mod:`device.imaging.colour`) before anything
else looks at it, so another camera's colour balance reaches the model
normalised; and a crop that follows the lesion's size within [0.8, 1.5] x the
short side, padded by reflection past the frame, so a lesion photographed from
closer or further away fills a similar share of the model input, and a lesion
that touches the border keeps its whole extent.

Version 6 keeps version 3's geometry and clamps the colour instead of normalising
it: a frame whose Shades-of-Gray illuminant lies inside the range of the training
images' illuminants is left exactly as photographed, and one outside that range
is relit to its nearest edge (:class:`device.imaging.colour.IlluminantRegion`).
A model trained on the archive's own colours keeps its in-distribution inputs,
and a camera with a cast the archive never had is brought back into it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import cv2
import numpy as np

from device.errors import ConfigError
from device.imaging.colour import NO_COLOUR_CONSTANCY, ColourParams, apply_gains, colour_correction
from device.imaging.hair import HairParams, remove_hair
from device.imaging.roi import Box, CropParams, crop_and_resize, square_roi
from device.imaging.segment import SegmentParams, segment_lesion
from device.imaging.validate import ensure_rgb_uint8

SPEC_VERSION = 5
SUPPORTED_VERSIONS = (1, 2, 3, 4, 5, 6)


RESIZE_RULES = {
    1: (
        "scale long side to work_long_side (INTER_AREA down, INTER_LINEAR up); square crop "
        "around the lesion box with margin, clamped to [min_fraction, 1] x short side and "
        "kept inside the image; resize to input_size (INTER_AREA down, INTER_LINEAR up); RGB "
        "uint8, no normalisation (the model normalises)"
    ),
    2: (
        "find hair and the lesion box on the frame scaled to work_long_side; square crop of "
        "the full-resolution frame around the lesion box with margin, clamped to "
        "[min_fraction, 1] x short side and kept inside the frame; resize to input_size "
        "(INTER_AREA down, INTER_LINEAR up); inpaint the hair mask mapped into the crop "
        "(nearest neighbour; Telea with inpaint_radius in model-input pixels); RGB uint8, no "
        "normalisation (the model normalises)"
    ),
    3: (
        "scale the frame so its long side is work_long_side (INTER_AREA down, INTER_LINEAR "
        "up; the training images' resolution); find hair there and segment the hair-removed "
        "copy; square crop of the un-inpainted working image around the lesion box with "
        "margin, clamped to [min_fraction, 1] x short side and kept inside the image; resize "
        "to input_size (INTER_AREA down, INTER_LINEAR up); RGB uint8, no normalisation (the "
        "model normalises)"
    ),
    4: (
        "scale the frame so its long side is work_long_side (INTER_AREA down, INTER_LINEAR "
        "up); divide out the Shades-of-Gray illuminant estimate (colour; dark and clipped "
        "pixels ignored, gains clamped); find hair there and segment the hair-removed copy; "
        "square crop of the colour-normalised, un-inpainted working image around the lesion "
        "box with margin, clamped to [min_fraction, max_fraction] x short side, shifted "
        "inside the image where it fits and padded by reflection where it does not; resize "
        "to input_size (INTER_AREA down, INTER_LINEAR up); RGB uint8, no normalisation (the "
        "model normalises)"
    ),
    5: (
        "as version 4, except that the Shades-of-Gray illuminant estimate is mapped to "
        "colour.reference (the training images' mean illuminant chromaticity) instead of "
        "neutral grey, the estimate's brightness kept; the crop follows the crop "
        "parameters (max_fraction 1: kept inside the image, as version 3)"
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


@dataclass(frozen=True)
class PreprocessSpec:
    """Everything that determines the model input for a frame.

    Attributes:
        version: version of this preprocessing algorithm.
        input_size: side of the square RGB uint8 model input.
        work_long_side: long side of the working image where hair and lesion are found
            (and, in versions 1 and 3, where the ROI is cropped: the training images'
            resolution).
        hair_removal: whether DullRazor hair removal runs (before segmentation; in
            versions 1 and 2 it also inpaints the model input).
        hair: hair removal parameters.
        segment: k-means segmentation parameters.
        crop: ROI crop parameters.
        colour: colour constancy on the working image (version 4; none before).
    """

    version: int = SPEC_VERSION
    input_size: int = 224
    work_long_side: int = 200
    hair_removal: bool = True
    hair: HairParams = field(default_factory=HairParams)
    segment: SegmentParams = field(default_factory=lambda: SegmentParams(min_contrast=8.0))
    crop: CropParams = field(
        default_factory=lambda: CropParams(margin=0.2, min_fraction=0.8, max_fraction=1.5)
    )
    colour: ColourParams = field(default_factory=ColourParams)

    def __post_init__(self) -> None:
        if self.version < 4 and (self.colour.method != "none" or self.crop.max_fraction != 1.0):
            raise ConfigError(
                f"preprocessing: version {self.version} has no colour constancy and no "
                "crop past the frame (use version 4)"
            )
        if self.version < 5 and self.colour.reference is not None:
            raise ConfigError(
                f"preprocessing: version {self.version} maps colour to neutral grey only; "
                "a colour reference needs version 5"
            )
        if self.colour.region is not None and self.version < 6:
            raise ConfigError(
                f"preprocessing: version {self.version} has no illuminant region; "
                "clamping the colour needs version 6"
            )
        if self.version >= 6 and self.colour.method == "none":
            raise ConfigError(
                "preprocessing: version 6 clamps the colour; it needs a colour method"
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; includes the resize rule in words for the manifest reader."""
        data = json.loads(json.dumps(asdict(self)))  # tuples (the colour reference) as lists
        data["resize_rule"] = RESIZE_RULES[self.version]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessSpec:
        """Build a spec from :meth:`to_dict` output. Raises ConfigError on unknown keys.

        Specs written before version 4 have no ``colour`` entry: they had none.
        """
        data = dict(data)
        if "colour" not in data:
            data["colour"] = asdict(NO_COLOUR_CONSTANCY)
        data.pop("resize_rule", None)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"preprocessing: unknown keys {unknown}")
        if data.get("version", SPEC_VERSION) not in SUPPORTED_VERSIONS:
            raise ConfigError(
                f"preprocessing.version: {data['version']} is not supported "
                f"(supported: {list(SUPPORTED_VERSIONS)})"
            )
        nested = {
            "hair": HairParams,
            "segment": SegmentParams,
            "crop": CropParams,
            "colour": ColourParams,
        }
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


def default_spec(version: int = SPEC_VERSION) -> PreprocessSpec:
    """The default spec of a version: what ``skinscan train`` used when it was current.

    Versions 1-3 had no colour constancy, no minimum lesion contrast and no crop
    past the frame; version 3's crop was the whole short side. Version 4 mapped the
    illuminant to neutral grey; version 5 maps it to a reference that training
    fits on its own training split (None here until then). Version 6 is version
    3's geometry with the colour clamped into a region training fits the same way.
    """
    if version not in SUPPORTED_VERSIONS:
        raise ConfigError(f"preprocessing.version: {version} is not supported")
    if version == 6:
        return PreprocessSpec(
            version=version, segment=SegmentParams(), crop=CropParams(margin=0.25, min_fraction=1.0)
        )
    if version >= 4:
        return PreprocessSpec(version=version)
    return PreprocessSpec(
        version=version,
        segment=SegmentParams(),
        crop=CropParams(margin=0.25, min_fraction=1.0),
        colour=NO_COLOUR_CONSTANCY,
    )


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
            nearly all of theirs (beyond the region's unusual radius; version 6 only);
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


def to_frame_box(box: Box, scale: float, shape: tuple[int, int], clamp: bool = True) -> Box:
    """Map a working-image box to frame coordinates (``scale`` frame px per working px).

    Clamped to the frame unless ``clamp`` is False (a crop padded past the frame).
    """
    height, width = shape
    x0, y0, x1, y1 = box
    if not clamp:
        return tuple(int(round(v * scale)) for v in box)  # type: ignore[return-value]
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
    photographed, scale = to_working_size(frame, spec.work_long_side)
    gains, unusual_light = colour_correction(photographed, spec.colour)
    photographed = apply_gains(photographed, gains)
    work = photographed
    hair = np.zeros(work.shape[:2], bool)
    if spec.hair_removal:
        removal = remove_hair(work, spec.hair)
        work, hair = removal.image, removal.mask
    segmentation = segment_lesion(work, spec.segment)
    shape = frame.shape[:2]
    lesion_box = None if segmentation.box is None else to_frame_box(segmentation.box, scale, shape)
    if spec.version != 2:
        roi = square_roi(work.shape[:2], segmentation.box, spec.crop)
        source = work if spec.version == 1 else photographed
        model_input = crop_and_resize(source, roi, spec.input_size)
        roi_box = to_frame_box(roi, scale, shape, clamp=spec.crop.max_fraction == 1.0)
    else:
        roi_box = square_roi(shape, lesion_box, spec.crop)
        model_input = crop_and_resize(frame, roi_box, spec.input_size)
        if hair.any():
            model_input = inpaint_hair_in_crop(model_input, hair, roi_box, scale, spec)
    return Preprocessed(
        model_input=model_input,
        roi_box=roi_box,
        lesion_box=lesion_box,
        mask=segmentation.mask,
        hair_fraction=float(hair.mean()),
        unusual_light=bool(unusual_light),
    )


def inpaint_hair_in_crop(
    model_input: np.ndarray, hair: np.ndarray, roi_box: Box, scale: float, spec: PreprocessSpec
) -> np.ndarray:
    """Inpaint, in a model input cropped at ``roi_box``, the hair found at working resolution.

    Args:
        model_input: the square crop of the frame, resized to ``spec.input_size``.
        hair: boolean hair mask of the working image.
        roi_box: the crop in frame coordinates.
        scale: frame pixels per working-image pixel.
        spec: the preprocessing spec (input size, inpainting radius).
    """
    x0, y0, x1, _ = (v / scale for v in roi_box)
    size = spec.input_size
    magnification = size / max(x1 - x0, 1e-6)
    # Maps model-input pixel centres back onto the working-resolution hair mask.
    to_work = np.array(
        [
            [1 / magnification, 0, x0 + 0.5 / magnification - 0.5],
            [0, 1 / magnification, y0 + 0.5 / magnification - 0.5],
        ],
        np.float64,
    )
    mask = cv2.warpAffine(
        hair.astype(np.uint8),
        to_work,
        (size, size),
        flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
    )
    if not mask.any():
        return model_input
    # The radius stays in model-input pixels: Telea fills inward from the mask's edge
    # either way, and a radius scaled with the crop cost 4x the time for no visible gain.
    return cv2.inpaint(model_input, mask, spec.hair.inpaint_radius, cv2.INPAINT_TELEA)
