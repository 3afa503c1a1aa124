"""The device pipeline (Analyzer) and its parts: classifier, explainer, decision."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from bundle_factory import (
    CLASS_COLOURS,
    GOLDEN_FILE,
    golden_inputs,
    make_bundle,
    synthetic_frame,
    synthetic_frames,
)

from conversion.manifest import default_labels
from device.errors import ImageError
from device.imaging.pipeline import preprocess
from device.labels import class_index
from device.runtime import Analyzer, decide, load_bundle
from device.runtime.classifier import softmax
from device.runtime.explainer import colorize, normalize_cam, overlay, upsample
from device.runtime.interpreter import available_runtimes
from device.runtime.manifest import Calibration

LABELS = default_labels()


@pytest.fixture(scope="module")
def analyzer(tmp_path_factory: pytest.TempPathFactory) -> Analyzer:
    return Analyzer.from_path(make_bundle(tmp_path_factory.mktemp("bundle") / "b"))


def test_analysis_of_a_frame_has_everything_the_screen_needs(analyzer: Analyzer) -> None:
    frame = synthetic_frame(class_index("mel"), np.random.default_rng(1))
    result = analyzer.analyze(frame)
    assert result.model_input.shape == (224, 224, 3) and result.model_input.dtype == np.uint8
    assert result.probabilities.shape == (7,)
    assert result.probabilities.sum() == pytest.approx(1.0)
    assert result.lesion_found
    x0, y0, x1, y1 = result.roi_box
    assert 0 <= x0 < x1 <= frame.shape[1] and 0 <= y0 < y1 <= frame.shape[0]
    assert result.heatmap is not None and result.heatmap.shape == (224, 224)
    assert result.heatmap.min() >= 0.0 and result.heatmap.max() <= 1.0
    assert result.gradcam is not None and result.gradcam.class_index == result.decision.label_index
    shown = result.overlay()
    assert shown is not None and shown.shape == (224, 224, 3) and shown.dtype == np.uint8
    assert set(result.timings) == {"preprocess", "classify", "explain"}
    assert result.risk_tier in ("refer", "uncertain", "monitor")
    assert result.decision.top3[0].code == result.label


def test_synthetic_lesions_are_classified_by_colour(analyzer: Analyzer) -> None:
    frames, labels = synthetic_frames(35, seed=11)
    predicted = np.array([analyzer.analyze(f, explain=False).decision.label_index for f in frames])
    # The tiny model reaches about 0.9 on fresh synthetic lesions; 0.75 leaves int8 slack.
    assert np.mean(predicted == labels) >= 0.75


def test_analyzer_equals_classifier_on_the_preprocessed_input(analyzer: Analyzer) -> None:
    frame = synthetic_frame(class_index("vasc"), np.random.default_rng(2))
    result = analyzer.analyze(frame, explain=False)
    assert result.heatmap is None and result.overlay() is None
    direct = analyzer.bundle.classifier.classify(preprocess(frame, analyzer.spec).model_input)
    np.testing.assert_array_equal(direct.logits, result.logits)
    expected = softmax(result.logits, analyzer.calibration.temperature)
    np.testing.assert_allclose(result.probabilities, expected)


def test_temperature_from_the_manifest_softens_probabilities(tmp_path: Path) -> None:
    frame = synthetic_frame(class_index("mel"), np.random.default_rng(3))
    sharp = Analyzer.from_path(make_bundle(tmp_path / "a", calibration={"temperature": 1.0}))
    soft = Analyzer.from_path(make_bundle(tmp_path / "b", calibration={"temperature": 4.0}))
    a, b = sharp.analyze(frame, explain=False), soft.analyze(frame, explain=False)
    assert a.label == b.label
    assert b.confidence < a.confidence


def test_explaining_another_class_gives_another_map(analyzer: Analyzer) -> None:
    frame = synthetic_frame(class_index("nv"), np.random.default_rng(4))
    result = analyzer.analyze(frame)
    heatmaps = [analyzer.explain_class(result, c) for c in range(7)]
    assert all(h.shape == (224, 224) for h in heatmaps)
    differing = sum(not np.allclose(heatmaps[result.decision.label_index], h) for h in heatmaps)
    assert differing >= 5


def test_classifier_rejects_wrong_input(analyzer: Analyzer) -> None:
    with pytest.raises(ImageError, match="224"):
        analyzer.bundle.classifier.classify(np.zeros((100, 100, 3), np.uint8))
    with pytest.raises(ImageError):
        analyzer.bundle.classifier.classify(np.zeros((224, 224, 3), np.float32))


def test_explainer_rejects_bad_class(analyzer: Analyzer) -> None:
    fm_shape = analyzer.bundle.manifest.classifier.feature_map.shape[1:]
    with pytest.raises(ValueError, match="class_index"):
        analyzer.bundle.explainer.explain(np.zeros(fm_shape, np.float32), 7)


def probs_with(**values: float) -> np.ndarray:
    p = np.zeros(7)
    for code, v in values.items():
        p[class_index(code)] = v
    return p


CAL = Calibration(temperature=1.0, referral_threshold=0.3, uncertainty_threshold=0.5)


def test_decision_refers_when_malignant_probability_reaches_threshold() -> None:
    d = decide(probs_with(nv=0.7, mel=0.2, bcc=0.1), LABELS, CAL)
    assert d.p_malignant == pytest.approx(0.3)
    assert d.risk_tier == "refer"
    assert d.label == "nv" and d.name == "Melanocytic nevus (mole)"
    assert [(r.code, r.malignant) for r in d.top3] == [("nv", False), ("mel", True), ("bcc", True)]


def test_referral_wins_over_uncertainty() -> None:
    d = decide(probs_with(nv=0.35, mel=0.33, bkl=0.32), LABELS, CAL)
    assert d.confidence < CAL.uncertainty_threshold
    assert d.risk_tier == "refer"


def test_decision_uncertain_then_monitor() -> None:
    uncertain = decide(probs_with(nv=0.45, bkl=0.4, mel=0.15), LABELS, CAL)
    assert uncertain.risk_tier == "uncertain"
    monitor = decide(probs_with(nv=0.8, bkl=0.1, mel=0.1), LABELS, CAL)
    assert monitor.risk_tier == "monitor"
    assert monitor.probabilities["nv"] == pytest.approx(0.8)


def test_decision_validates_shape() -> None:
    with pytest.raises(ValueError, match="shape"):
        decide(np.ones(6) / 6, LABELS, CAL)


def test_normalize_upsample_and_colour_helpers() -> None:
    cam = np.array([[0.0, 1.0], [2.0, 4.0]], np.float32)
    heat = normalize_cam(cam)
    assert heat.max() == 1.0 and heat[0, 0] == 0.0
    assert not normalize_cam(np.zeros((7, 7))).any()
    big = upsample(heat, 50, 60)
    assert big.shape == (50, 60) and big.min() >= 0.0 and big.max() <= 1.0
    # Smooth, not blocky: many distinct levels, not just the 4 input values.
    assert len(np.unique(np.round(big, 3))) > 20
    ends = colorize(np.array([[0.0, 1.0]]))
    # Viridis runs from dark purple to yellow.
    assert ends[0, 0, 2] > ends[0, 0, 1] and ends[0, 1, 0] > 200 and ends[0, 1, 2] < 100


def test_overlay_leaves_regions_without_evidence_untouched() -> None:
    image = np.full((40, 40, 3), 120, np.uint8)
    heat = np.zeros((40, 40), np.float32)
    heat[:20] = 1.0
    out = overlay(image, heat, alpha=0.6)
    np.testing.assert_array_equal(out[30:], image[30:])
    assert not np.array_equal(out[:10], image[:10])


def test_colour_palette_is_distinct() -> None:
    assert len(set(CLASS_COLOURS)) == 7


def test_bundle_loaded_once_serves_many_frames(tmp_path: Path) -> None:
    bundle = load_bundle(make_bundle(tmp_path / "b"))
    analyzer = Analyzer(bundle)
    frames, _ = synthetic_frames(3, seed=5)
    first = [analyzer.analyze(f, explain=False).logits for f in frames]
    again = [analyzer.analyze(f, explain=False).logits for f in frames]
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)


def test_int8_logits_match_the_golden_file_in_every_runtime(tmp_path: Path) -> None:
    """Golden file: LiteRT logits recorded when the tiny model was built.

    Runtimes differ by a few int8 steps, so the tolerance is stated in steps of
    the logits tensor, and the top-1 class must not change.
    """
    golden = json.loads(GOLDEN_FILE.read_text())
    bundle_dir = make_bundle(tmp_path / "b")
    assert golden["model_sha256"] == load_bundle(bundle_dir).model_sha256
    images, labels = golden_inputs()
    assert labels.tolist() == golden["labels"]
    expected = np.array(golden["logits"])
    for runtime in available_runtimes():
        clf = load_bundle(bundle_dir, runtime=runtime).classifier
        got = np.stack([clf.classify(x).logits for x in images])
        steps = np.abs(got - expected).max() / golden["logit_scale"]
        assert steps <= 3, f"{runtime}: logits differ by {steps:.1f} steps"
        assert (got.argmax(1) == expected.argmax(1)).all(), runtime
