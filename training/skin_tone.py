"""Skin tone of a dermoscopy image: the individual typology angle (ITA) of the skin around it.

ITA = arctan((L* - 50) / b*) in degrees, from the CIELAB lightness and yellow-blue axis
of the skin (Chardon et al. 1991; used for dermatology datasets by Kinyanjui et al.
2020). Higher is lighter. The usual six bands:

=================  ==============
band               ITA (degrees)
=================  ==============
very light         > 55
light              41 to 55
intermediate       28 to 41
tan                10 to 28
brown              -30 to 10
dark               < -30
=================  ==============

The skin is every pixel of the 200 px working copy outside the lesion (the device's
own k-means segmentation, grown by a margin), outside hair (DullRazor mask), outside
the dark vignette of the dermoscope and outside specular highlights; the median L*
and b* of those pixels give one angle per image. It is an estimate under each
archive's own lighting, not a Fitzpatrick type: it shows how little darker skin a
dataset holds, it is not a label of the patient.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from device.imaging.hair import remove_hair
from device.imaging.pipeline import to_working_size
from device.imaging.segment import segment_lesion

ITA_BANDS: tuple[tuple[str, float], ...] = (
    ("very light", 55.0),
    ("light", 41.0),
    ("intermediate", 28.0),
    ("tan", 10.0),
    ("brown", -30.0),
    ("dark", -math.inf),
)
MIN_SKIN_PIXELS = 200
WORK_LONG_SIDE = 200


@dataclass(frozen=True)
class SkinTone:
    """The skin-tone estimate of one image.

    Attributes:
        ita: individual typology angle in degrees, or nan when too little skin was found.
        band: its band name (:data:`ITA_BANDS`), or "unknown".
        skin_fraction: fraction of the working copy used as skin.
    """

    ita: float
    band: str
    skin_fraction: float


def ita_band(ita: float) -> str:
    """The band name of an ITA in degrees ("unknown" for nan)."""
    if not math.isfinite(ita):
        return "unknown"
    return next(name for name, low in ITA_BANDS if ita > low)


def ita_from_lab(lightness: float, b_star: float) -> float:
    """ITA in degrees from CIELAB L* (0-100) and b*; atan2 keeps b* near 0 defined."""
    return math.degrees(math.atan2(lightness - 50.0, b_star))


def skin_tone(image: np.ndarray, margin: int = 6) -> SkinTone:
    """Estimate the skin tone around the lesion of an RGB uint8 image.

    Args:
        image: RGB uint8 frame of any size.
        margin: pixels of the working copy by which the lesion mask is grown first.

    Returns:
        The :class:`SkinTone` estimate.
    """
    work, _ = to_working_size(image, WORK_LONG_SIDE)
    removal = remove_hair(work)
    segmentation = segment_lesion(removal.image)
    lesion = segmentation.mask.astype(np.uint8)
    if margin:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
        lesion = cv2.dilate(lesion, kernel)
    lab = cv2.cvtColor(work, cv2.COLOR_RGB2LAB).astype(np.float32)
    lightness = lab[..., 0] * (100.0 / 255.0)
    b_star = lab[..., 2] - 128.0
    # Vignette corners are dark and highlights are white whatever the skin: leave both out.
    usable = (lesion == 0) & ~removal.mask & (lightness > 15.0) & (lightness < 97.0)
    count = int(usable.sum())
    if count < MIN_SKIN_PIXELS:
        return SkinTone(float("nan"), "unknown", count / usable.size)
    angle = ita_from_lab(float(np.median(lightness[usable])), float(np.median(b_star[usable])))
    return SkinTone(angle, ita_band(angle), count / usable.size)


def band_table(bands_by_group: dict[str, Iterable[str]]) -> dict[str, dict[str, int]]:
    """Group -> band -> count, with every band (and "unknown") in the standard order."""
    names = [name for name, _ in ITA_BANDS] + ["unknown"]
    out: dict[str, dict[str, int]] = {}
    for group, bands in bands_by_group.items():
        counts = Counter(bands)
        out[group] = {name: counts.get(name, 0) for name in names}
    return out


def _tone_of_file(path: str) -> SkinTone:
    from device.errors import CorruptImageError
    from device.imaging.io import read_image

    try:
        return skin_tone(read_image(path))
    except CorruptImageError:
        return SkinTone(float("nan"), "unknown", 0.0)


def skin_tones(paths: Iterable[str], workers: int = 2) -> list[SkinTone]:
    """The skin tone of every image file, in order (unreadable files: "unknown")."""
    from concurrent.futures import ProcessPoolExecutor

    paths = [str(p) for p in paths]
    if workers <= 1:
        return [_tone_of_file(p) for p in paths]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_tone_of_file, paths, chunksize=64))


def markdown_band_table(table: dict[str, dict[str, int]], column: str = "source") -> str:
    """A Markdown table of :func:`band_table` output, with each band's share of the group."""
    bands = [name for name, _ in ITA_BANDS] + ["unknown"]
    lines = [
        f"| {column} | images | " + " | ".join(bands) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in bands) + " |",
    ]
    for group, counts in table.items():
        total = sum(counts.values())
        cells = [f"{counts[b]} ({100 * counts[b] / max(total, 1):.1f}%)" for b in bands]
        lines.append(f"| {group} | {total} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
