"""MODEL_CARD.md of a site-adapted bundle: what changed, on which cases, with what evidence."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from clinic.adaptation.cases import BASES, Case
from clinic.adaptation.evidence import Evidence, format_table
from device.labels import CLASS_CODES, HAM10000_CLASSES
from device.runtime.manifest import Manifest


@dataclass(frozen=True)
class CardInputs:
    """What the card reports.

    Attributes:
        bundle_id: the adapted bundle's id.
        site: the site adapted for.
        adapted_at: ISO time of the adaptation.
        base: the base bundle's manifest.
        used: the cases the head was fitted on.
        excluded: (case id, reason) of every case left out.
        evidence: the cross-validation.
        l2: the anchor's weight.
        override: the ``--force`` note, or None.
    """

    bundle_id: str
    site: str
    adapted_at: str
    base: Manifest
    used: Sequence[Case]
    excluded: Sequence[tuple[str, str]]
    evidence: Evidence
    l2: float
    override: str | None = None


def _date_range(cases: Sequence[Case]) -> str:
    dates = sorted(c.confirmed_at for c in cases if c.confirmed_at)
    if not dates:
        return "not recorded"
    missing = len(cases) - len(dates)
    note = f" ({missing} cases without a date)" if missing else ""
    return f"{dates[0][:10]} to {dates[-1][:10]}{note}"


def _reason_kind(reason: str) -> str:
    if reason.startswith("quality gate"):
        return "failed the quality gate"
    if reason.startswith("diagnosis"):
        return "diagnosis other / unknown"
    return "image unreadable or missing"


def _with_licence(base: Manifest) -> str:
    source, licence = base.provenance.data_source, base.provenance.data_licence
    return source if licence in source else f"{source} ({licence})"


def render_model_card(inputs: CardInputs) -> str:
    """The card as Markdown."""
    base, ev = inputs.base, inputs.evidence
    by_class = Counter(c.dx for c in inputs.used)
    by_basis = Counter(c.basis for c in inputs.used)
    left_out = Counter(_reason_kind(reason) for _, reason in inputs.excluded)
    names = {d.code: d.name for d in HAM10000_CLASSES}
    aucs = ev.adapted_auc_per_repeat
    lines = [
        f"# Model card: {inputs.bundle_id} (site-adapted)",
        "",
        "SkinScan is a screening aid, not a diagnosis. This bundle is the base bundle below "
        f"with its classification head refitted on confirmed cases of **{inputs.site}**.",
        "",
        "## What changed",
        "",
        f"- Base bundle: `{base.bundle_id}` (model.tflite sha256 "
        f"`{base.files[base.classifier.file].sha256[:16]}…`). The int8 trunk (model.tflite) and "
        "the Grad-CAM model are byte-identical copies of the base's.",
        f"- Site: {inputs.site}; adapted {inputs.adapted_at} with `skinscan adapt`.",
        "- The 7-class head (1280 x 7 weights + 7 biases, `head.npz`) was refitted: multinomial "
        f"logistic regression, class-balanced, L2-anchored to the base head (weight {inputs.l2:g} "
        "on the squared distance). The device runs it in float32 on the int8 feature map; "
        "Grad-CAM uses its columns, so the heatmap explains the adapted decision.",
        f"- Softmax temperature {ev.temperature:.3f} (base {base.calibration.temperature:.3f}), "
        "refitted on the cross-validated logits.",
        f"- Referral threshold on P(malignant): {ev.threshold:.4f} (base "
        f"{base.calibration.referral_threshold:.4f}), from the cross-validated predictions at "
        "malignant sensitivity >= 0.90.",
        '- Familiarity check ("Uncertain — refer"): the base\'s, unchanged: it describes the '
        "trunk's training images, which adaptation does not change.",
    ]
    if inputs.override:
        lines += ["", f"**Override:** {inputs.override}"]
    lines += [
        "",
        "## Cases",
        "",
        f"{len(inputs.used)} cases fitted the head; {len(inputs.excluded)} "
        f"{'was' if len(inputs.excluded) == 1 else 'were'} left out"
        + (
            " (" + ", ".join(f"{n} {kind}" for kind, n in sorted(left_out.items())) + ")"
            if left_out
            else ""
        )
        + f". Confirmation dates: {_date_range(inputs.used)}.",
        "",
        "| class | cases |",
        "| --- | --- |",
    ]
    lines += [f"| {code} ({names[code]}) | {by_class.get(code, 0)} |" for code in CLASS_CODES]
    lines += ["", "| basis of the diagnosis | cases |", "| --- | --- |"]
    lines += [f"| {basis} | {by_basis[basis]} |" for basis in BASES if by_basis.get(basis)]
    lines += [
        "",
        f"## Cross-validation on the cases ({ev.repeats} repeats x {ev.folds} folds, "
        "stratified by class)",
        "",
        "Each case is scored by heads fitted without it; the base is the bundle as shipped. "
        "95% bootstrap intervals in brackets.",
        "",
        format_table(ev),
        "",
        f"Adapted malignant AUC per repeat: {min(aucs):.3f} to {max(aucs):.3f}."
        if aucs and np.all(np.isfinite(aucs))
        else "",
        "",
        "The threshold was chosen on the same cross-validated predictions it is measured on, "
        "so the adapted sensitivity (0.90 or more by construction) and specificity are "
        "optimistic; measure them on the site's later cases.",
        "",
        "## Limitations",
        "",
        "- **Verification bias.** Confirmed cases, biopsied ones above all, are not a random "
        "sample of the lesions a scanner sees: lesions that looked suspicious are confirmed far "
        "more often. The cases' mix of classes and difficulty differs from the site's daily "
        "mix, and so may the adapted head's specificity in use.",
        "- The head fits this site's cameras, lighting and patients. It is not evidence for "
        "any other site.",
        "- A class with few or no cases here keeps about the base head's weights; its "
        "probabilities are lowered as far as the cases and the anchor allow.",
        "- Everything the base model card says about the trunk (skin types, body sites, "
        "image sources) still holds.",
        "",
        "## Data",
        "",
        f"- Base model trained on: {base.provenance.data_source} ({base.provenance.data_licence}).",
        f"- Head refitted on {inputs.site}'s own confirmed cases, which are not part of this "
        "bundle.",
        "",
    ]
    return "\n".join(lines)
