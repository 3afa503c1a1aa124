"""Parity checks of a converted bundle against the float Keras model.

* int8 against float on validation: the referral decision (the one the health
  worker acts on) and the balanced-accuracy drop are the gate; top-1 agreement is
  reported but not gated, because a classifier with many close calls between
  benign classes disagrees on top-1 where it does not matter to the referral.
* Grad-CAM against the float ``tf.GradientTape`` reference: the device map
  from the gradient submodel fed the float feature map (tests the submodel) and
  fed the int8 feature map (tests what the device shows).
* The closed-form oracle for a GAP -> Dense head: weights == ``W[:, c] / (H*W)``.
* Runtimes: the int8 model in every installed runtime, with tolerances.

The functions take arrays and device-side objects; TensorFlow is needed only
for the Keras reference, through :mod:`conversion.tflite`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from device import metrics
from device.runtime.classifier import Classifier, softmax
from device.runtime.explainer import Explainer
from device.runtime.interpreter import available_runtimes, create_model
from device.runtime.manifest import Manifest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParityThresholds:
    """Pass marks of a bundle (recorded in its manifest).

    Attributes:
        min_referral_agreement: share of validation images where int8 and float make
            the same referral decision (P(malignant) against the threshold).
        max_balanced_accuracy_drop: float minus int8 balanced accuracy (fraction, 0.01 = 1 point).
        min_gradcam_corr_float: minimum correlation of the submodel's map with the reference
            when fed the float feature map.
        min_gradcam_corr_int8_mean: mean correlation with the reference when fed the int8
            feature map.
        max_oracle_error: largest |weights - W[:, c]/(H*W)| for a GAP -> Dense head.
        runtime_close_call: how near the referral threshold (in P(malignant), as the
            preferred runtime computes it) two runtimes may make different referral
            decisions. int8 kernels differ between runtimes by a few quantization steps,
            which flips only images that sit on the threshold; a flip further away means
            a runtime computes something else.
        max_runtime_logit_steps: largest logit difference between runtimes, in
            quantization steps of the logits tensor.
    """

    min_referral_agreement: float = 0.97
    max_balanced_accuracy_drop: float = 0.01
    min_gradcam_corr_float: float = 0.99
    min_gradcam_corr_int8_mean: float = 0.90
    max_oracle_error: float = 1e-5
    runtime_close_call: float = 0.05
    max_runtime_logit_steps: float = 8.0


def int8_logits(classifier: Classifier, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run the device classifier on preprocessed images: (logits (N, K), feature maps)."""
    logits, fms = [], []
    for image in images:
        out = classifier.classify(np.asarray(image, dtype=np.uint8))
        logits.append(out.logits)
        fms.append(out.feature_map)
    return np.stack(logits), np.stack(fms)


def classifier_parity(
    float_logits: np.ndarray,
    quant_logits: np.ndarray,
    labels: np.ndarray,
    temperature: float,
    referral_threshold: float,
) -> dict[str, float]:
    """Compare int8 and float predictions on the same images.

    Returns:
        ``n``, ``top1_agreement``, float and int8 ``balanced_accuracy`` and
        ``malignant_auc``, ``balanced_accuracy_drop`` (float minus int8),
        ``malignant_auc_drop``, ``sensitivity`` both ways, and
        ``max_abs_prob_diff`` of the calibrated probabilities.
    """
    pf = softmax(float_logits, temperature)
    pq = softmax(quant_logits, temperature)
    ba_f, ba_q = metrics.balanced_accuracy(labels, pf), metrics.balanced_accuracy(labels, pq)
    auc_f, auc_q = metrics.malignant_auc(labels, pf), metrics.malignant_auc(labels, pq)
    return {
        "n": int(len(labels)),
        "top1_agreement": float(np.mean(pf.argmax(1) == pq.argmax(1))),
        "balanced_accuracy_float": ba_f,
        "balanced_accuracy_int8": ba_q,
        "balanced_accuracy_drop": ba_f - ba_q,
        "malignant_auc_float": auc_f,
        "malignant_auc_int8": auc_q,
        "malignant_auc_drop": auc_f - auc_q,
        "sensitivity_float": metrics.sensitivity(labels, pf, referral_threshold),
        "sensitivity_int8": metrics.sensitivity(labels, pq, referral_threshold),
        "referral_agreement": float(
            np.mean(
                (metrics.malignant_probability(pf) >= referral_threshold)
                == (metrics.malignant_probability(pq) >= referral_threshold)
            )
        ),
        "max_abs_prob_diff": float(np.abs(pf - pq).max()) if len(pf) else 0.0,
    }


def map_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two maps; ``nan`` if either is constant."""
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    x, y = x - x.mean(), y - y.mean()
    denom = float(np.sqrt((x * x).sum() * (y * y).sum()))
    if denom == 0.0:
        return float("nan")
    return float((x * y).sum() / denom)


def gradcam_parity(
    reference_cams: np.ndarray,
    float_feature_maps: np.ndarray,
    quant_feature_maps: np.ndarray,
    class_indices: np.ndarray,
    explainer: Explainer,
) -> dict[str, float]:
    """Correlate device Grad-CAM maps with the float GradientTape reference.

    Images whose reference map is constant (no positive evidence anywhere:
    correlation undefined) are counted in ``n_flat_reference`` and left out.

    Args:
        reference_cams: float Keras Grad-CAM maps (N, H, W).
        float_feature_maps: float Keras feature maps (N, H, W, C).
        quant_feature_maps: dequantized int8 feature maps (N, H, W, C).
        class_indices: the explained class of each image.
        explainer: the device explainer running gradcam.tflite.

    Returns:
        ``corr_float_mean``/``min`` and ``corr_int8_mean``/``min``/``median``,
        ``n``, ``n_flat_reference``.
    """
    corr_f, corr_q, flat = [], [], 0
    for ref, fm_f, fm_q, c in zip(
        reference_cams, float_feature_maps, quant_feature_maps, class_indices, strict=True
    ):
        if float(np.ptp(ref)) == 0.0:
            flat += 1
            continue
        cf = map_correlation(ref, explainer.explain(fm_f.astype(np.float32), int(c)).cam)
        cq = map_correlation(ref, explainer.explain(fm_q.astype(np.float32), int(c)).cam)
        corr_f.append(cf)
        # A flat int8 map where the reference has structure is a complete miss.
        corr_q.append(0.0 if np.isnan(cq) else cq)
    cf_arr, cq_arr = np.array(corr_f), np.array(corr_q)
    nan = float("nan")
    return {
        "n": len(corr_f),
        "n_flat_reference": flat,
        "corr_float_mean": float(np.nanmean(cf_arr)) if len(cf_arr) else nan,
        "corr_float_min": float(np.nanmin(cf_arr)) if len(cf_arr) else nan,
        "corr_int8_mean": float(cq_arr.mean()) if len(cq_arr) else nan,
        "corr_int8_median": float(np.median(cq_arr)) if len(cq_arr) else nan,
        "corr_int8_min": float(cq_arr.min()) if len(cq_arr) else nan,
    }


def oracle_error(kernel: np.ndarray, explainer: Explainer, seed: int = 0) -> float:
    """Largest |weights - W[:, c]/(H*W)| over all classes, on a random feature map.

    For a GAP -> Dense head the Grad-CAM weights do not depend on the feature
    map, so any input works.
    """
    _, h, w, c = explainer.spec.feature_map.shape
    fm = np.random.default_rng(seed).uniform(0, 4, size=(h, w, c)).astype(np.float32)
    worst = 0.0
    for k in range(kernel.shape[1]):
        weights = explainer.explain(fm, k).weights
        worst = max(worst, float(np.abs(weights - kernel[:, k] / (h * w)).max()))
    return worst


def runtime_parity(
    model_bytes: bytes,
    manifest: Manifest,
    images: np.ndarray,
    close_call: float = ParityThresholds().runtime_close_call,
) -> dict[str, dict[str, float]]:
    """Run model.tflite in every installed runtime and compare with the first one.

    Returns:
        Runtime name -> ``top1_agreement``, ``referral_agreement`` (at the manifest's
        temperature and threshold), ``far_referral_disagreements`` (decisions that
        differ although the preferred runtime's P(malignant) is ``close_call`` or more
        from the threshold) and ``max_logit_diff_steps`` (largest logit difference in
        quantization steps of the logits tensor) against the preferred runtime, which
        is listed with perfect agreement.
    """
    runtimes = available_runtimes()
    results: dict[str, np.ndarray] = {}
    for name in runtimes:
        model = create_model(model_bytes, label=manifest.classifier.file, runtime=name)
        clf = Classifier(model, manifest.classifier, manifest.calibration.temperature)
        results[name] = int8_logits(clf, images)[0]
    quant = manifest.classifier.logits.quantization
    step = quant.scale if quant is not None else 1.0
    base = results[runtimes[0]]
    calibration = manifest.calibration

    def p_malignant(logits: np.ndarray) -> np.ndarray:
        return metrics.malignant_probability(softmax(logits, calibration.temperature))

    threshold = calibration.referral_threshold
    base_p = p_malignant(base)
    far = np.abs(base_p - threshold) >= close_call
    out = {}
    for name, logits in results.items():
        differ = (p_malignant(logits) >= threshold) != (base_p >= threshold)
        out[name] = {
            "top1_agreement": float(np.mean(logits.argmax(1) == base.argmax(1))),
            "referral_agreement": float(np.mean(~differ)),
            "far_referral_disagreements": int(np.sum(differ & far)),
            "max_logit_diff_steps": float(np.abs(logits - base).max() / step),
        }
    return out


def failures(report: Mapping[str, Any], thresholds: ParityThresholds) -> list[str]:
    """The parity checks that failed, as readable lines (empty when all pass)."""
    out: list[str] = []
    t = thresholds
    cls = report.get("classifier_val") or {}
    if cls:
        if cls["referral_agreement"] < t.min_referral_agreement:
            out.append(
                f"int8/float referral agreement {cls['referral_agreement']:.3f} < "
                f"{t.min_referral_agreement}"
            )
        if cls["balanced_accuracy_drop"] > t.max_balanced_accuracy_drop:
            out.append(
                f"balanced-accuracy drop {100 * cls['balanced_accuracy_drop']:.2f} points > "
                f"{100 * t.max_balanced_accuracy_drop:.2f}"
            )
    cam = report.get("gradcam") or {}
    if cam:
        if not cam["corr_float_min"] >= t.min_gradcam_corr_float:
            out.append(
                f"Grad-CAM correlation with float backbone min {cam['corr_float_min']:.3f} < "
                f"{t.min_gradcam_corr_float}"
            )
        if not cam["corr_int8_mean"] >= t.min_gradcam_corr_int8_mean:
            out.append(
                f"Grad-CAM correlation with int8 backbone mean {cam['corr_int8_mean']:.3f} < "
                f"{t.min_gradcam_corr_int8_mean}"
            )
    oracle = report.get("oracle_max_error")
    if oracle is not None and not oracle <= t.max_oracle_error:
        out.append(f"gradient submodel differs from W[:, c]/(H*W) by {oracle:.2e}")
    for name, r in (report.get("runtimes") or {}).items():
        if r.get("far_referral_disagreements", 0) > 0:
            out.append(
                f"runtime {name}: {r['far_referral_disagreements']} referral decisions differ "
                f"more than {t.runtime_close_call} from the threshold"
            )
        if r["max_logit_diff_steps"] > t.max_runtime_logit_steps:
            out.append(f"runtime {name}: logits differ by {r['max_logit_diff_steps']:.1f} steps")
    return out


def thresholds_dict(thresholds: ParityThresholds) -> dict[str, float]:
    """The thresholds as a JSON-ready dict (recorded in the manifest)."""
    return asdict(thresholds)
