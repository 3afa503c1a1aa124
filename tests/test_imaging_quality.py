"""The quality gate passes good frames and names an actionable reason for bad ones."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from device.imaging.quality import (
    REASON_BLUR,
    REASON_BRIGHT,
    REASON_DARK,
    REASON_NO_COLOUR,
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
    assert set(metrics) == {
        "sharpness",
        "reblur_loss",
        "dark_fraction",
        "bright_fraction",
        "lesion_contrast",
        "colourfulness",
        "ink_fraction",
        "lesion_colour_distance",
    }
    assert all(np.isfinite(v) for v in metrics.values())


def test_shipped_config_uses_the_calibrated_thresholds():
    """default.toml and the pydantic defaults must not drift from QualityThresholds."""
    from device.config import DeviceConfig, load_config

    assert load_config(system_path=Path("/nonexistent")).quality_thresholds() == THRESHOLDS
    assert DeviceConfig().quality_thresholds() == THRESHOLDS


def _grey(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)


def _ham(ham_dir: Path, image_id: str) -> np.ndarray:
    from device.imaging.io import read_image

    return read_image(ham_dir / "images" / f"{image_id}.jpg")


@pytest.mark.parametrize("seed", range(3))
def test_a_greyscale_photo_is_refused_for_want_of_colour(seed):
    frame = make_phantom(seed).image
    assert assess_quality(frame, THRESHOLDS).passed
    report = assess_quality(_grey(frame), THRESHOLDS)
    assert report.reasons == (REASON_NO_COLOUR,)
    assert "colour image needed" in REASON_NO_COLOUR


def test_a_few_coloured_marks_do_not_make_a_grey_photo_colourful():
    frame = _grey(make_phantom(2).image)
    frame[:30, :] = (220, 40, 40)  # a red ruler along the top, 6% of the frame
    assert REASON_NO_COLOUR in assess_quality(frame, THRESHOLDS).reasons


@pytest.mark.dataset
def test_grey_and_desaturated_melanoma_is_refused_but_the_colour_photo_passes(ham_dir):
    from training.quality_calibration import desaturate

    photo = _ham(ham_dir, "ISIC_0025964")  # a melanoma; the grey copy said Monitor 3%
    assert REASON_NO_COLOUR not in assess_quality(photo, THRESHOLDS).reasons
    assert assess_quality(_grey(photo), THRESHOLDS).reasons == (REASON_NO_COLOUR,)
    assert assess_quality(desaturate(photo, 0.05), THRESHOLDS).reasons == (REASON_NO_COLOUR,)


@pytest.mark.dataset
def test_the_simulators_blur_fault_on_a_melanoma_is_refused(ham_dir):
    """The issue's frame: ISIC_0026993 as a 1024x768 still with camera_sim's blur fault."""
    still = cv2.resize(_ham(ham_dir, "ISIC_0026993"), (1024, 768), interpolation=cv2.INTER_LINEAR)
    assert assess_quality(still, THRESHOLDS).passed
    blurred = cv2.GaussianBlur(still, (0, 0), sigmaX=max(still.shape[:2]) / 60.0)
    report = assess_quality(blurred, THRESHOLDS)
    assert report.reasons == (REASON_BLUR,)
    assert report.sharpness > 12  # the old gate (Laplacian variance > 12) let it through


def test_blur_is_measured_in_analysis_pixels_whatever_the_frame_size():
    """The same blur, relative to the frame, scores alike on a 640 and a 1280 wide frame."""
    big = make_phantom(4, size=(960, 1280)).image
    small = cv2.resize(big, (640, 480), interpolation=cv2.INTER_AREA)
    for sigma in (1.0, 2.0):  # analysis pixels: 6.4x / 3.2x that on the two frames
        big_blur = assess_quality(cv2.GaussianBlur(big, (0, 0), sigma * 6.4), THRESHOLDS)
        small_blur = assess_quality(cv2.GaussianBlur(small, (0, 0), sigma * 3.2), THRESHOLDS)
        assert big_blur.reblur_loss == pytest.approx(small_blur.reblur_loss, abs=0.03)
        assert big_blur.sharpness == pytest.approx(small_blur.sharpness, rel=0.2)


def test_judged_metrics_follow_the_order_the_gate_judges_in() -> None:
    from device.imaging.quality import GATE_STAGES, judged_metrics

    everything = {m for stage in GATE_STAGES for m in stage}
    assert judged_metrics(set()) == everything
    assert judged_metrics({"dark_fraction"}) == {"dark_fraction", "bright_fraction"}
    assert judged_metrics({"colourfulness", "sharpness"}) == {
        "dark_fraction",
        "bright_fraction",
        "colourfulness",
    }
    assert judged_metrics({"reblur_loss"}) == everything


def test_the_gate_refuses_for_the_first_failing_stage_only() -> None:
    from device.imaging.quality import QualityThresholds, assess_quality, judged_metrics

    strict = QualityThresholds(min_colourfulness=1e9, min_lesion_contrast=1e9, min_sharpness=1e9)
    report = assess_quality(make_phantom(3, size=(450, 600)).image, strict)
    # Colour, contrast and sharpness all miss their limits; only colour is the reason given.
    assert len(report.reasons) == 1 and "colour" in report.reasons[0]
    assert "lesion_contrast" not in judged_metrics({"colourfulness", "lesion_contrast"})
