"""Lesion segmentation by k-means colour clustering in CIELAB.

The pixels of a downscaled, smoothed copy are clustered into ``k`` colours with a
deterministic k-means. Clusters closer to the darkest colour than to the skin
colour form the lesion. The connected component that is largest and most
central wins; components that live in the dark vignette corners of a
dermoscope image are discounted.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from device.imaging.validate import ensure_rgb_uint8


@dataclass(frozen=True)
class SegmentParams:
    """Parameters of k-means lesion segmentation.

    Attributes:
        k: number of colour clusters.
        width: width of the copy that is clustered (speed; the mask is upscaled).
        iterations: k-means iterations (fixed count, so run time is bounded).
        min_area: smallest lesion, as a fraction of the image, before falling back.
        blur: Gaussian blur sigma, in pixels of the clustered copy.
        lesion_bias: a cluster joins the lesion when its distance to the darkest
            colour is below ``lesion_bias`` x its distance to the skin colour.
        grow: dilation of the final mask, in pixels of the clustered copy; expert
            masks include the faint lesion border that clustering leaves out.
    """

    k: int = 2
    width: int = 80
    iterations: int = 12
    min_area: float = 0.01
    blur: float = 1.5
    lesion_bias: float = 1.0
    grow: int = 2


@dataclass(frozen=True)
class Segmentation:
    """A lesion mask at the input's size and its bounding box (x0, y0, x1, y1), or none."""

    mask: np.ndarray
    box: tuple[int, int, int, int] | None

    @property
    def found(self) -> bool:
        """True when a lesion was found."""
        return self.box is not None


def kmeans(points: np.ndarray, k: int, iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic k-means: centres start at quantiles of the first feature.

    Returns:
        (labels, centres) with labels of shape (n,) and centres of shape (k, d).
    """
    order = np.argsort(points[:, 0], kind="stable")
    starts = ((np.arange(k) + 0.5) / k * len(points)).astype(int)
    centres = points[order[starts]].astype(np.float32)
    labels = np.zeros(len(points), dtype=np.int64)
    squared_norms = (points**2).sum(axis=1)
    for _ in range(iterations):
        # |p - c|^2 = |p|^2 - 2 p.c + |c|^2, as one matrix product.
        distances = squared_norms[:, None] - 2 * points @ centres.T + (centres**2).sum(axis=1)
        new_labels = distances.argmin(axis=1)
        counts = np.bincount(new_labels, minlength=k)
        for dim in range(points.shape[1]):
            sums = np.bincount(new_labels, weights=points[:, dim], minlength=k)
            centres[:, dim] = np.where(counts > 0, sums / np.maximum(counts, 1), centres[:, dim])
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
    return labels, centres


def _corner_weight(height: int, width: int) -> np.ndarray:
    """1 inside the inscribed ellipse, falling to 0 in the corners where vignetting lives."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    radius = np.sqrt(((xs + 0.5) / width - 0.5) ** 2 + ((ys + 0.5) / height - 0.5) ** 2) * 2
    return np.clip(1.6 - radius, 0.0, 1.0) / 0.6


def segment_lesion(image: np.ndarray, params: SegmentParams | None = None) -> Segmentation:
    """Segment the lesion in an RGB uint8 image.

    Returns a Segmentation whose box is None when no lesion larger than
    ``min_area`` is found; the caller then falls back to a centre crop.
    """
    image = ensure_rgb_uint8(image)
    params = params or SegmentParams()
    height, width = image.shape[:2]
    small_h = max(8, round(height * params.width / width))
    small = cv2.resize(image, (params.width, small_h), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), params.blur)
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float32)
    labels, centres = kmeans(lab, params.k, params.iterations)

    weight = _corner_weight(small_h, params.width).reshape(-1)
    # Skin is the brightest cluster among those well represented away from the corners.
    central_share = np.array([weight[labels == i].sum() for i in range(params.k)])
    candidates = np.flatnonzero(central_share >= 0.1 * central_share.max())
    skin = candidates[np.argmax(centres[candidates, 0])]
    darkest = int(np.argmin(centres[:, 0]))
    if skin == darkest:
        return _empty(height, width)
    to_dark = np.linalg.norm(centres - centres[darkest], axis=1)
    to_skin = np.linalg.norm(centres - centres[skin], axis=1)
    lesion_clusters = np.flatnonzero(to_dark < params.lesion_bias * to_skin)
    mask = np.isin(labels, lesion_clusters).reshape(small_h, params.width).astype(np.uint8)

    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel, iterations=2)
    count, component, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return _empty(height, width)
    weight_map = weight.reshape(small_h, params.width)
    scores = np.zeros(count)
    for index in range(1, count):
        area = stats[index, cv2.CC_STAT_AREA]
        if area < params.min_area * mask.size:
            continue
        scores[index] = weight_map[component == index].sum()
    best = int(np.argmax(scores))
    if scores[best] <= 0:
        return _empty(height, width)
    lesion = _fill_holes((component == best).astype(np.uint8))
    if params.grow:
        size = 2 * params.grow + 1
        lesion = cv2.dilate(lesion, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
    full = cv2.resize(lesion, (width, height), interpolation=cv2.INTER_LINEAR) > 0
    ys, xs = np.nonzero(full)
    if len(xs) == 0:
        return _empty(height, width)
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    return Segmentation(mask=full, box=box)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(mask)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    return filled


def _empty(height: int, width: int) -> Segmentation:
    return Segmentation(mask=np.zeros((height, width), dtype=bool), box=None)


def dice(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Dice coefficient of two boolean masks (1.0 when both are empty)."""
    predicted = predicted.astype(bool)
    truth = truth.astype(bool)
    total = predicted.sum() + truth.sum()
    if total == 0:
        return 1.0
    return float(2.0 * np.logical_and(predicted, truth).sum() / total)


def iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    predicted = predicted.astype(bool)
    truth = truth.astype(bool)
    union = np.logical_or(predicted, truth).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(predicted, truth).sum() / union)
