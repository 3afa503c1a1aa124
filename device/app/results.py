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
from device.app.lesion_area import lesion_area_fraction, photo_scale
from device.labels import HAM10000_CLASSES
from device.records.api import ScanRecord
from device.ui.screens import RankedName

log = logging.getLogger(__name__)

_BY_CODE = {d.code: d for d in HAM10000_CLASSES}
LEGEND_STEPS = 128
# Side of the photo shown and saved: the analysed square cut from the full still,
# without hair removal and larger than the 224 px model input. 352 px is what the
# 800x480 panel shows at 1:1.
PHOTO_SIDE = 352


def roi_photo(frame: np.ndarray, roi_box: tuple[int, int, int, int], side: int = PHOTO_SIDE):
    """The analysed square of the original still (hair and all), resized to ``side``.

    The square lies inside the still (the preprocessing keeps it there), so the
    heatmap lies on what the model saw.
    """
    from device.imaging.roi import crop_and_resize

    x0, y0, x1, y1 = roi_box
    height, width = frame.shape[:2]
    if x1 <= max(0, x0) or y1 <= max(0, y0) or x0 >= width or y0 >= height:
        raise ValueError(f"empty ROI {roi_box} in a frame of shape {frame.shape}")
    return crop_and_resize(frame, roi_box, side)


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
    frame: np.ndarray | None = None,
    bundle: Any = None,
    field_width_mm: float | None = None,
) -> ResultView:
    """Build the view of one analysis (``device.runtime.analyzer.Analysis``).

    With the analysed ``frame``, the photo is the ROI cut from it at
    :data:`PHOTO_SIDE`, and its scale follows from ``field_width_mm`` (the width
    the full still covers); without, the model input itself, with no scale.
    ``bundle`` (the analyzer's) names the bundle and, when adapted, its site and date.
    """
    from device.runtime.explainer import overlay

    decision = analysis.decision
    image = analysis.model_input
    scale = None
    if frame is not None:
        try:
            image = roi_photo(frame, analysis.roi_box)
            x0, _, x1, _ = analysis.roi_box
            scale = photo_scale(field_width_mm, frame.shape[1], x1 - x0, image.shape[1])
        except ValueError as exc:
            log.warning("showing the model input instead of the still's ROI: %s", exc)
    heat = None
    if analysis.heatmap is not None:
        heat = overlay(image, analysis.heatmap, heatmap_alpha)
    top3 = tuple(
        RankedName(
            name=r.name, code=r.code, probability=float(r.probability), malignant=r.malignant
        )
        for r in decision.top3
    )
    return ResultView(
        scan_key=scan_key,
        image=image,
        overlay=heat,
        legend=legend if legend is not None else legend_colours(),
        heatmap=analysis.heatmap,
        label=decision.label,
        top3=top3,
        probabilities=dict(decision.probabilities),
        p_malignant=float(decision.p_malignant),
        risk_tier=decision.risk_tier,
        referral_threshold=float(referral_threshold),
        quality=dict(quality),
        unfamiliar=bool(getattr(decision, "unfamiliar", False)),
        unusual_light=bool(getattr(analysis, "unusual_light", False)),
        mm_per_px=scale,
        bundle_id=str(getattr(bundle, "bundle_id", "") or ""),
        bundle_label=bundle_label_of(bundle),
    )


def bundle_label_of(bundle: Any) -> str | None:
    """ "adapted for <site>, <date>" for an adapted bundle, else None.

    Read from ``Manifest.adaptation_label`` where the runtime provides it; for a
    manifest without that property, from its "adaptation" section's site and date.
    """
    manifest = getattr(bundle, "manifest", None)
    if manifest is None:
        return None
    label = getattr(manifest, "adaptation_label", None)
    if isinstance(label, str) and label:
        return label
    adaptation = getattr(manifest, "adaptation", None)
    if adaptation is None:
        return None
    get = adaptation.get if isinstance(adaptation, dict) else lambda k: getattr(adaptation, k, None)
    site, when = get("site"), str(get("adapted_at") or "")[:10]
    if not site:
        return None
    return f"adapted for {site}, {when}" if when else f"adapted for {site}"


def bundle_text(bundle_id: str, bundle_label: str | None) -> str:
    """The bundle line of a result: "Model <id>", and "· adapted for <site>, <date>"."""
    if not bundle_id and not bundle_label:
        return ""
    text = f"Model {bundle_id or 'unknown'}"
    return f"{text} · {bundle_label}" if bundle_label else text


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
    measure: bool = True,
) -> ScanRecord:
    """The record to save for ``result``; the heatmap saved is the overlay shown on screen.

    With ``measure``, the lesion's share of the photo is measured (once, at save) and
    kept in ``extra["lesion_area"]`` for follow-up.
    """
    extra = {
        "referral_threshold": f"{result.referral_threshold:.6f}",
        "unfamiliar": "1" if result.unfamiliar else "0",
        "unusual_light": "1" if result.unusual_light else "0",
    }
    area = result.lesion_area
    if area is None and measure:
        area = lesion_area_fraction(result.image)
    if area is not None:
        extra["lesion_area"] = f"{area:.6f}"
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
        patient_ref=result.patient_ref,
        body_site=result.body_site,
        extra=extra,
        body_side=result.body_side,
        lesion=result.lesion,
        mm_per_px=result.mm_per_px,
        bundle_label=result.bundle_label,
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
        unfamiliar=record.extra.get("unfamiliar") == "1",
        unusual_light=record.extra.get("unusual_light") == "1",
        patient_ref=record.patient_ref,
        body_site=record.body_site,
        body_side=record.body_side,
        lesion=record.lesion,
        mm_per_px=record.mm_per_px,
        bundle_id=record.bundle_id,
        bundle_label=record.bundle_label,
        lesion_area=_float_or_none(record.extra.get("lesion_area")),
        corrects=record.corrects,
        damaged=tuple(sorted(record.damaged)),
    )


def _float_or_none(text: str | None) -> float | None:
    try:
        return None if text is None else float(text)
    except ValueError:
        return None
