"""Photos of no lesion get Retake or Uncertain, never Monitor (issue 28 item 3).

The images are drawn here with the non-lesion set's own drawing code
(:mod:`training.nonlesion_set`), on skin drawn under the training images' light
(the HAM10000 skin patches of the real set are data, not committed).
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

from device.config import DeviceConfig
from device.evaluation.nonlesion import device_outcome, evaluate, markdown
from device.imaging.lesion_presence import colour_doubt, measure_lesion
from device.imaging.quality import REASON_INK, REASON_NO_LESION, analysis_copy, assess_quality
from device.phantoms import SKIN_CHROMATICITY, make_lesion
from device.runtime.analyzer import Analyzer
from device.runtime.decision import MONITOR_FAMILIARITY_SHARE, decide, is_atypical
from device.runtime.manifest import Calibration, LabelSpec
from training import nonlesion_set as nl

THRESHOLDS = DeviceConfig().quality_thresholds()


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer.from_path(None)


def skin(seed: int) -> np.ndarray:
    """Plain skin at the set's frame size: mottled, fine grain, soft vignetting."""
    rng = np.random.default_rng(seed)
    width, height = nl.FRAME
    tone = SKIN_CHROMATICITY * rng.uniform(170, 215)
    image = np.ones((height, width, 3), np.float32) * tone.astype(np.float32)
    for sigma, scale in ((6, 8), (3, 0.7)):
        noise = cv2.GaussianBlur(
            rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), scale
        )
        image += (noise * sigma / (noise.std() + 1e-6))[..., None]
    return np.clip(image, 0, 255).astype(np.uint8)


def drawn(category: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(100 + seed)
    if category == "fabric":
        return nl.draw_fabric(rng)
    if category == "phantom":
        return nl.draw_phantom(seed)
    draw = {
        "skin": lambda image, _rng: image,
        "ink": nl.draw_ink,
        "tattoo": nl.draw_tattoo,
        "plaster": nl.draw_plaster,
        "text": nl.draw_text,
        "ink_ellipse": nl.draw_ink_ellipse,
    }[category]
    return draw(skin(seed), rng)


@pytest.mark.parametrize("category", nl.CATEGORIES)
def test_no_category_of_the_non_lesion_set_is_shown_as_monitor(analyzer, category):
    screens = []
    for seed in range(3):
        image = drawn(category, seed)
        assert image.shape == (nl.FRAME[1], nl.FRAME[0], 3) and image.dtype == np.uint8
        screens.append(device_outcome(image, analyzer, THRESHOLDS).screen)
    assert "monitor" not in screens, (category, screens)


@pytest.mark.parametrize("seed", range(6))
def test_a_blue_ink_ellipse_on_skin_is_never_monitor(analyzer, seed):
    image = nl.draw_ink_ellipse(skin(seed), np.random.default_rng(seed))
    outcome = device_outcome(image, analyzer, THRESHOLDS)
    assert outcome.screen in ("retake", "uncertain"), outcome


def test_the_gate_names_saturated_blue_ink():
    """The hue and chroma of ballpoint-blue ink are no pigment of the skin: Retake."""
    image = skin(7)
    painted = image.copy()
    cv2.ellipse(painted, (320, 240), (90, 60), 20, 0, 360, nl.PEN_COLOURS["blue"], -1)
    image = cv2.addWeighted(image, 0.15, painted, 0.85, 0)
    assert REASON_INK in assess_quality(image, THRESHOLDS).reasons


def test_plain_skin_and_pen_strokes_have_no_lesion_colour():
    plain = measure_lesion(analysis_copy(skin(1)))
    strokes = measure_lesion(analysis_copy(nl.draw_text(skin(1), np.random.default_rng(3))))
    nevus = measure_lesion(analysis_copy(make_lesion(0, "nevus").image))
    assert plain.colour_distance < THRESHOLDS.faint_lesion_colour_distance
    assert strokes.colour_distance < THRESHOLDS.faint_lesion_colour_distance
    assert nevus.found and nevus.colour_distance > 3 * THRESHOLDS.faint_lesion_colour_distance
    assert plain.ink_fraction == 0.0


def test_a_faint_but_coloured_lesion_still_passes_the_gate():
    """Low grey contrast is no refusal when the region's colour clearly differs (pink)."""
    image = skin(2).astype(np.float32)
    height, width = image.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width]
    inside = ((xs - width / 2) / 120) ** 2 + ((ys - height / 2) / 90) ** 2 < 1
    image[inside] = 0.55 * image[inside] + 0.45 * np.array([235, 120, 140], np.float32)
    frame = cv2.GaussianBlur(np.clip(image, 0, 255).astype(np.uint8), (0, 0), 1.5)
    # A contrast limit above this lesion's grey contrast: only its colour can pass it.
    faint = dataclasses.replace(THRESHOLDS, min_lesion_contrast=0.08)
    report = assess_quality(frame, faint)
    assert report.lesion_contrast < faint.min_lesion_contrast
    assert report.lesion_colour_distance >= faint.faint_lesion_colour_distance
    assert report.passed, report.reasons
    stricter = dataclasses.replace(faint, faint_lesion_colour_distance=50.0)
    assert assess_quality(frame, stricter).reasons == (REASON_NO_LESION,)


def test_the_monitor_needs_a_typical_frame_on_constructed_inputs():
    labels = [LabelSpec(code="mel", name="Melanoma", malignant=True),
              LabelSpec(code="nv", name="Nevus", malignant=False)]  # fmt: skip
    cal = Calibration(temperature=1.0, referral_threshold=0.1, uncertainty_threshold=0.5)
    confident_benign = np.array([0.02, 0.98])
    threshold = 2.0
    typical = MONITOR_FAMILIARITY_SHARE * threshold - 1e-6
    atypical = MONITOR_FAMILIARITY_SHARE * threshold + 1e-6
    assert not is_atypical(typical, threshold) and is_atypical(atypical, threshold)
    assert decide(confident_benign, labels, cal).risk_tier == "monitor"
    assert decide(confident_benign, labels, cal, atypical=True).risk_tier == "uncertain"
    # A referral stays a referral.
    assert decide(np.array([0.3, 0.7]), labels, cal, atypical=True).risk_tier == "refer"


def test_the_bench_counts_every_screen_per_category(tmp_path: Path):
    rows = []
    for category in ("ink_ellipse", "fabric"):
        (tmp_path / category).mkdir()
        for index in range(2):
            name = f"{category}_{index}"
            image = drawn(category, index)
            cv2.imwrite(str(tmp_path / category / f"{name}.png"), image[..., ::-1])
            rows.append((name, category, "test", "drawn", f"{category}/{name}.png"))
    with (tmp_path / nl.INDEX_FILE).open("w", newline="") as handle:
        csv.writer(handle).writerows([("image_id", "category", "portion", "source", "file"), *rows])
    report = evaluate(tmp_path, None, None, portion="test")
    assert set(report["nonlesion"]) == {"ink_ellipse", "fabric"}
    for counts in report["nonlesion"].values():
        assert (
            counts["n"] == 2
            and sum(counts[o] for o in ("retake", "uncertain", "monitor", "refer")) == 2
        )
    assert report["nonlesion_monitor"] == 0
    assert "| ink_ellipse | 2 |" in markdown(report)


def test_a_plaster_pad_or_faint_blue_ink_is_never_reassuring():
    """Colours no lesion photo shows much of make the frame atypical: never Monitor."""
    plaster = nl.draw_plaster(skin(4), np.random.default_rng(4))
    image = skin(5)
    painted = image.copy()
    cv2.ellipse(painted, (320, 240), (100, 70), 0, 0, 360, (60, 75, 150), -1)
    faint_ink = cv2.addWeighted(image, 0.2, painted, 0.8, 0)
    assert colour_doubt(plaster) and colour_doubt(faint_ink)
    assert not colour_doubt(skin(5))
    assert not colour_doubt(make_lesion(1, "nevus").image)
    assert not colour_doubt(make_lesion(1, "melanoma").image)
