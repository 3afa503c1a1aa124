"""Grad-CAM on the device, from the precomputed gradient submodel ``gradcam.tflite``.

TFLite cannot differentiate at run time, so conversion traced the gradient of
the chosen class's logit with respect to the last conv feature map and
converted it into a small model: (feature map, class one-hot) -> (channel
weights, ReLU'd CAM). Here we run it, normalise the CAM to [0, 1] and upsample
it smoothly to the image. For display, :func:`overlay` blends a perceptually
uniform colormap (viridis) over the image.

A site-adapted bundle has a new GAP -> Dense head (:class:`LinearHead`). For such a
head the gradient of logit c with respect to the feature map is ``W[:, c] / (H*W)``
at every position, so its Grad-CAM needs no gradient model: the channel weights are
the adapted column, computed here in numpy. Then the heatmap explains the adapted
decision, not the base head's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from device.errors import ImageError, TensorMismatchError
from device.runtime.classifier import LinearHead
from device.runtime.interpreter import TfliteModel
from device.runtime.manifest import GradcamSpec, match_tensor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GradCam:
    """A Grad-CAM explanation of one class at feature-map resolution.

    Attributes:
        class_index: the explained class.
        weights: channel weights (mean gradient of the logit), float32, shape (C,).
        cam: ``ReLU(sum_c weights[c] * A[..., c])``, float32, shape (H, W).
        heatmap: ``cam`` divided by its maximum, in [0, 1]; all zeros when the
            CAM is zero everywhere (no positive evidence for the class).
    """

    class_index: int
    weights: np.ndarray
    cam: np.ndarray
    heatmap: np.ndarray

    def upsampled(self, height: int, width: int) -> np.ndarray:
        """The heatmap resized smoothly to ``height x width``, float32 in [0, 1]."""
        return upsample(self.heatmap, height, width)


def normalize_cam(cam: np.ndarray) -> np.ndarray:
    """Scale a non-negative CAM to [0, 1] by its maximum (zeros stay zeros)."""
    cam = np.maximum(np.asarray(cam, dtype=np.float32), 0.0)
    peak = float(cam.max()) if cam.size else 0.0
    if not np.isfinite(peak) or peak <= 0.0:
        return np.zeros_like(cam)
    return cam / peak


def upsample(heatmap: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a [0, 1] map to ``height x width`` with bicubic interpolation.

    Bicubic overshoots slightly at sharp edges, so the result is clipped back to [0, 1].
    """
    out = cv2.resize(
        np.asarray(heatmap, dtype=np.float32),
        (int(width), int(height)),
        interpolation=cv2.INTER_CUBIC,
    )
    return np.clip(out, 0.0, 1.0)


def colorize(heatmap: np.ndarray) -> np.ndarray:
    """Map a [0, 1] heatmap to RGB uint8 with the viridis colormap.

    Viridis is perceptually uniform and readable by colour-blind users, unlike jet.
    """
    levels = np.round(np.clip(np.asarray(heatmap, dtype=np.float32), 0.0, 1.0) * 255.0)
    bgr = cv2.applyColorMap(levels.astype(np.uint8), cv2.COLORMAP_VIRIDIS)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """Blend the colourised heatmap over an RGB uint8 image.

    The blend weight of each pixel is ``alpha * heatmap``, so regions without
    evidence show the untouched image and the strongest regions show the colour
    at ``alpha`` opacity. The heatmap is upsampled to the image if needed.

    Args:
        image: RGB uint8, shape (H, W, 3).
        heatmap: float map in [0, 1], any size.
        alpha: maximum opacity of the colour layer, in [0, 1].

    Returns:
        RGB uint8 of the image's shape.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(f"overlay needs an RGB uint8 image, got {image.dtype} {image.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    h, w = image.shape[:2]
    heat = heatmap if heatmap.shape == (h, w) else upsample(heatmap, h, w)
    weight = (alpha * np.clip(heat, 0.0, 1.0))[..., np.newaxis]
    blended = image.astype(np.float32) * (1.0 - weight) + colorize(heat).astype(np.float32) * weight
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def head_gradcam(feature_map: np.ndarray, head: LinearHead, class_index: int) -> GradCam:
    """Grad-CAM of a float GAP -> Dense head, in numpy.

    The channel weights are the mean gradient of logit ``class_index`` over the
    feature map, ``W[:, c] / (H*W)`` (the convention of ``gradcam.tflite``), and the
    CAM is ``ReLU(A @ weights)``.
    """
    fm = np.asarray(feature_map, dtype=np.float32)
    height, width = fm.shape[:2]
    weights = (head.weights[:, class_index] / np.float32(height * width)).astype(np.float32)
    cam = np.maximum(fm @ weights, 0.0).astype(np.float32)
    return GradCam(
        class_index=int(class_index), weights=weights, cam=cam, heatmap=normalize_cam(cam)
    )


class Explainer:
    """Runs ``gradcam.tflite`` on a dequantized feature map, or a site-adapted head in numpy.

    Args:
        model: the interpreter for gradcam.tflite, created once.
        spec: the manifest's gradcam section; tensors are checked against it.
        head: the site-adapted head; when given, its columns are the CAM weights and
            gradcam.tflite (the base head's gradient) is not run.

    Raises:
        TensorMismatchError: the model's tensors disagree with ``spec``.
    """

    def __init__(
        self, model: TfliteModel, spec: GradcamSpec, head: LinearHead | None = None
    ) -> None:
        self._model = model
        self.spec = spec
        self.head = head
        self._fm = match_tensor(model, spec.feature_map, "gradcam.feature_map", "input")
        self._onehot = match_tensor(model, spec.class_one_hot, "gradcam.class_one_hot", "input")
        self._weights = match_tensor(model, spec.weights, "gradcam.weights", "output")
        self._cam = match_tensor(model, spec.cam, "gradcam.cam", "output")
        for role, info in (("feature_map", self._fm), ("class_one_hot", self._onehot)):
            if info.dtype != "float32":
                raise TensorMismatchError(
                    f"{model.label}: gradcam input {role} must be float32, got {info.dtype}"
                )
        self.n_classes = spec.class_one_hot.shape[1]

    def explain(self, feature_map: np.ndarray, class_index: int) -> GradCam:
        """Grad-CAM of ``class_index`` for one image's feature map.

        Args:
            feature_map: dequantized float feature map, shape (H, W, C).
            class_index: the class to explain (usually the shown top-1).

        Returns:
            The channel weights, the raw CAM and the [0, 1] heatmap at (H, W).

        Raises:
            ValueError: wrong feature-map shape or class index.
            BundleModelError: the runtime failed.
        """
        expected = tuple(self.spec.feature_map.shape[1:])
        if feature_map.shape != expected:
            raise ValueError(f"feature_map must have shape {expected}, got {feature_map.shape}")
        if not 0 <= class_index < self.n_classes:
            raise ValueError(f"class_index must be in 0..{self.n_classes - 1}, got {class_index}")
        if self.head is not None:
            return head_gradcam(feature_map, self.head, class_index)
        one_hot = np.zeros((1, self.n_classes), dtype=np.float32)
        one_hot[0, class_index] = 1.0
        weights, cam = self._model.run(
            {
                self._fm.index: np.ascontiguousarray(feature_map, dtype=np.float32)[np.newaxis],
                self._onehot.index: one_hot,
            },
            (self._weights.index, self._cam.index),
        )
        cam = np.maximum(cam[0].astype(np.float32), 0.0)
        return GradCam(
            class_index=int(class_index),
            weights=weights[0].astype(np.float32),
            cam=cam,
            heatmap=normalize_cam(cam),
        )
