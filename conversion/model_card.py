"""MODEL_CARD.md for a bundle, rendered from its manifest (no TensorFlow needed)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from conversion.parity import ParityThresholds, thresholds_dict
from device.runtime.manifest import Manifest

log = logging.getLogger(__name__)

_HEADLINE = (
    ("balanced_accuracy", "Balanced accuracy (mean recall, 7 classes)"),
    ("malignant_auc", "Malignant AUC (P(mel)+P(bcc)+P(akiec))"),
    ("sensitivity", "Sensitivity, malignant, at the referral threshold"),
    ("specificity", "Specificity, benign, at the referral threshold"),
    ("melanoma_sensitivity", "Melanoma sensitivity at the referral threshold"),
    ("accuracy", "Accuracy (top-1; misleading on this data)"),
    ("ece", "Expected calibration error (15 bins)"),
)


def _num(value: Any, digits: int = 3) -> str:
    return "n/a" if not isinstance(value, (int, float)) else f"{value:.{digits}f}"


def _ci(ci: Any) -> str:
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(v, float) for v in ci):
        return f"{ci[0]:.3f} – {ci[1]:.3f}"
    return "n/a"


# Figures that depend on the referral threshold: int8 and float compare only at the same one.
_AT_THRESHOLD = ("sensitivity", "specificity", "melanoma_sensitivity")


def _metrics_table(int8: Mapping[str, Any], float_: Mapping[str, Any]) -> list[str]:
    lines = [
        "| metric | int8 bundle | 95% CI | float model | int8 − float |",
        "| --- | --- | --- | --- | --- |",
    ]
    ci = int8.get("ci95") or {}
    same_threshold = int8.get("referral_threshold") == float_.get("referral_threshold")
    for key, label in _HEADLINE:
        a, b = int8.get(key), float_.get(key)
        delta = a - b if isinstance(a, float) and isinstance(b, float) else None
        if key in _AT_THRESHOLD and not same_threshold:
            delta = None
        lines.append(
            f"| {label} | {_num(a)} | {_ci(ci.get(key))} | {_num(b)} | "
            f"{'n/a' if delta is None else f'{delta:+.3f}'} |"
        )
    return lines


def _subgroup_tables(subgroups: Mapping[str, Any] | None) -> list[str]:
    if not subgroups:
        return ["Subgroup results were not computed for this bundle."]
    lines: list[str] = []
    for attribute, groups in subgroups.items():
        tones = any("skin_tone_counts" in g for g in groups.values())
        lines += [
            f"**By {attribute.replace('_', ' ')}**",
            "",
            "| group | n | malignant | balanced acc. | malignant AUC | sensitivity | specificity |"
            + (" skin tone (ITA): very light | brown or dark |" if tones else ""),
            "| --- | --- | --- | --- | --- | --- | --- |" + (" --- | --- |" if tones else ""),
        ]
        for name, g in groups.items():
            lines.append(
                f"| {name} | {g.get('n')} | {g.get('n_malignant')} | "
                f"{_num(g.get('balanced_accuracy'))} | {_num(g.get('malignant_auc'))} | "
                f"{_num(g.get('sensitivity'))} | {_num(g.get('specificity'))} |"
                + (_tone_cells(g.get("skin_tone_counts")) if tones else "")
            )
        lines.append("")
    return lines


def _tone_cells(counts: Mapping[str, int] | None) -> str:
    """Share of very light skin and count of brown or dark skin in one source's images."""
    if not counts:
        return " n/a | n/a |"
    total = max(sum(counts.values()), 1)
    darker = counts.get("brown", 0) + counts.get("dark", 0)
    return f" {100 * counts.get('very light', 0) / total:.0f}% | {darker} |"


def _rule(metrics: dict) -> str:
    """The referral-threshold rule in words, from the conversion report."""
    fitted = metrics.get("parity", {}).get("calibration", {}).get("rule", {})
    target = fitted.get("min_sensitivity_target", 0.90)
    confidence = fitted.get("threshold_confidence", 0.0)
    if confidence:
        return f">= {target:.2f} at the {confidence:.0%} lower confidence bound"
    return f">= {target:.2f}"


def _ensemble_lines(members: list[dict] | None) -> list[str]:
    """The model-card line for an ensemble bundle (none for a single model)."""
    if not members:
        return []
    runs = ", ".join(f"`{m.get('run_id')}` (seed {m.get('seed')})" for m in members)
    return [
        f"- Ensemble of {len(members)} members trained on the same split with different "
        f"initialisation seeds: {runs}. The logits are the members' mean, computed as one "
        "GAP -> Dense head on their concatenated feature maps, so the heatmap is the mean of "
        "the members' class activation maps."
    ]


def _shift_threshold_lines(record: Mapping[str, Any] | None) -> list[str]:
    """What the referral threshold under acquisition shift changed, if it ran."""
    if not record:
        return []
    sens = record.get("val_sensitivity_at_in_distribution_threshold") or {}
    worst = record.get("worst_shift")
    return [
        f"- Threshold under acquisition shift: {record.get('rule')}. Worst shift: `{worst}` "
        f"(validation sensitivity {_num(sens.get(worst))} at the in-distribution threshold "
        f"{_num(record.get('in_distribution_threshold'))}); the shipped threshold is "
        f"{_num(record.get('threshold'))}. The int8 test figures below are at it; the float "
        "column is at the in-distribution threshold."
    ]


def _darker_skin_note(bands: Mapping[str, Any] | None) -> str:
    """How few test images show brown or dark skin (ITA < -30 degrees), if measured."""
    if not bands:
        return ""
    total = sum(int(g.get("n", 0)) for g in bands.values())
    darker = sum(int(bands.get(b, {}).get("n", 0)) for b in ("brown", "dark"))
    malignant = sum(int(bands.get(b, {}).get("n_malignant", 0)) for b in ("brown", "dark"))
    return (
        f" Estimated from the skin around each lesion (individual typology angle), "
        f"{darker} of the {total} test images ({100 * darker / max(total, 1):.1f}%) show brown "
        f"or dark skin, {malignant} of them malignant: far too few to measure the model there."
    )


def _held_out_threshold_lines(record: Mapping[str, Any] | None) -> list[str]:
    """How the threshold was capped for clinics the model never saw, if it was."""
    if not record:
        return []
    folds = ", ".join(f"`{name}`" for name in record.get("per_fold") or {})
    return [
        f"- Threshold for unseen clinics: pooling the held-out predictions of this recipe's "
        f"leave-one-source-out folds ({folds}; {record.get('pooled_images')} images, "
        f"{record.get('pooled_melanomas')} melanomas), the threshold referring "
        f"{100 * record.get('min_melanoma_sensitivity', 0):.0f}% of their melanomas is "
        f"{_num(record.get('pooled_threshold'))}; on the folds' own validation it needed "
        f"malignant sensitivity up to {_num(record.get('level'))}. On this bundle's validation "
        f"that level is reached at {_num(record.get('cap'))} (specificity "
        f"{_num(record.get('validation_specificity_at_cap'))}); the shipped threshold is never "
        "above it."
    ]


def _colour_clamp_lines(record: Mapping[str, Any] | None) -> list[str]:
    """How the colour clamp re-specced this bundle's model files, if it did."""
    if not record:
        return []
    before = record.get("calibration_before") or {}
    return [
        f"- Colour: each frame's illuminant is clamped into the range of the training images' "
        f"illuminants (spec 6; the {100 * record.get('quantile', 0):.1f}% ellipse, radius "
        f"{_num(record.get('radius'))}), added to the model files of "
        f"`{record.get('source_bundle')}` after training; frames inside it reach the model "
        "unchanged. Beyond the "
        f"{100 * (record.get('unusual_quantile') or 0):.0f}% ellipse (radius "
        f"{_num(record.get('unusual_radius'))}) the result says 'Unusual light'. "
        "Temperature and threshold were refitted on validation under it (before: "
        f"{_num(before.get('temperature'))} and {_num(before.get('referral_threshold'))}). "
        "The float column of the metrics is the float model on the source bundle's spec."
    ]


def _familiarity_lines(manifest: Manifest) -> list[str]:
    """The out-of-distribution check, if the bundle has one."""
    spec = manifest.familiarity
    if spec is None:
        return ["- No familiarity check: this bundle never says 'Uncertain — refer'."]
    return [
        f"- Familiarity check (`{spec.file}`): {spec.fitted_on}. A frame scoring above "
        f"{spec.threshold:.3f} is shown as 'Uncertain — refer' instead of 'Monitor' "
        f"(validation: {100 * spec.validation_fire_rate:.1f}% of images)."
    ]


def render_model_card(manifest: Manifest) -> str:
    """Render the model card of a bundle from its manifest.

    Args:
        manifest: the bundle manifest, with ``metrics`` as written by
            :func:`conversion.convert.convert_run` (missing figures show as "n/a").

    Returns:
        Markdown text.
    """
    m = manifest.metrics
    prov = manifest.provenance
    cal = manifest.calibration
    int8 = m.get("int8_test") or {}
    float_ = m.get("float_test") or {}
    parity = m.get("parity") or {}
    cls_val = parity.get("classifier_val") or {}
    cam = parity.get("gradcam") or {}
    gates = parity.get("thresholds") or {}
    gate_note = ""
    if "min_referral_agreement" not in gates:
        # Converted under the earlier top-1 gate: state today's gate for its recorded figures.
        gates = thresholds_dict(ParityThresholds())
        gate_note = " (converted under the earlier top-1 gate; its figures against today's)"
    fm = manifest.classifier.feature_map.shape
    size = manifest.classifier.input_size
    recall = int8.get("per_class_recall") or {}
    names = {label.code: label.name for label in manifest.labels}

    lines = [
        f"# Model card: SkinScan bundle `{manifest.bundle_id}`",
        "",
        f"Converted {manifest.created_at} from training run `{prov.run_id}`.",
        "",
        "## Intended use",
        "",
        "- A **screening aid** for trained health workers using the SkinScan device in the "
        "field: it suggests whether a skin lesion should be referred to a clinician.",
        "- **It is not a diagnosis.** Every referral decision stays with the health worker and "
        'the clinician; a "monitor" result does not rule out cancer.',
        "- Input: dermoscopic images of a single skin lesion, taken through the device's "
        "dermoscope lens with its LED ring.",
        "- Not for: clinical (non-dermoscopic) photos, nail, mucosal or scalp-hair-covered "
        "sites, lesions outside the seven classes below, or use without a trained operator.",
        "",
        "## Model",
        "",
        f"- Backbone: {prov.backbone}; pretrained weights: {prov.weights_source} "
        f"({prov.weights_licence}).",
        f"- Input: {size}x{size} RGB uint8 after the device's preprocessing, spec version "
        f"{manifest.preprocessing.get('version', '?')}: "
        f"{manifest.preprocessing.get('resize_rule', 'see manifest.json')}. The spec is "
        "stored in manifest.json.",
        *_ensemble_lines(prov.extra.get("members")),
        "- Full-integer int8 TFLite (`model.tflite`); Grad-CAM from a precomputed gradient "
        f"submodel (`gradcam.tflite`) on the {fm[1]}x{fm[2]}x{fm[3]} last conv feature map.",
        f"- Calibration: softmax temperature {cal.temperature:.3f}; refer when P(malignant) >= "
        f'{cal.referral_threshold:.3f}; "uncertain" when the top-1 probability < '
        f"{cal.uncertainty_threshold:.2f}. Temperature and referral threshold were fitted on "
        "the validation split"
        + (
            " with this int8 model's own outputs (the in-distribution threshold keeps "
            f"malignant sensitivity {_rule(m)}"
            + ("; the shipped one is lower, see below)." if _lowered(m) else ").")
            if (parity.get("calibration") or {}).get("int8_fitted")
            else "."
        ),
        *_colour_clamp_lines(m.get("colour_clamp")),
        *_shift_threshold_lines(m.get("shift_threshold")),
        *_held_out_threshold_lines(m.get("held_out_threshold")),
        *_familiarity_lines(manifest),
        "- Classes: "
        + ", ".join(f"`{c}` {n}" for c, n in names.items())
        + ". Malignant: "
        + ", ".join(f"`{label.code}`" for label in manifest.labels if label.malignant)
        + ".",
        "",
        "## Data and licence",
        "",
        f"- Training and evaluation data: {prov.data_source}. Licence: {prov.data_licence} "
        "(non-commercial research use). Cite the dataset wherever these results are shown.",
        f"- Lesion-grouped train/validation/test split (no lesion in two splits). "
        f"Data hash `{prov.data_hash}`, split hash `{prov.split_hash}`.",
        "- The data are not shipped with the bundle.",
        *_sources_lines(prov.extra.get("sources")),
        "",
        "## Metrics",
        "",
        f"On the held-out test split ({int8.get('n_images', 'n/a')} images), int8 bundle "
        "through the device's own preprocessing and runtime, with 95% bootstrap intervals "
        "(1,000 resamples of images):",
        "",
        *_metrics_table(int8, float_),
        "",
        "Recall per class (int8, test): "
        + (", ".join(f"`{c}` {_num(v)}" for c, v in recall.items()) or "n/a")
        + ".",
        "",
        "Reproduce with `skinscan eval --bundle <this folder> --metadata <csv of the test "
        "split> --images <image folder> --json out.json`.",
        "",
        *_held_out_lines(m.get("held_out_sources")),
        *_outside_clinic_lines(m.get("outside_clinics")),
        "### Conversion parity (validation split)",
        "",
        f"- int8 vs float referral-decision agreement: "
        f"{_num(cls_val.get('referral_agreement'))} (gate >= "
        f"{_num(gates.get('min_referral_agreement'))}); balanced-accuracy drop: "
        f"{_num(cls_val.get('balanced_accuracy_drop'))} (gate <= "
        f"{_num(gates.get('max_balanced_accuracy_drop'))}); top-1 agreement "
        f"{_num(cls_val.get('top1_agreement'))}, reported, not gated "
        f"(n = {cls_val.get('n', 'n/a')}){gate_note}.",
        f"- Grad-CAM vs the float GradientTape reference: correlation "
        f"{_num(cam.get('corr_float_mean'))} with the float backbone, mean "
        f"{_num(cam.get('corr_int8_mean'))} (min {_num(cam.get('corr_int8_min'))}) with the "
        f"int8 backbone (n = {cam.get('n', 'n/a')}).",
        *_parity_failure_lines(parity.get("failures")),
        "",
        "## Subgroup results (int8, test split)",
        "",
        "Small groups give wide, unstable figures; read them as a warning sign, not a ranking.",
        "",
        *_subgroup_tables(m.get("subgroups_int8_test")),
        "## Limitations",
        "",
        "- **Skin types are under-represented.** HAM10000 comes mostly from fair-skinned "
        "patients in Austria and Australia, and records no Fitzpatrick skin type: performance "
        "on darker skin is unknown and likely lower."
        + _darker_skin_note((m.get("subgroups_int8_test") or {}).get("skin_tone")),
        "- **Dermoscopy only.** The model learned from dermatoscope images; other optics, "
        "lighting or a camera module may shift its behaviour. Validate on device images "
        "before relying on it.",
        "- **Seven classes only.** Any other lesion (for example invasive squamous cell "
        "carcinoma, Merkel cell carcinoma, or non-neoplastic conditions) is forced into one of "
        "the seven.",
        "- Test classes df and vasc are small, so their recall and the balanced accuracy move "
        "by about a point per image.",
        "- Grad-CAM shows where the evidence for a class lies at "
        f"{fm[1]}x{fm[2]} resolution; it is not a segmentation and not a reason.",
        _threshold_limitation(m.get("held_out_threshold")),
        *_missed_lines(int8),
        "",
    ]
    return "\n".join(lines)


def _lowered(m: dict[str, Any]) -> bool:
    """Whether a later step (shift or held-out sources) lowered the referral threshold."""
    return bool((m.get("shift_threshold") or {}).get("lowered"))


def _threshold_limitation(held_out: Any) -> str:
    """Where the threshold came from, and what that does not cover."""
    if not isinstance(held_out, dict) or held_out.get("cap") is None:
        return (
            "- Thresholds were set on validation data from the same sources as the test data; "
            "field prevalence differs, so sensitivity and specificity will too."
        )
    return (
        "- The threshold was lowered so that models of this recipe refer 90% of the melanomas "
        "of sources they never saw; the price is specificity (about "
        f"{_num(held_out.get('validation_specificity_at_cap'))} on validation): many benign "
        "lesions are referred. Field prevalence and cameras differ again, so sensitivity and "
        "specificity will too."
    )


def _parity_failure_lines(failed: Any) -> list[str]:
    """A bundle written past failed parity gates (``convert --force``) says so plainly."""
    if not failed:
        return []
    return [
        "- **Parity gates failed; written with `--force`:** "
        + "; ".join(str(f) for f in failed)
        + ". The int8 figures in this card are the int8 model's own, measured through the "
        "device pipeline; the gates only compare it with the float model.",
    ]


def _sources_lines(sources: Any) -> list[str]:
    """Images per acquisition source and class that the run read (multi-source runs)."""
    if not isinstance(sources, dict) or not sources:
        return []
    codes = sorted({code for counts in sources.values() for code in counts})
    lines = [
        "",
        "Images per acquisition source (all splits):",
        "",
        "| source | images | " + " | ".join(codes) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in codes) + " |",
    ]
    for source, counts in sources.items():
        total = sum(counts.values())
        cells = " | ".join(str(counts.get(code, 0)) for code in codes)
        lines.append(f"| {source} | {total} | {cells} |")
    return lines


def _held_out_lines(held_out: Any) -> list[str]:
    """Figures on acquisition sources the model was not trained on (leave-one-source-out)."""
    if not isinstance(held_out, dict) or not held_out:
        return []
    lines = [
        "### On sources it was not trained on",
        "",
        "Each row: this bundle's recipe trained without that source (a fold of the "
        "leave-one-source-out benchmark), int8 through the device pipeline, on every image of "
        "that source. Sensitivity and specificity are at the threshold chosen on the folds' "
        "pooled held-out predictions (see the threshold for unseen clinics above).",
        "",
        "| held-out source | images | malignant AUC | melanoma vs nevus AUC | sensitivity | "
        "specificity | melanoma sensitivity |",
        "| --- | ---: | --- | --- | --- | --- | --- |",
    ]
    for source, f in held_out.items():
        ci = f.get("ci95") or {}
        cells = [
            _num(f.get(k)) + (f" [{_ci(ci[k])}]" if k in ci else "")
            for k in (
                "malignant_auc",
                "melanoma_nevus_auc",
                "sensitivity",
                "specificity",
                "melanoma_sensitivity",
            )
        ]
        lines.append(f"| {source} | {f.get('n_images', 'n/a')} | " + " | ".join(cells) + " |")
    return [*lines, ""]


_OUTSIDE_FIGURES = (
    ("malignant_auc", "malignant AUC"),
    ("balanced_accuracy", "balanced accuracy"),
    ("sensitivity", "sensitivity"),
    ("specificity", "specificity"),
)


def _outside_clinic_lines(record: Mapping[str, Any] | None) -> list[str]:
    """Figures measured on outside clinics' sealed sets (numbers only) and the class guard."""
    if not record:
        return []
    lines = [
        "### Outside clinics (sealed sets)",
        "",
        f"{record.get('source', 'Sealed outside-clinic sets.')}",
        "",
        "| set | images | " + " | ".join(label for _, label in _OUTSIDE_FIGURES) + " |",
        "| --- | ---: |" + " ---: |" * len(_OUTSIDE_FIGURES),
    ]
    for row in record.get("rows") or []:
        cells = " | ".join(_num(row.get(key)) for key, _ in _OUTSIDE_FIGURES)
        lines.append(f"| {row.get('set', '?')} | {row.get('images', 'n/a')} | {cells} |")
    lines.append("")
    for note in record.get("notes") or []:
        lines.append(f"- {note}")
    return [*lines, ""] if record.get("notes") else lines


def _missed_lines(int8: dict) -> list[str]:
    """The share of malignant lesions and melanomas the referral threshold let through."""
    lines = []
    for key, what in (("sensitivity", "malignant lesions"), ("melanoma_sensitivity", "melanomas")):
        value = int8.get(key)
        if not isinstance(value, float):
            continue
        low, high = (int8.get("ci95") or {}).get(key, (value, value))
        lines.append(
            f"- **{1 - value:.0%} of the test split's {what} were not referred** "
            f'(95% CI {1 - high:.0%}-{1 - low:.0%}): a "monitor" result never rules out '
            "cancer."
        )
    return lines
