"""The device runtime with a site-adapted head: manifest section, loader checks, float head, CAM."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from adaptation_support import ISIC_DIR, perturbed_head, write_adapted
from bundle_factory import make_bundle, synthetic_frame

from clinic.adaptation.base_head import base_head
from device.errors import AdaptationError, BundleChecksumError, ManifestError
from device.imaging.io import read_image
from device.imaging.pipeline import preprocess
from device.runtime.analyzer import Analyzer
from device.runtime.bundle import DEFAULT_BUNDLE_DIR, load_bundle, sha256_file
from device.runtime.classifier import LinearHead
from device.runtime.explainer import head_gradcam
from device.runtime.manifest import MANIFEST_NAME, Manifest


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory):
    return load_bundle(make_bundle(tmp_path_factory.mktemp("tiny") / "base"))


@pytest.fixture(scope="module")
def tiny_adapted(tiny_base, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("adapted") / "bundle"
    return write_adapted(out, tiny_base, perturbed_head(tiny_base))


def _edit_manifest(folder: Path, edit) -> None:
    path = folder / MANIFEST_NAME
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data, indent=2))


def _copy(src: Path, dest: Path) -> Path:
    dest.mkdir()
    for f in src.iterdir():
        (dest / f.name).write_bytes(f.read_bytes())
    return dest


def test_shipped_base_bundle_still_verifies_and_has_no_adaptation() -> None:
    bundle = load_bundle(DEFAULT_BUNDLE_DIR)
    assert bundle.manifest.is_sealed
    assert bundle.manifest.adaptation is None
    assert bundle.manifest.adaptation_label is None
    assert bundle.head is None
    assert "adaptation" not in json.loads(bundle.manifest.to_json())


def test_adapted_bundle_loads_sealed_with_its_label(tiny_base, tiny_adapted: Path) -> None:
    bundle = load_bundle(tiny_adapted)
    assert bundle.manifest.is_sealed
    assert bundle.manifest.adaptation_label == "adapted for clinic-north, 2026-12-07"
    assert bundle.manifest.adaptation.base_bundle_id == tiny_base.bundle_id
    assert bundle.head is not None
    assert sha256_file(tiny_adapted / "model.tflite") == sha256_file(
        tiny_base.path / "model.tflite"
    )
    assert sha256_file(tiny_adapted / "gradcam.tflite") == sha256_file(
        tiny_base.path / "gradcam.tflite"
    )


def test_adaptation_is_a_sealed_decision_field(tiny_adapted: Path, tmp_path: Path) -> None:
    for n, edit in enumerate(
        (
            lambda d: d["calibration"].update(referral_threshold=0.9),
            lambda d: d["adaptation"].update(site="another-clinic"),
            lambda d: d.pop("adaptation"),
        )
    ):
        folder = _copy(tiny_adapted, tmp_path / f"edit{n}")
        _edit_manifest(folder, edit)
        with pytest.raises(ManifestError):
            load_bundle(folder)


def test_head_from_another_trunk_or_spec_is_refused(tiny_adapted: Path, tmp_path: Path) -> None:
    for n, field in enumerate(("base_model_sha256", "base_preprocessing_sha256")):
        folder = _copy(tiny_adapted, tmp_path / f"other{n}")

        def edit(data, field=field):
            data["adaptation"][field] = "0" * 64
            data["decision_sha256"] = Manifest.model_validate(data).decision_digest()

        _edit_manifest(folder, edit)
        with pytest.raises(AdaptationError, match=field):
            load_bundle(folder)


def test_head_of_the_wrong_shape_is_refused_and_nothing_is_left(tiny_base, tmp_path) -> None:
    head = base_head(tiny_base)
    wrong = LinearHead(weights=head.weights[:-1], bias=head.bias)
    with pytest.raises(AdaptationError, match="shape"):
        write_adapted(tmp_path / "wrong", tiny_base, wrong)
    assert list(tmp_path.iterdir()) == []


def test_changed_head_file_is_refused(tiny_adapted: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_adapted, tmp_path / "changed")
    data = bytearray((folder / "head.npz").read_bytes())
    data[-40] ^= 0xFF
    (folder / "head.npz").write_bytes(bytes(data))
    with pytest.raises(BundleChecksumError, match=r"head\.npz"):
        load_bundle(folder)


def test_head_npz_without_arrays_is_an_adaptation_error() -> None:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, W=np.zeros((4, 3), np.float64), b=np.zeros(3, np.float32))
    with pytest.raises(AdaptationError, match="float32"):
        LinearHead.from_bytes(buffer.getvalue())
    with pytest.raises(AdaptationError, match="readable"):
        LinearHead.from_bytes(b"not a zip")


def test_classifier_and_gradcam_use_the_adapted_head(tiny_base, tiny_adapted: Path) -> None:
    adapted = load_bundle(tiny_adapted)
    frame = synthetic_frame(4, np.random.default_rng(1))
    x = preprocess(frame, tiny_base.preprocess).model_input
    base_out = tiny_base.classifier.classify(x)
    out = adapted.classifier.classify(x)
    np.testing.assert_array_equal(out.feature_map, base_out.feature_map)
    expected = out.feature_map.mean(axis=(0, 1)) @ adapted.head.weights + adapted.head.bias
    np.testing.assert_allclose(out.logits, expected, rtol=1e-5, atol=1e-5)
    assert not np.allclose(out.logits, base_out.logits, atol=0.5)
    for c in range(7):
        cam = adapted.explainer.explain(out.feature_map, c)
        h, w = out.feature_map.shape[:2]
        np.testing.assert_allclose(cam.weights, adapted.head.weights[:, c] / (h * w), rtol=1e-6)
        base_cam = tiny_base.explainer.explain(out.feature_map, c)
        assert not np.allclose(cam.weights, base_cam.weights, atol=1e-4)


def test_analyzer_runs_an_adapted_bundle(tiny_adapted: Path) -> None:
    analyzer = Analyzer.from_path(tiny_adapted)
    result = analyzer.analyze(synthetic_frame(5, np.random.default_rng(2)))
    assert result.heatmap is not None
    assert result.gradcam.class_index == result.decision.label_index
    assert np.isclose(result.probabilities.sum(), 1.0)


def _isic_images(n: int) -> list[Path]:
    labels = ISIC_DIR / "labels.csv"
    if not labels.is_file():
        pytest.skip("isic-archive not present at ../shared/data/isic-archive")
    with labels.open() as handle:
        ids = [row["image_id"] for row in csv.DictReader(handle)]
    rng = np.random.default_rng(7)
    return [ISIC_DIR / "images" / f"{i}.jpg" for i in rng.choice(ids, n, replace=False)]


# The float head on the dequantized feature map vs the model's int8 logits: the int8
# model requantizes the pooled features (scale 0.019) and the logits (one step 0.043);
# measured at most 0.95 steps on 20 images. Allowed here: 2 steps.
MAX_LOGIT_STEPS = 2.0


def test_float_base_head_reproduces_the_shipped_int8_logits() -> None:
    bundle = load_bundle(DEFAULT_BUNDLE_DIR)
    head = base_head(bundle)
    step = bundle.manifest.classifier.logits.quantization.scale
    for path in _isic_images(6):
        out = bundle.classifier.classify(
            preprocess(read_image(path), bundle.preprocess).model_input
        )
        error = np.abs(head.logits(out.feature_map) - out.logits).max() / step
        assert error <= MAX_LOGIT_STEPS, f"{path.name}: {error:.2f} steps"
        # The numpy CAM of the base head is the gradient model's CAM, up to the int8
        # rounding of the weights (gradcam.tflite holds the float head).
        for c in (4, 5):
            ours = head_gradcam(out.feature_map, head, c)
            theirs = bundle.explainer.explain(out.feature_map, c)
            assert np.corrcoef(ours.weights, theirs.weights)[0, 1] > 0.999
            if theirs.heatmap.max() > 0:
                corr = np.corrcoef(ours.heatmap.ravel(), theirs.heatmap.ravel())[0, 1]
                assert corr > 0.99


def test_a_head_without_its_adaptation_section_is_refused(tiny_adapted: Path, tmp_path) -> None:
    folder = _copy(tiny_adapted, tmp_path / "lost")

    def drop(data):
        data.pop("adaptation")
        data["decision_sha256"] = Manifest.model_validate(
            {**data, "files": {k: v for k, v in data["files"].items() if k != "head.npz"}}
        ).decision_digest()

    _edit_manifest(folder, drop)
    with pytest.raises(ManifestError, match="lost its adaptation"):
        load_bundle(folder)
