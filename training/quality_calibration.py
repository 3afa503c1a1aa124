"""``skinscan calibrate-quality``: measure the quality gate's blur and colour limits on data.

Blur: a lesion-grouped sample of images (one image per lesion, lesions drawn with a
fixed seed) is blurred by known Gaussian sigmas, given in pixels at the gate's
analysis width (200 px), so a sigma means the same blur on a 600x450 HAM10000 image
as on a 1024x768 device still. Both blur measures of each copy are computed with
the gate's own code, and for each pair of limits the table gives the fraction of
sharp images refused and of blurred images accepted at each sigma; the sharp images
are also measured as the simulator shows them (resized to a 1024x768 still). The
chosen pair accepts the fewest images blurred by ``--target-sigma`` while refusing
at most ``--max-sharp-refused`` of the sharp ones.

Colour: the colourfulness of every image of the folder (all of them, not a sample)
is measured, with the fraction the limit would refuse; the sample is also
desaturated by known factors to show that grey and near-grey copies are refused.

The figures go into docs/quality-gate.md; the limits into device/config/default.toml.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

SIGMAS = (0.0, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
SATURATIONS = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0)
STILL_SIZE = (1024, 768)
SHARPNESS_GRID = (8.0, 10.0, 12.0, 14.0, 15.0, 16.0, 18.0, 20.0, 25.0)
REBLUR_GRID = (0.0, 0.3, 0.35, 0.4, 0.45)


@dataclass(frozen=True)
class BlurTable:
    """The gate's two blur measures for each sample image at each blur sigma.

    Attributes:
        sigmas: Gaussian sigmas in analysis pixels; 0 is the image as photographed.
        sharpness: variance of the Laplacian, (images, sigmas).
        reblur_loss: the contrast-free re-blur loss, (images, sigmas).
        still_sharpness, still_reblur_loss: the unblurred images as the simulator shows
            them, resized to a 1024x768 still first, (images,).
    """

    sigmas: tuple[float, ...]
    sharpness: np.ndarray
    reblur_loss: np.ndarray
    still_sharpness: np.ndarray
    still_reblur_loss: np.ndarray

    def refused(self, min_sharpness: float, min_reblur_loss: float) -> list[float]:
        """Fraction refused at each sigma, then (last) of the unblurred 1024x768 stills."""
        blurred = (self.sharpness < min_sharpness) | (self.reblur_loss < min_reblur_loss)
        stills = (self.still_sharpness < min_sharpness) | (self.still_reblur_loss < min_reblur_loss)
        return [float(np.mean(blurred[:, i])) for i in range(len(self.sigmas))] + [
            float(np.mean(stills))
        ]

    def choose_limits(
        self,
        max_sharp_refused: float,
        target_sigma: float,
        sharpness_grid: Sequence[float],
        reblur_grid: Sequence[float],
    ) -> tuple[float, float]:
        """The limit pair that accepts the fewest images blurred by ``target_sigma``
        while refusing at most ``max_sharp_refused`` of the unblurred images (as
        photographed and as 1024x768 stills); ties go to the pair refusing fewer
        sharp images, then to the lower limits.
        """
        sharp = self.sigmas.index(0.0)
        target = self.sigmas.index(target_sigma)
        best: tuple[tuple[float, float, float, float], tuple[float, float]] | None = None
        for low_sharpness in sharpness_grid:
            for low_loss in reblur_grid:
                refused = self.refused(low_sharpness, low_loss)
                false_refusal = max(refused[sharp], refused[-1])
                if false_refusal > max_sharp_refused:
                    continue
                key = (1 - refused[target], false_refusal, low_sharpness, low_loss)
                if best is None or key < best[0]:
                    best = (key, (float(low_sharpness), float(low_loss)))
        if best is None:
            raise ValueError("no limit pair refuses few enough sharp images")
        return best[1]


def lesion_sample(data_dir: str | Path, count: int, seed: int) -> list[Path]:
    """One image per lesion, for ``count`` lesions drawn with ``seed`` (sorted ids first)."""
    from training.data import load_metadata

    samples, _ = load_metadata(data_dir)
    first: dict[str, Path] = {}
    for sample in sorted(samples, key=lambda s: s.image_id):
        first.setdefault(sample.lesion_id, sample.path)
    lesions = sorted(first)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(lesions), size=min(count, len(lesions)), replace=False)
    return [first[lesions[i]] for i in sorted(chosen)]


def blur_copy(image: np.ndarray, sigma: float) -> np.ndarray:
    """``image`` blurred by ``sigma`` pixels *at the analysis width* (whatever its own size)."""
    from device.imaging.quality import ANALYSIS_WIDTH

    if sigma <= 0:
        return image
    return cv2.GaussianBlur(image, (0, 0), sigma * image.shape[1] / ANALYSIS_WIDTH)


def desaturate(image: np.ndarray, factor: float) -> np.ndarray:
    """Blend ``image`` with its own grey: factor 0 is greyscale, 1 the original."""
    grey = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    mixed = factor * image.astype(np.float32) + (1 - factor) * grey.astype(np.float32)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def _centre_grey(image: np.ndarray) -> np.ndarray:
    from device.imaging.quality import _centre, analysis_copy

    return _centre(cv2.cvtColor(analysis_copy(image), cv2.COLOR_RGB2GRAY))


def _measures(image: np.ndarray) -> tuple[float, float]:
    from device.imaging.quality import laplacian_variance, reblur_loss

    grey = _centre_grey(image)
    return laplacian_variance(grey), reblur_loss(grey)


def measure_blur(paths: Iterable[Path], sigmas: Sequence[float] = SIGMAS) -> BlurTable:
    """Both blur measures of each image at each sigma, and of each as a 1024x768 still."""
    from device.imaging.io import read_image

    sharpness, loss, still_sharpness, still_loss = [], [], [], []
    for path in paths:
        image = read_image(path)
        pairs = [_measures(blur_copy(image, sigma)) for sigma in sigmas]
        sharpness.append([p[0] for p in pairs])
        loss.append([p[1] for p in pairs])
        # The simulator resizes every image to the still size like this (camera_sim).
        still = cv2.resize(image, STILL_SIZE, interpolation=cv2.INTER_LINEAR)
        pair = _measures(still)
        still_sharpness.append(pair[0])
        still_loss.append(pair[1])
    return BlurTable(
        tuple(float(s) for s in sigmas),
        np.array(sharpness),
        np.array(loss),
        np.array(still_sharpness),
        np.array(still_loss),
    )


def measure_colour(paths: Iterable[Path]) -> np.ndarray:
    """The gate's colourfulness of each image, as read from disk."""
    from device.imaging.io import read_image
    from device.imaging.quality import analysis_copy, colourfulness

    return np.array([colourfulness(analysis_copy(read_image(p))) for p in paths])


def measure_desaturated(
    paths: Iterable[Path], factors: Sequence[float] = SATURATIONS
) -> np.ndarray:
    """Colourfulness of each image desaturated by each factor: (images, factors)."""
    from device.imaging.io import read_image
    from device.imaging.quality import analysis_copy, colourfulness

    rows = []
    for path in paths:
        image = analysis_copy(read_image(path))
        rows.append([colourfulness(desaturate(image, f)) for f in factors])
    return np.array(rows)


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def blur_markdown(table: BlurTable, pairs: Sequence[tuple[float, float]]) -> str:
    """A Markdown table: per limit pair, the fraction refused sharp and accepted blurred."""
    header = (
        "| min_sharpness | min_reblur_loss | sharp refused | "
        + " | ".join(f"σ {s:g} accepted" for s in table.sigmas if s > 0)
        + " | sharp 1024x768 still refused |"
    )
    lines = [header, "|" + " --- |" * (len(table.sigmas) + 3)]
    for low_sharpness, low_loss in pairs:
        refused = table.refused(low_sharpness, low_loss)
        cells = [_percent(refused[0])]
        cells += [_percent(1 - r) for s, r in zip(table.sigmas, refused, strict=False) if s > 0]
        cells.append(_percent(refused[-1]))
        lines.append(f"| {low_sharpness:g} | {low_loss:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def quantile_markdown(table: BlurTable) -> str:
    """The distribution (5th, 50th, 95th percentile) of both measures per sigma."""
    lines = [
        "| σ (analysis px) | sharpness p5 / p50 / p95 | reblur_loss p5 / p50 / p95 |",
        "| --- | --- | --- |",
    ]
    rows = [
        (f"{s:g}", table.sharpness[:, i], table.reblur_loss[:, i])
        for i, s in enumerate(table.sigmas)
    ]
    rows.append(("0, as a 1024x768 still", table.still_sharpness, table.still_reblur_loss))
    for name, sharp, loss in rows:
        a = np.percentile(sharp, [5, 50, 95])
        b = np.percentile(loss, [5, 50, 95])
        lines.append(
            f"| {name} | {a[0]:.3g} / {a[1]:.3g} / {a[2]:.3g} | "
            f"{b[0]:.3g} / {b[1]:.3g} / {b[2]:.3g} |"
        )
    return "\n".join(lines)


def colour_markdown(
    colour: np.ndarray, desaturated: np.ndarray, limits: Sequence[float], factors: Sequence[float]
) -> str:
    """The colour survey: refusals of the real images and of desaturated copies, per limit."""
    p = np.percentile(colour, [0, 0.1, 1, 50])
    lines = [
        f"All {len(colour)} images: colourfulness min {p[0]:.2f}, 0.1st percentile "
        f"{p[1]:.2f}, 1st percentile {p[2]:.2f}, median {p[3]:.2f}.",
        "",
        "| min_colourfulness | real images refused | "
        + " | ".join(f"saturation {f:g} refused" for f in factors)
        + " |",
        "|" + " --- |" * (len(factors) + 2),
    ]
    for limit in limits:
        cells = [f"{int(np.sum(colour < limit))} ({_percent(float(np.mean(colour < limit)))})"]
        cells += [_percent(float(np.mean(desaturated[:, i] < limit))) for i in range(len(factors))]
        lines.append(f"| {limit:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def configure(parser: argparse.ArgumentParser) -> None:
    """Register the calibrate-quality arguments."""
    parser.add_argument(
        "--data",
        required=True,
        help="dataset folder: HAM10000 layout (HAM10000_metadata.csv + images/) or an archive",
    )
    parser.add_argument("--count", type=int, default=500, help="lesions in the blur sample")
    parser.add_argument("--seed", type=int, default=0, help="seed of the lesion sample")
    parser.add_argument(
        "--max-sharp-refused",
        type=float,
        default=0.01,
        help="largest fraction of unblurred images the blur limits may refuse (default 0.01)",
    )
    parser.add_argument(
        "--target-sigma",
        type=float,
        default=1.5,
        help="the blur (sigma in 200 px analysis pixels) to refuse as often as possible",
    )
    parser.add_argument(
        "--colour-limit",
        type=float,
        help="colourfulness limit to report (default: the one in device/config/default.toml)",
    )
    parser.add_argument(
        "--skip-colour-survey",
        action="store_true",
        help="measure colour on the sample only, not on every image of the folder",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the raw figures as JSON")


def main(args: argparse.Namespace) -> int:
    """Measure, choose the blur limit and print the Markdown tables."""
    from device.config import load_config
    from training.data import load_metadata

    config = load_config(None, system_path=Path("/nonexistent"))
    colour_limit = (
        args.colour_limit if args.colour_limit is not None else config.quality.min_colourfulness
    )
    paths = lesion_sample(args.data, args.count, args.seed)
    table = measure_blur(paths)
    chosen = table.choose_limits(
        args.max_sharp_refused, args.target_sigma, SHARPNESS_GRID, REBLUR_GRID
    )
    pairs = [(low, 0.0) for low in (12.0, *SHARPNESS_GRID[3:])]
    pairs += [(0.0, low) for low in REBLUR_GRID[1:]]
    pairs += [(12.0, 0.4), chosen]
    if args.skip_colour_survey:
        colour_paths = paths
    else:
        colour_paths = [s.path for s in load_metadata(args.data)[0]]
    colour = measure_colour(colour_paths)
    desaturated = measure_desaturated(paths)
    print(f"## Blur: {len(paths)} lesions (one image each), seed {args.seed}\n")
    print(quantile_markdown(table), "\n")
    print(blur_markdown(table, pairs), "\n")
    print(
        f"chosen: min_sharpness = {chosen[0]:g}, min_reblur_loss = {chosen[1]:g} (fewest "
        f"accepted at σ {args.target_sigma:g} with at most {_percent(args.max_sharp_refused)} "
        "of sharp images refused)\n"
    )
    print("## Colour\n")
    limits = sorted({3.0, 4.0, 5.0, 6.0, 8.0, colour_limit})
    print(colour_markdown(colour, desaturated, limits, SATURATIONS))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "sigmas": list(table.sigmas),
                    "sharpness": table.sharpness.tolist(),
                    "reblur_loss": table.reblur_loss.tolist(),
                    "still_sharpness": table.still_sharpness.tolist(),
                    "still_reblur_loss": table.still_reblur_loss.tolist(),
                    "chosen": list(chosen),
                    "colourfulness": colour.tolist(),
                    "desaturated": desaturated.tolist(),
                    "saturations": list(SATURATIONS),
                }
            )
        )
    return 0
