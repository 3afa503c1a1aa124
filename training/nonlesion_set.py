"""A set of photos that show no skin lesion, to check the device never says "Monitor" on one.

Categories (``CATEGORIES``), each drawn at 640x480 like a dermoscope frame:

* ``skin``: HAM10000 skin away from the lesion: the largest 4:3 patch of an image
  that its expert mask (dilated) does not touch, resized to the frame as a capture is.
* ``ink``: pen and marker strokes on such a patch (black, blue, violet, green, red).
* ``tattoo``: tattoo-like line art and filled shapes, ink blurred under the skin.
* ``plaster``: a beige sticking plaster with its white pad and rows of holes.
* ``text``: words written on the skin with a pen.
* ``fabric``: a synthetic woven textile filling the frame.
* ``phantom``: the simulator's drawn photos (:mod:`device.phantoms`).
* ``ink_ellipse``: a filled blue ink ellipse on skin.

Each image belongs to a ``portion``: even indices "train", odd ones "test". The skin
of a training image comes from an image of HAM10000's training split, that of a test
image from its validation and test splits. Thresholds are calibrated on the training
portion only; the test portion is reported (docs/quality-gate.md). ``--seed`` draws
another set: the reported one is ``--seed 1``.

The HAM10000 split is the project's lesion-grouped split with seed 0
(:func:`training.data.grouped_split`), the HAM10000 part of the shipped v6 bundle's
split (v6 kept v3's seed-0 split image for image); it is written as ``ham_split.csv``.

    python -m training.nonlesion_set OUT --data /path/to/ham10000 [--per-category 80]

HAM10000: Tschandl, Rosendahl & Kittler, Scientific Data 5, 180161 (2018), CC BY-NC 4.0.
"""

from __future__ import annotations

import argparse
import csv
import logging
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from device.errors import DatasetError

log = logging.getLogger(__name__)

FRAME = (640, 480)  # width, height
CATEGORIES = ("skin", "ink", "tattoo", "plaster", "text", "fabric", "phantom", "ink_ellipse")
INDEX_FILE = "index.csv"
SPLIT_FILE = "ham_split.csv"
# Dilation of the expert mask before looking for lesion-free skin, as a share of the
# image width: the faint border of a lesion is often outside its mask.
MASK_MARGIN = 0.04
# Patch widths tried, largest first, as shares of the image width.
PATCH_WIDTHS = (0.53, 0.47, 0.4, 0.33, 0.27, 0.21)

PEN_COLOURS = {
    "black": (30, 30, 38),
    "blue": (35, 55, 160),
    "violet": (95, 45, 145),
    "green": (25, 115, 70),
    "red": (175, 35, 45),
}
TATTOO_COLOURS = ((40, 50, 75), (30, 75, 65), (150, 35, 45), (25, 25, 30))


def skin_patch(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """The largest lesion-free, well exposed 4:3 patch of ``image`` at the frame size, or None."""
    height, width = mask.shape
    margin = max(1, round(MASK_MARGIN * width))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1,) * 2)
    lesion = cv2.dilate((mask > 0).astype(np.uint8), kernel)
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    dark = (grey < 45).astype(np.uint8)
    # Integral images: the lesion and dark pixels inside any rectangle in O(1).
    lesion_sum = cv2.integral(lesion)
    dark_sum = cv2.integral(dark)
    step = max(1, width // 60)
    for share in PATCH_WIDTHS:
        patch_w = round(share * width)
        patch_h = patch_w * 3 // 4
        if patch_w > width or patch_h > height:
            continue
        found = []
        for y in range(0, height - patch_h + 1, step):
            for x in range(0, width - patch_w + 1, step):
                y1, x1 = y + patch_h, x + patch_w
                inside = (
                    lesion_sum[y1, x1] - lesion_sum[y, x1] - lesion_sum[y1, x] + lesion_sum[y, x]
                )
                shadow = dark_sum[y1, x1] - dark_sum[y, x1] - dark_sum[y1, x] + dark_sum[y, x]
                if inside == 0 and shadow <= 0.01 * patch_w * patch_h:
                    found.append((x, y))
        if found:
            x, y = found[int(rng.integers(len(found)))]
            patch = image[y : y + patch_h, x : x + patch_w]
            return cv2.resize(patch, FRAME, interpolation=cv2.INTER_LINEAR)
    return None


def _curve(rng: np.random.Generator, length: float) -> np.ndarray:
    """A smooth random stroke (a quadratic Bezier) inside the frame, (N, 2) int32."""
    width, height = FRAME
    start = rng.uniform([0.1 * width, 0.1 * height], [0.9 * width, 0.9 * height])
    angle = rng.uniform(0, 2 * np.pi)
    end = start + length * np.array([np.cos(angle), np.sin(angle)])
    control = (start + end) / 2 + rng.normal(0, length / 3, 2)
    t = np.linspace(0, 1, 40)[:, None]
    points = (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end
    return points.astype(np.int32)


def _blend(base: np.ndarray, layer: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    out = base.astype(np.float32) * (1 - alpha[..., None]) + layer * alpha[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)


def _paint(
    skin: np.ndarray,
    colour: tuple[int, int, int],
    draw: Callable[[np.ndarray], None],
    opacity: float,
    blur: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Draw with ``draw`` on a coverage mask and lay ``colour`` over the skin through it."""
    coverage = np.zeros(skin.shape[:2], np.uint8)
    draw(coverage)
    alpha = coverage.astype(np.float32) / 255.0
    if blur > 0:
        alpha = cv2.GaussianBlur(alpha, (0, 0), blur)
    grain = 1.0 + rng.normal(0, 0.06, alpha.shape).astype(np.float32)
    ink = np.ones_like(skin, np.float32) * np.array(colour, np.float32)
    # Ink takes on some of the skin's shading (pigment, not paint).
    ink *= (skin.astype(np.float32).mean(axis=2, keepdims=True) / 190.0) ** 0.5
    return _blend(skin, ink, np.clip(alpha * opacity * grain, 0, 1))


def draw_ink(skin: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pen or marker strokes: scribbles, a circle round a spot, dots."""
    name = list(PEN_COLOURS)[int(rng.integers(len(PEN_COLOURS)))]
    thickness = int(rng.integers(2, 8))

    def draw(cov: np.ndarray) -> None:
        for _ in range(int(rng.integers(1, 5))):
            shape = rng.integers(3)
            if shape == 0:
                cv2.polylines(cov, [_curve(rng, rng.uniform(120, 500))], False, 255, thickness)
            elif shape == 1:
                centre = tuple(int(v) for v in rng.uniform([200, 150], [440, 330]))
                axes = tuple(int(v) for v in rng.uniform(30, 130, 2))
                cv2.ellipse(cov, centre, axes, rng.uniform(0, 180), 0, 360, 255, thickness)
            else:
                for _ in range(int(rng.integers(1, 6))):
                    centre = tuple(int(v) for v in rng.uniform([100, 80], [540, 400]))
                    cv2.circle(cov, centre, int(rng.integers(3, 9)), 255, -1)

    return _paint(skin, PEN_COLOURS[name], draw, rng.uniform(0.75, 0.95), 0.8, rng)


def _star(centre: np.ndarray, radius: float, points: int, turn: float) -> np.ndarray:
    angles = turn + np.arange(2 * points) * np.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, radius, radius * 0.45)
    return (centre + np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1)).astype(np.int32)


def _heart(centre: np.ndarray, size: float) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 80)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return (centre + size / 16 * np.stack([x, y], 1)).astype(np.int32)


def draw_tattoo(skin: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Tattoo-like art: stars, hearts, rings, tribal strokes; outlined or filled."""
    colour = TATTOO_COLOURS[int(rng.integers(len(TATTOO_COLOURS)))]
    centre = rng.uniform([220, 160], [420, 320])
    size = rng.uniform(80, 200)
    kind = int(rng.integers(4))
    filled = bool(rng.uniform() < 0.4)
    thickness = -1 if filled else int(rng.integers(4, 12))

    def draw(cov: np.ndarray) -> None:
        if kind == 0:
            shape = _star(centre, size, int(rng.integers(5, 8)), rng.uniform(0, np.pi))
            cv2.polylines(cov, [shape], True, 255, max(thickness, 1)) if not filled else (
                cv2.fillPoly(cov, [shape], 255)
            )
        elif kind == 1:
            shape = _heart(centre, size)
            cv2.polylines(cov, [shape], True, 255, max(thickness, 1)) if not filled else (
                cv2.fillPoly(cov, [shape], 255)
            )
        elif kind == 2:
            for ring in range(int(rng.integers(2, 5))):
                radius = int(size * (1 - 0.25 * ring))
                cv2.circle(
                    cov, tuple(int(v) for v in centre), radius, 255, int(rng.integers(4, 10))
                )
        else:
            for _ in range(int(rng.integers(3, 7))):
                spike = _curve(rng, rng.uniform(150, 400))
                widths = np.linspace(14, 2, len(spike) - 1)
                for segment, stroke in enumerate(widths):
                    cv2.line(
                        cov, tuple(spike[segment]), tuple(spike[segment + 1]), 255, int(stroke)
                    )

    return _paint(skin, colour, draw, rng.uniform(0.6, 0.9), rng.uniform(1.0, 2.5), rng)


def draw_plaster(skin: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A sticking plaster: a rounded beige strip, a paler pad in its middle, rows of holes."""
    width, height = FRAME
    strip_w, strip_h = rng.uniform(500, 900), rng.uniform(160, 300)
    centre = np.array([width / 2, height / 2]) + rng.uniform(-60, 60, 2)
    angle = rng.uniform(-40, 40)
    canvas_h, canvas_w = int(strip_h), int(strip_w)
    beige = np.array([226, 188, 160], np.float32) * rng.uniform(0.9, 1.05, 3)
    pad = np.array([243, 238, 228], np.float32) * rng.uniform(0.95, 1.0)
    tile = np.ones((canvas_h, canvas_w, 3), np.float32) * beige
    tile += cv2.GaussianBlur(rng.normal(0, 5, (canvas_h, canvas_w)).astype(np.float32), (0, 0), 1)[
        ..., None
    ]
    pad_w = int(canvas_w * rng.uniform(0.25, 0.4))
    x0 = (canvas_w - pad_w) // 2
    tile[int(canvas_h * 0.12) : int(canvas_h * 0.88), x0 : x0 + pad_w] = pad
    spacing = int(rng.integers(12, 22))
    for y in range(spacing // 2, canvas_h, spacing):
        for x in range(spacing // 2, canvas_w, spacing):
            if not x0 <= x < x0 + pad_w:
                cv2.circle(tile, (x, y), int(rng.integers(1, 3)), (150, 115, 95), -1)
    shape = np.zeros((canvas_h, canvas_w), np.uint8)
    cv2.rectangle(shape, (0, 0), (canvas_w - 1, canvas_h - 1), 255, -1)
    corner = canvas_h // 3
    for cx in (corner, canvas_w - corner):
        for cy in (corner, canvas_h - corner):
            cv2.circle(shape, (cx, cy), corner, 255, -1)
    corners = np.zeros_like(shape)
    cv2.rectangle(corners, (corner, 0), (canvas_w - corner, canvas_h), 255, -1)
    cv2.rectangle(corners, (0, corner), (canvas_w, canvas_h - corner), 255, -1)
    for cx in (corner, canvas_w - corner):
        for cy in (corner, canvas_h - corner):
            cv2.circle(corners, (cx, cy), corner, 255, -1)
    rotation = cv2.getRotationMatrix2D((canvas_w / 2, canvas_h / 2), angle, 1.0)
    rotation[:, 2] += centre - np.array([canvas_w / 2, canvas_h / 2])
    placed = cv2.warpAffine(tile, rotation, FRAME, flags=cv2.INTER_LINEAR)
    alpha = cv2.warpAffine(corners.astype(np.float32) / 255, rotation, FRAME) * 0.97
    # A soft shadow along the plaster's edge.
    shadow = cv2.GaussianBlur(alpha, (0, 0), 4) - alpha
    darker = skin.astype(np.float32) * (1 - 0.35 * np.clip(shadow, 0, 1)[..., None])
    return _blend(darker.astype(np.uint8), placed, alpha)


WORDS = ("L arm", "R leg", "mole?", "03/12", "OK", "x2", "bx", "see Dr", "ABC", "left", "#4")


def draw_text(skin: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One to three words written with a pen."""
    name = list(PEN_COLOURS)[int(rng.integers(len(PEN_COLOURS)))]
    fonts = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX)

    def draw(cov: np.ndarray) -> None:
        for line in range(int(rng.integers(1, 4))):
            word = WORDS[int(rng.integers(len(WORDS)))]
            scale = rng.uniform(1.2, 3.0)
            origin = (int(rng.uniform(40, 260)), int(150 + line * 110 + rng.uniform(-20, 20)))
            cv2.putText(
                cov, word, origin, fonts[int(rng.integers(len(fonts)))], scale, 255,
                int(rng.integers(2, 7)), cv2.LINE_AA,
            )  # fmt: skip

    return _paint(skin, PEN_COLOURS[name], draw, rng.uniform(0.75, 0.95), 0.7, rng)


FABRIC_COLOURS = ((60, 80, 130), (150, 150, 155), (200, 180, 150), (140, 40, 50), (50, 100, 60))


def draw_fabric(rng: np.random.Generator) -> np.ndarray:
    """A plain or twill weave: rounded threads over and under, with slub and fuzz."""
    width, height = FRAME
    period = rng.uniform(6, 18)
    angle = rng.uniform(0, np.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    u = (xs * np.cos(angle) + ys * np.sin(angle)) / period
    v = (-xs * np.sin(angle) + ys * np.cos(angle)) / period
    twill = int(rng.integers(1, 3))
    over = ((np.floor(u) + twill * np.floor(v)).astype(int) % (twill + 1)) == 0
    warp = np.cos(np.pi * (u - np.floor(u) - 0.5)) ** 0.6
    weft = np.cos(np.pi * (v - np.floor(v) - 0.5)) ** 0.6
    shade = np.where(over, warp, weft)
    base = np.array(FABRIC_COLOURS[int(rng.integers(len(FABRIC_COLOURS)))], np.float32)
    second = base * rng.uniform(0.7, 1.1)
    colour = np.where(over[..., None], base, second)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), 2)
    image = colour * (0.45 + 0.6 * shade[..., None]) * (1 + 0.08 * noise[..., None])
    return np.clip(image, 0, 255).astype(np.uint8)


def draw_ink_ellipse(skin: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A filled blue ink ellipse near the centre, a little patchy as marker ink is."""
    centre = tuple(int(v) for v in rng.uniform([260, 190], [380, 290]))
    axes = (int(rng.uniform(40, 120)), int(rng.uniform(30, 90)))
    colour = (int(rng.uniform(20, 60)), int(rng.uniform(40, 90)), int(rng.uniform(140, 200)))

    def draw(cov: np.ndarray) -> None:
        cv2.ellipse(cov, centre, axes, rng.uniform(0, 180), 0, 360, 255, -1)

    return _paint(skin, colour, draw, rng.uniform(0.8, 0.95), 1.2, rng)


def draw_phantom(seed: int) -> np.ndarray:
    """One of the simulator's drawn photos: a lesion kind of make_lesion, or make_phantom."""
    from device.phantoms import LESION_KINDS, make_lesion, make_phantom

    kinds = (*LESION_KINDS, "phantom", "no_lesion")
    kind = kinds[seed % len(kinds)]
    flipped = FRAME[1], FRAME[0]
    if kind in LESION_KINDS:
        return make_lesion(seed // len(kinds), kind, size=flipped).image
    fault = "no_lesion" if kind == "no_lesion" else None
    return make_phantom(seed // len(kinds), size=flipped, fault=fault).image


def _read_rgb(path: Path) -> np.ndarray | None:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def ham_split(data_dir: Path) -> dict[str, str]:
    """HAM10000's lesion-grouped seed-0 split (image_id -> train/val/test) and its CSV rows."""
    from training.data import grouped_split, load_metadata

    samples, _ = load_metadata(data_dir)
    return grouped_split(samples, seed=0), samples  # type: ignore[return-value]


def generate(
    out_dir: Path, data_dir: Path, per_category: int = 80, seed: int = 0
) -> dict[str, int]:
    """Write the non-lesion set: ``out_dir/<category>/<id>.png``, index.csv and ham_split.csv.

    ``per_category`` images per category, half from each portion (train/test).

    Returns:
        category -> images written.

    Raises:
        DatasetError: the HAM10000 folder lacks its images or masks.
    """
    from training.data import write_split_csv

    masks = data_dir / "masks"
    if not masks.is_dir():
        raise DatasetError(f"{masks}: no HAM10000 segmentation masks (masks/<id>_segmentation.png)")
    assignment, samples = ham_split(data_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_split_csv(out_dir / SPLIT_FILE, samples, assignment)
    rng = np.random.default_rng(seed)
    by_portion = {
        portion: sorted(
            s.image_id
            for s in samples
            if (assignment[s.image_id] == "train") == (portion == "train")
        )
        for portion in ("train", "test")
    }
    for ids in by_portion.values():
        rng.shuffle(ids)
    cursor = dict.fromkeys(by_portion, 0)

    def next_skin(portion: str) -> tuple[str, np.ndarray]:
        ids = by_portion[portion]
        while cursor[portion] < len(ids):
            image_id = ids[cursor[portion]]
            cursor[portion] += 1
            image = _read_rgb(data_dir / "images" / f"{image_id}.jpg")
            mask = cv2.imread(str(masks / f"{image_id}_segmentation.png"), cv2.IMREAD_GRAYSCALE)
            if image is None or mask is None or mask.shape != image.shape[:2]:
                continue
            patch = skin_patch(image, mask, rng)
            if patch is not None:
                return image_id, patch
        raise DatasetError(f"ran out of HAM10000 images with lesion-free skin ({portion})")

    on_skin = {
        "ink": draw_ink, "tattoo": draw_tattoo, "plaster": draw_plaster, "text": draw_text,
        "ink_ellipse": draw_ink_ellipse,
    }  # fmt: skip
    rows, counts = [], {}
    for category in CATEGORIES:
        (out_dir / category).mkdir(exist_ok=True)
        for index in range(per_category):
            portion = "train" if index % 2 == 0 else "test"
            if category == "fabric":
                source, image = f"seed{index}", draw_fabric(rng)
            elif category == "phantom":
                source, image = f"seed{index}", draw_phantom(index)
            else:
                source, image = next_skin(portion)
                if category in on_skin:
                    image = on_skin[category](image, rng)
            image_id = f"{category}_{index:04d}"
            path = out_dir / category / f"{image_id}.png"
            cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            rows.append((image_id, category, portion, source, f"{category}/{image_id}.png"))
        counts[category] = per_category
        log.info("%s: %d images", category, per_category)
    with (out_dir / INDEX_FILE).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("image_id", "category", "portion", "source", "file"))
        writer.writerows(rows)
    return counts


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m training.nonlesion_set OUT --data HAM10000``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="folder to write (not committed)")
    parser.add_argument(
        "--data", type=Path, required=True, help="HAM10000 folder (images/, masks/)"
    )
    parser.add_argument("--per-category", type=int, default=80, help="images per category")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    counts = generate(args.out, args.data, args.per_category, args.seed)
    print(f"wrote {sum(counts.values())} images to {args.out}: {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
