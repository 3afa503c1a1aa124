"""The device pipeline in one object: frame -> preprocess -> classify -> explain -> decide.

Both the device app and ``skinscan eval`` go through :class:`Analyzer`, so what
is measured is exactly what runs in the field.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from device.imaging.lesion_presence import colour_doubt
from device.imaging.pipeline import preprocess
from device.runtime.bundle import Bundle, load_bundle
from device.runtime.decision import Decision, decide, is_atypical
from device.runtime.explainer import GradCam, overlay, upsample

log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Analysis:
    """Everything the device knows about one analysed frame.

    Attributes:
        decision: label, calibrated confidence, P(malignant), risk tier, top-3.
        probabilities: calibrated probabilities, shape (K,), in label order.
        logits: dequantized logits, shape (K,).
        model_input: the preprocessed ROI crop the model saw, RGB uint8 (S, S, 3).
        roi_box: that crop in frame coordinates (x0, y0, x1, y1).
        lesion_found: whether segmentation found a lesion (else a centre crop was used).
        hair_fraction: fraction of pixels inpainted as hair.
        unusual_light: the frame's light was unlike that of nearly all training images
            (spec 6); its colours were pulled back into their range before classification.
        feature_map: dequantized feature map (H, W, C), kept to explain other classes.
        gradcam: the Grad-CAM of the top-1 class, or None when not explained.
        heatmap: ``gradcam`` upsampled to the model input, float32 (S, S) in
            [0, 1], or None.
        timings: seconds spent in each stage ("preprocess", "classify", "explain").
    """

    decision: Decision
    probabilities: np.ndarray
    logits: np.ndarray
    model_input: np.ndarray
    roi_box: Box
    lesion_found: bool
    hair_fraction: float
    feature_map: np.ndarray
    gradcam: GradCam | None = None
    heatmap: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)
    unusual_light: bool = False

    @property
    def label(self) -> str:
        """Code of the top-1 class."""
        return self.decision.label

    @property
    def confidence(self) -> float:
        """Calibrated probability of the top-1 class."""
        return self.decision.confidence

    @property
    def p_malignant(self) -> float:
        """P(mel) + P(bcc) + P(akiec)."""
        return self.decision.p_malignant

    @property
    def risk_tier(self) -> str:
        """ "refer", "uncertain" or "monitor"."""
        return self.decision.risk_tier

    def overlay(self, alpha: float = 0.6) -> np.ndarray | None:
        """The heatmap blended over the model input (RGB uint8), or None if not explained."""
        if self.heatmap is None:
            return None
        return overlay(self.model_input, self.heatmap, alpha)


class Analyzer:
    """Analyses frames with one loaded bundle. Not for concurrent use from several threads.

    Args:
        bundle: a bundle from :func:`device.runtime.bundle.load_bundle`.

    Example:
        >>> analyzer = Analyzer.from_path()          # the shipped bundle
        >>> result = analyzer.analyze(frame)          # RGB uint8, any size
        >>> result.decision.risk_tier, result.overlay()
    """

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.spec = bundle.preprocess
        self.labels = bundle.manifest.labels
        self.calibration = bundle.manifest.calibration

    @classmethod
    def from_path(
        cls,
        bundle_dir: str | Path | None = None,
        *,
        runtime: str | None = None,
        num_threads: int | None = None,
    ) -> Analyzer:
        """Load the bundle at ``bundle_dir`` (default: the shipped one) and wrap it."""
        return cls(load_bundle(bundle_dir, runtime=runtime, num_threads=num_threads))

    def analyze(self, frame: np.ndarray, explain: bool = True) -> Analysis:
        """Run the whole device pipeline on one RGB uint8 frame.

        Args:
            frame: RGB uint8 image of any size (camera frame or file).
            explain: also compute the Grad-CAM of the top-1 class.

        Returns:
            The analysis.

        Raises:
            ImageError: the frame is not a usable RGB uint8 image.
            BundleModelError: the runtime failed.
        """
        t0 = time.perf_counter()
        pre = preprocess(frame, self.spec)
        t1 = time.perf_counter()
        out = self.bundle.classifier.classify(pre.model_input)
        t2 = time.perf_counter()
        familiarity = self.bundle.familiarity
        unfamiliar = atypical = False
        if familiarity is not None:
            score = familiarity.score(out.feature_map)
            unfamiliar = score > familiarity.threshold
            atypical = is_atypical(score, familiarity.threshold)
        # Ink or a plaster's pad in view: never a reassuring Monitor (issue 28).
        atypical = atypical or colour_doubt(frame)
        decision = decide(
            out.probabilities,
            self.labels,
            self.calibration,
            unfamiliar=unfamiliar,
            atypical=atypical,
        )
        timings = {"preprocess": t1 - t0, "classify": t2 - t1}
        gradcam = heatmap = None
        if explain:
            gradcam = self.bundle.explainer.explain(out.feature_map, decision.label_index)
            size = self.spec.input_size
            heatmap = upsample(gradcam.heatmap, size, size)
            timings["explain"] = time.perf_counter() - t2
        return Analysis(
            decision=decision,
            probabilities=out.probabilities,
            logits=out.logits,
            model_input=pre.model_input,
            roi_box=tuple(int(v) for v in pre.roi_box),  # type: ignore[arg-type]
            lesion_found=bool(pre.lesion_found),
            hair_fraction=float(pre.hair_fraction),
            unusual_light=bool(pre.unusual_light),
            feature_map=out.feature_map,
            gradcam=gradcam,
            heatmap=heatmap,
            timings=timings,
        )

    def explain_class(self, analysis: Analysis, class_index: int) -> np.ndarray:
        """Grad-CAM heatmap of another class (e.g. the 2nd of the top-3) for an analysis.

        Returns:
            float32 (S, S) heatmap in [0, 1] aligned with ``analysis.model_input``.
        """
        gradcam = self.bundle.explainer.explain(analysis.feature_map, class_index)
        size = self.spec.input_size
        return upsample(gradcam.heatmap, size, size)
