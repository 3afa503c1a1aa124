"""Conversions between the runtime's Analysis, the app's ResultView and saved ScanRecords."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import numpy as np

from device import __version__
from device.app.events import ResultView
from device.labels import HAM10000_CLASSES
from device.records.api import ScanRecord
from device.ui.screens import RankedName

log = logging.getLogger(__name__)

_BY_CODE = {d.code: d for d in HAM10000_CLASSES}
LEGEND_STEPS = 128


def legend_colours() -> np.ndarray:
    """The heatmap colormap from low to high evidence, (N, 3) RGB uint8."""
    from device.runtime.explainer import colorize

    return colorize(np.linspace(0.0, 1.0, LEGEND_STEPS, dtype=np.float32)[np.newaxis, :])[0]


def result_from_analysis(
    analysis: Any,
    *,
    referral_threshold: float,
    quality: Mapping[str, float],
    scan_key: str,
    heatmap_alpha: float = 0.5,
    legend: np.ndarray | None = None,
) -> ResultView:
    """Build the view of one analysis (``device.runtime.analyzer.Analysis``)."""
    decision = analysis.decision
    top3 = tuple(
        RankedName(
            name=r.name, code=r.code, probability=float(r.probability), malignant=r.malignant
        )
        for r in decision.top3
    )
    return ResultView(
        scan_key=scan_key,
        image=analysis.model_input,
        overlay=analysis.overlay(heatmap_alpha),
        legend=legend if legend is not None else legend_colours(),
        heatmap=analysis.heatmap,
        label=decision.label,
        top3=top3,
        probabilities=dict(decision.probabilities),
        p_malignant=float(decision.p_malignant),
        risk_tier=decision.risk_tier,
        referral_threshold=float(referral_threshold),
        quality=dict(quality),
    )


def now_utc() -> str:
    """The current time as ISO-8601 UTC with seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def record_from_result(
    result: ResultView,
    *,
    device_id: str,
    bundle_id: str,
    bundle_sha256: str,
    created_at: str | None = None,
) -> ScanRecord:
    """The record to save for ``result``; the heatmap saved is the overlay shown on screen."""
    return ScanRecord(
        scan_id=str(uuid.uuid4()),
        created_at=created_at or now_utc(),
        device_id=device_id,
        image=result.image,
        heatmap=result.overlay,
        probabilities=dict(result.probabilities),
        label=result.label,
        risk_tier=result.risk_tier,
        p_malignant=float(result.p_malignant),
        quality={k: float(v) for k, v in result.quality.items()},
        bundle_id=bundle_id,
        bundle_sha256=bundle_sha256,
        app_version=__version__,
        extra={"referral_threshold": f"{result.referral_threshold:.6f}"},
    )


def result_from_record(
    record: ScanRecord, default_threshold: float = 0.5, legend: np.ndarray | None = None
) -> ResultView:
    """The view of a saved scan, for the history screen."""
    ranked = sorted(record.probabilities.items(), key=lambda kv: -kv[1])[:3]
    top3 = tuple(
        RankedName(
            name=_BY_CODE[code].name if code in _BY_CODE else code,
            code=code,
            probability=float(p),
            malignant=_BY_CODE[code].malignant if code in _BY_CODE else False,
        )
        for code, p in ranked
    )
    try:
        threshold = float(record.extra.get("referral_threshold", default_threshold))
    except (TypeError, ValueError):
        threshold = default_threshold
    return ResultView(
        scan_key=record.scan_id[:8],
        image=record.image,
        overlay=record.heatmap if record.heatmap is not None and record.heatmap.ndim == 3 else None,
        legend=legend,
        heatmap=None,
        label=record.label,
        top3=top3,
        probabilities=dict(record.probabilities),
        p_malignant=float(record.p_malignant),
        risk_tier=record.risk_tier,
        referral_threshold=threshold,
        quality=dict(record.quality),
        saved_id=record.scan_id,
        created_at=record.created_at,
    )
