"""One adaptation run: cases -> features -> rules -> evidence -> head -> bundle.

:func:`adapt_bundle` is what ``skinscan adapt`` runs; nothing is written unless
every rule holds (:mod:`clinic.adaptation.rules`) and the bundle loads back.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from clinic.adaptation.base_head import base_head
from clinic.adaptation.cases import Case
from clinic.adaptation.evidence import (
    DEFAULT_FOLDS,
    DEFAULT_REPEATS,
    TABLE_METRICS,
    Evidence,
    cross_validate,
)
from clinic.adaptation.features import FeatureSet, extract_features
from clinic.adaptation.head_fit import DEFAULT_L2, fit_head
from clinic.adaptation.model_card import CardInputs, render_model_card
from clinic.adaptation.rules import check_cases, check_evidence
from clinic.adaptation.writer import adapted_bundle_id, check_output_folder, write_adapted_bundle
from device import metrics
from device.errors import AdaptationError
from device.labels import CLASS_CODES
from device.runtime.bundle import Bundle, load_bundle
from device.runtime.classifier import LinearHead
from device.runtime.manifest import AdaptationSpec, Manifest, preprocessing_sha256

log = logging.getLogger(__name__)

# The float base head must reproduce the int8 logits of the median case to within this
# many output quantization steps (measured: under 1), else the model's head is not
# GAP -> Dense. The median, because a case whose pooled features or logits saturate the
# int8 range is missed by more (seen on the synthetic test model).
MAX_BASE_HEAD_STEPS = 4.0
OTHER_REASON = "diagnosis other / unknown: not used to fit the head"


@dataclass
class AdaptationReport:
    """What a run did.

    Attributes:
        out: the written bundle folder.
        manifest: its manifest.
        evidence: the cross-validation.
        used: cases the head was fitted on; excluded: (id, reason) of those left out.
        seconds: wall time per stage ("features", "cross_validation", "fit", "write").
    """

    out: Path
    manifest: Manifest
    evidence: Evidence
    used: list[Case]
    excluded: list[tuple[str, str]]
    seconds: dict[str, float] = field(default_factory=dict)


def utc_now() -> str:
    """The current UTC time, ISO-8601 to the second."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def check_base_head(bundle: Bundle, head: LinearHead, features: FeatureSet) -> float:
    """How far the float base head is from the bundle's own logits, in quantization steps.

    Returns:
        The median over cases of the largest logit error, in steps.

    Raises:
        AdaptationError: more than :data:`MAX_BASE_HEAD_STEPS` steps.
    """
    if bundle.head is not None or not len(features):
        return 0.0
    quant = bundle.manifest.classifier.logits.quantization
    step = quant.scale if quant is not None else 1e-6
    err = np.abs(features.features @ head.weights + head.bias - features.base_logits)
    steps = float(np.median(err.max(axis=1)) / step)
    if steps > MAX_BASE_HEAD_STEPS:
        raise AdaptationError(
            f"{bundle.bundle_id}: the Dense layer read from model.tflite misses the model's own "
            f"logits by {steps:.1f} quantization steps (median case); its head is not "
            "GAP -> Dense and "
            "cannot be adapted"
        )
    return steps


def evidence_metrics(evidence: Evidence, l2: float, override: str | None) -> dict[str, Any]:
    """The manifest's metrics of an adapted bundle (JSON-ready)."""
    return metrics.json_safe(
        {
            "adaptation_cv": {
                "repeats": evidence.repeats,
                "folds": evidence.folds,
                "l2": l2,
                "temperature": evidence.temperature,
                "referral_threshold": evidence.threshold,
                "base_referral_threshold": evidence.base_threshold,
                "table": {name: evidence.table[name] for name in TABLE_METRICS},
                "adapted_malignant_auc_per_repeat": evidence.adapted_auc_per_repeat,
                "threshold_rule": "malignant sensitivity >= 0.90 on cross-validated predictions",
                "forced": override,
            }
        }
    )


def adapt_bundle(
    base_dir: str | Path | None,
    cases: Sequence[Case],
    out: str | Path,
    *,
    site: str,
    force: bool = False,
    seed: int = 0,
    l2: float = DEFAULT_L2,
    folds: int = DEFAULT_FOLDS,
    repeats: int = DEFAULT_REPEATS,
    workers: int | None = None,
    cache_dir: str | Path | None = None,
    n_boot: int = 1000,
    skipped: Sequence[tuple[str, str]] = (),
) -> AdaptationReport:
    """Adapt a base bundle to a site's confirmed cases and write the adapted bundle.

    Args:
        base_dir: the base bundle (None: the shipped one).
        cases: the site's confirmed cases.
        out: the adapted bundle's folder (must not exist or be empty).
        site: the site's name, shown on the scanner ("adapted for <site>, <date>").
        force: write even when cross-validation shows no gain (said on the card).
        seed: seed of the fold assignments and bootstrap.
        l2: the anchor's weight.
        folds, repeats: the cross-validation.
        workers: feature-extraction processes (default: the usable CPUs).
        cache_dir: feature cache folder (optional).
        n_boot: bootstrap resamples for the intervals.
        skipped: rows the loader already left out, (id, reason), for the card.

    Returns:
        The report; the bundle is at ``report.out``.

    Raises:
        AdaptationRefusedError: a rule refused (nothing written).
        BundleError: the base bundle is invalid; DatasetError: the cases are unreadable.
    """
    out = check_output_folder(out)
    seconds: dict[str, float] = {}
    base = load_bundle(base_dir)
    excluded = list(skipped) + [(c.case_id, OTHER_REASON) for c in cases if c.dx is None]
    known = [c for c in cases if c.dx is not None]
    started = time.perf_counter()
    features = extract_features(base, known, workers=workers, cache_dir=cache_dir)
    seconds["features"] = time.perf_counter() - started
    excluded += features.excluded
    for case_id, reason in excluded:
        log.warning("left out %s: %s", case_id, reason)
    by_id = {c.case_id: c for c in known}
    used = [by_id[i] for i in features.ids]
    y = np.array([CLASS_CODES.index(c.dx) for c in used], dtype=np.int64)  # type: ignore[arg-type]
    check_cases(y, n_left_out=len(excluded))
    head0 = base_head(base)
    check_base_head(base, head0, features)
    started = time.perf_counter()
    evidence = cross_validate(
        features.features,
        y,
        features.base_logits,
        head0.weights,
        head0.bias,
        base_temperature=base.manifest.calibration.temperature,
        base_threshold=base.manifest.calibration.referral_threshold,
        l2=l2,
        folds=folds,
        repeats=repeats,
        n_boot=n_boot,
        seed=seed,
    )
    seconds["cross_validation"] = time.perf_counter() - started
    override = check_evidence(
        evidence.value("malignant_auc", "base"), evidence.value("malignant_auc", "adapted"), force
    )
    started = time.perf_counter()
    w, b = fit_head(features.features, y, head0.weights, head0.bias, l2=l2)
    head = LinearHead(weights=w, bias=b)
    seconds["fit"] = time.perf_counter() - started
    adapted_at = utc_now()
    manifest = base.manifest
    spec = AdaptationSpec(
        base_bundle_id=manifest.bundle_id,
        base_model_sha256=base.model_sha256,
        base_preprocessing_sha256=preprocessing_sha256(manifest.preprocessing),
        site=site,
        adapted_at=adapted_at,
        n_cases=len(used),
        cases_per_class={k: v for k, v in sorted(Counter(c.dx for c in used).items())},  # type: ignore[misc]
        forced=override is not None,
    )
    bundle_id = adapted_bundle_id(manifest.bundle_id, site, head)
    card = render_model_card(
        CardInputs(
            bundle_id=bundle_id,
            site=site,
            adapted_at=adapted_at,
            base=manifest,
            used=used,
            excluded=excluded,
            evidence=evidence,
            l2=l2,
            override=override,
        )
    )
    started = time.perf_counter()
    written = write_adapted_bundle(
        out,
        base,
        head,
        bundle_id=bundle_id,
        adaptation=spec,
        calibration={"temperature": evidence.temperature, "referral_threshold": evidence.threshold},
        metrics=evidence_metrics(evidence, l2, override),
        model_card=card,
        created_at=adapted_at,
    )
    seconds["write"] = time.perf_counter() - started
    return AdaptationReport(
        out=out,
        manifest=written,
        evidence=evidence,
        used=used,
        excluded=excluded,
        seconds=seconds,
    )
