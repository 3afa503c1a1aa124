"""Analysis -> ResultView -> ScanRecord -> ResultView: what is shown is what is saved."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from app_fakes import sample_result

from device.app.results import (
    PHOTO_SIDE,
    record_from_result,
    result_from_analysis,
    result_from_record,
    roi_photo,
)
from device.runtime.decision import RankedClass


@dataclass
class StubDecision:
    label: str
    top3: tuple
    probabilities: dict
    p_malignant: float
    risk_tier: str


@dataclass
class StubAnalysis:
    """The fields of device.runtime.analyzer.Analysis that the app reads."""

    decision: StubDecision
    model_input: np.ndarray
    roi_box: tuple
    heatmap: np.ndarray | None


def analysis(heatmap: np.ndarray | None = None) -> StubAnalysis:
    top3 = (
        RankedClass(4, "mel", "Melanoma", 0.6, True),
        RankedClass(5, "nv", "Melanocytic nevus (mole)", 0.3, False),
        RankedClass(2, "bkl", "Benign keratosis", 0.05, False),
    )
    probabilities = {"akiec": 0.0, "bcc": 0.02, "bkl": 0.05, "df": 0.01, "mel": 0.6,
                     "nv": 0.3, "vasc": 0.02}  # fmt: skip
    decision = StubDecision("mel", top3, probabilities, 0.62, "refer")
    return StubAnalysis(decision, np.zeros((224, 224, 3), np.uint8), (100, 50, 300, 250), heatmap)


def test_photo_is_the_roi_of_the_still():
    frame = np.zeros((400, 500, 3), np.uint8)
    frame[50:250, 100:300] = (200, 40, 40)
    photo = roi_photo(frame, (100, 50, 300, 250))
    assert photo.shape == (PHOTO_SIDE, PHOTO_SIDE, 3)
    assert (photo == (200, 40, 40)).all()


def test_empty_roi_is_refused():
    with pytest.raises(ValueError, match="empty ROI"):
        roi_photo(np.zeros((10, 10, 3), np.uint8), (20, 20, 30, 30))


def test_view_of_an_analysis_keeps_the_decision_and_aligns_the_heatmap():
    frame = np.full((400, 500, 3), 128, np.uint8)
    heat = np.zeros((224, 224), np.float32)
    heat[:, 112:] = 1.0  # evidence on the right half only
    view = result_from_analysis(
        analysis(heat), referral_threshold=0.4, quality={"sharpness": 80.0}, scan_key="s1",
        frame=frame,
    )  # fmt: skip
    assert [r.code for r in view.top3] == ["mel", "nv", "bkl"]
    assert view.top3[0].malignant and view.risk_tier == "refer"
    assert view.referral_threshold == 0.4
    changed = np.any(view.overlay != view.image, axis=2)
    assert not changed[:, : PHOTO_SIDE // 2 - 8].any()
    assert changed[:, PHOTO_SIDE // 2 + 8 :].all()
    assert view.legend is not None and view.legend.shape[1] == 3


def test_without_a_heatmap_there_is_no_overlay():
    view = result_from_analysis(analysis(None), referral_threshold=0.4, quality={}, scan_key="s")
    assert view.overlay is None
    assert view.image.shape == (224, 224, 3)  # no still given: the model input


def test_saved_record_reads_back_as_the_same_result():
    shown = sample_result(p_malignant=0.45, tier="refer")
    record = record_from_result(
        shown, device_id="dev-1", bundle_id="b1", bundle_sha256="a" * 64,
        created_at="2025-03-01T14:02:00+00:00",
    )  # fmt: skip
    assert record.label == "nv" and record.risk_tier == "refer"
    assert record.heatmap is shown.overlay
    back = result_from_record(record, default_threshold=0.9)
    assert back.saved_id == record.scan_id
    assert [r.code for r in back.top3] == [r.code for r in shown.top3]
    assert back.referral_threshold == pytest.approx(0.4)  # from the record, not the default
    assert back.p_malignant == pytest.approx(0.45)
