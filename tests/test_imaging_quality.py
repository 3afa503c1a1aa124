"""The quality gate passes good frames and names an actionable reason for bad ones."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from device.imaging.quality import (
    REASON_BLUR,
    REASON_BRIGHT,
    REASON_DARK,
    REASON_NO_LESION,
    QualityThresholds,
    assess_quality,
)
from device.phantoms import make_phantom

THRESHOLDS = QualityThresholds()


@pytest.mark.parametrize("seed", range(5))
def test_good_phantoms_pass(seed):
    report = assess_quality(make_phantom(seed).image, THRESHOLDS)
    assert report.passed, report.reasons


@pytest.mark.parametrize(
    "fault, reason",
    [
        ("blur", REASON_BLUR),
        ("dark", REASON_DARK),
        ("black", REASON_DARK),
        ("bright", REASON_BRIGHT),
        ("no_lesion", REASON_NO_LESION),
    ],
)
def test_faults_fail_with_their_reason(fault, reason):
    report = assess_quality(make_phantom(3, fault=fault).image, THRESHOLDS)
    assert not report.passed
    assert reason in report.reasons


def test_reasons_are_actionable_words():
    for reason in (REASON_BLUR, REASON_DARK, REASON_BRIGHT, REASON_NO_LESION):
        assert "—" in reason  # "what is wrong — what to do"


def test_sharpness_falls_with_blur_on_a_real_image(ham_dir):
    path = sorted((ham_dir / "images").glob("*.jpg"))[0]
    image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    sharp = assess_quality(image, THRESHOLDS)
    blurred = assess_quality(cv2.GaussianBlur(image, (0, 0), 2.5), THRESHOLDS)
    assert blurred.sharpness < sharp.sharpness / 3
    assert REASON_BLUR in blurred.reasons


def test_metrics_are_scale_independent():
    frame = make_phantom(4, size=(960, 1280)).image
    small = cv2.resize(frame, (640, 480), interpolation=cv2.INTER_AREA)
    big_report = assess_quality(frame, THRESHOLDS)
    small_report = assess_quality(small, THRESHOLDS)
    assert big_report.sharpness == pytest.approx(small_report.sharpness, rel=0.25)
    assert big_report.lesion_contrast == pytest.approx(small_report.lesion_contrast, abs=0.03)


def test_metrics_dict_has_every_number():
    metrics = assess_quality(make_phantom(1).image, THRESHOLDS).metrics()
    assert set(metrics) == {"sharpness", "dark_fraction", "bright_fraction", "lesion_contrast"}
    assert all(np.isfinite(v) for v in metrics.values())


def test_shipped_config_uses_the_calibrated_thresholds():
    """default.toml and the pydantic defaults must not drift from QualityThresholds."""
    from device.config import DeviceConfig, load_config

    assert load_config(system_path=Path("/nonexistent")).quality_thresholds() == THRESHOLDS
    assert DeviceConfig().quality_thresholds() == THRESHOLDS
