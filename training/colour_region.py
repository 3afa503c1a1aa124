"""Spec v6 from a spec 3 bundle's preprocessing: the illuminant region fitted on training images.

Used by ``skinscan convert --clamp-colour`` (:mod:`conversion.clamp_colour`) and by the
study that chose the region's radius (``training/experiments/colour_clamp_study.py``).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from device.errors import SkinScanError
from device.imaging.colour import ColourParams, fit_region
from device.imaging.pipeline import PreprocessSpec


def clamped_spec(spec: dict[str, Any], working_images, quantile: float) -> PreprocessSpec:
    """``spec`` (version 3, no colour constancy) as version 6, region fitted on the images."""
    base = PreprocessSpec.from_dict(spec)
    if base.version != 3 or base.colour.method != "none":
        raise SkinScanError(
            f"colour clamping applies to spec version 3 bundles without colour constancy "
            f"(this one is version {base.version}, colour {base.colour.method!r})"
        )
    colour = ColourParams()
    reference, region = fit_region(working_images, colour, quantile)
    data = base.to_dict()
    data["version"] = 6
    data["colour"] = {**asdict(colour), "reference": list(reference), "region": asdict(region)}
    return PreprocessSpec.from_dict(data)
