"""The strict bundle loader: every way a bundle can be broken gets its own named error."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bundle_factory import make_bundle, prebuilt_files

from device.errors import (
    BundleChecksumError,
    BundleError,
    BundleFileMissingError,
    BundleModelError,
    ManifestError,
    RuntimeUnavailableError,
    TensorMismatchError,
)
from device.runtime.bundle import load_bundle, read_manifest, sha256_bytes
from device.runtime.interpreter import available_runtimes

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    return make_bundle(tmp_path / "bundle")


def edit_manifest(folder: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))


def test_valid_bundle_loads_with_checked_tensors(bundle_dir: Path) -> None:
    bundle = load_bundle(bundle_dir)
    assert bundle.bundle_id == "tiny-test"
    assert bundle.model_sha256 == sha256_bytes((bundle_dir / "model.tflite").read_bytes())
    assert bundle.runtime in available_runtimes()
    assert bundle.classifier.input_size == bundle.preprocess.input_size == 224
    assert bundle.manifest.class_codes == ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(BundleFileMissingError, match="not found"):
        load_bundle(tmp_path / "nope")


def test_missing_manifest(bundle_dir: Path) -> None:
    (bundle_dir / "manifest.json").unlink()
    with pytest.raises(BundleFileMissingError, match=r"manifest\.json: missing"):
        load_bundle(bundle_dir)


def test_missing_model_file(bundle_dir: Path) -> None:
    (bundle_dir / "gradcam.tflite").unlink()
    with pytest.raises(BundleFileMissingError, match=r"gradcam\.tflite: missing"):
        load_bundle(bundle_dir)


def test_truncated_model(bundle_dir: Path) -> None:
    path = bundle_dir / "model.tflite"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(BundleChecksumError, match=r"model\.tflite: truncated"):
        load_bundle(bundle_dir)


def test_flipped_byte(bundle_dir: Path) -> None:
    path = bundle_dir / "model.tflite"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(BundleChecksumError, match=r"model\.tflite: sha256 mismatch"):
        load_bundle(bundle_dir)


def test_truncated_model_with_matching_checksum_is_refused_by_the_runtime(tmp_path: Path) -> None:
    files = prebuilt_files()
    files["model.tflite"] = files["model.tflite"][:1000]
    folder = tmp_path / "b"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    good = make_bundle(tmp_path / "good")
    manifest = json.loads((good / "manifest.json").read_text())
    manifest["files"]["model.tflite"] = {
        "sha256": sha256_bytes(files["model.tflite"]),
        "size": 1000,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleModelError, match=r"model\.tflite: cannot be loaded"):
        load_bundle(folder, runtime=available_runtimes()[0])


def test_invalid_json(bundle_dir: Path) -> None:
    (bundle_dir / "manifest.json").write_text('{"schema_version": 1,')
    with pytest.raises(ManifestError, match=r"manifest\.json: not valid JSON \(line 1"):
        load_bundle(bundle_dir)


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (lambda m: m, "temprature: unknown field"),
        (lambda m: m["calibration"], "calibration.temprature: unknown field"),
    ],
)
def test_unknown_manifest_field(bundle_dir: Path, where: Callable, expected: str) -> None:
    edit_manifest(bundle_dir, lambda m: where(m).__setitem__("temprature", 1.0))
    with pytest.raises(ManifestError, match=rf"manifest\.json: .*{expected}"):
        load_bundle(bundle_dir)


def test_missing_manifest_field(bundle_dir: Path) -> None:
    edit_manifest(bundle_dir, lambda m: m["calibration"].pop("referral_threshold"))
    with pytest.raises(ManifestError, match=r"calibration\.referral_threshold: missing field"):
        load_bundle(bundle_dir)


def test_out_of_range_threshold(bundle_dir: Path) -> None:
    edit_manifest(bundle_dir, lambda m: m["calibration"].__setitem__("referral_threshold", 1.5))
    with pytest.raises(ManifestError, match="referral_threshold"):
        load_bundle(bundle_dir)


def test_wrong_tensor_shape(bundle_dir: Path) -> None:
    def change(m: dict[str, Any]) -> None:
        m["classifier"]["feature_map"]["shape"] = [1, 14, 14, 32]
        m["gradcam"]["feature_map"]["shape"] = [1, 14, 14, 32]
        m["gradcam"]["cam"]["shape"] = [1, 14, 14]

    edit_manifest(bundle_dir, change)
    with pytest.raises(TensorMismatchError, match=r"model\.tflite: .*shape is \[1, 7, 7, 32\]"):
        load_bundle(bundle_dir)


def test_wrong_quantization(bundle_dir: Path) -> None:
    edit_manifest(
        bundle_dir, lambda m: m["classifier"]["logits"]["quantization"].__setitem__("scale", 0.5)
    )
    with pytest.raises(TensorMismatchError, match="quantization scale"):
        load_bundle(bundle_dir)


def test_wrong_tensor_name(bundle_dir: Path) -> None:
    edit_manifest(bundle_dir, lambda m: m["gradcam"]["cam"].__setitem__("name", "heat:0"))
    with pytest.raises(TensorMismatchError, match=r"gradcam\.tflite: .*'heat:0'"):
        load_bundle(bundle_dir)


def test_inconsistent_shapes_inside_manifest(bundle_dir: Path) -> None:
    edit_manifest(bundle_dir, lambda m: m["gradcam"]["feature_map"].__setitem__("shape", [1, 7]))
    with pytest.raises(ManifestError, match=r"gradcam\.feature_map\.shape"):
        load_bundle(bundle_dir)


def test_preprocessing_input_size_disagrees_with_manifest_input(bundle_dir: Path) -> None:
    edit_manifest(bundle_dir, lambda m: m["preprocessing"].__setitem__("input_size", 192))
    with pytest.raises(TensorMismatchError, match=r"preprocessing\.input_size is 192"):
        load_bundle(bundle_dir)


def test_model_whose_input_size_disagrees(bundle_dir: Path) -> None:
    # The manifest consistently claims 192 px, but the model itself takes 224.
    def change(m: dict[str, Any]) -> None:
        m["preprocessing"]["input_size"] = 192
        m["classifier"]["input"]["shape"] = [1, 192, 192, 3]

    edit_manifest(bundle_dir, change)
    with pytest.raises(TensorMismatchError, match=r"model\.tflite: the model takes 224x224"):
        load_bundle(bundle_dir)


def test_labels_that_differ_from_this_software(bundle_dir: Path) -> None:
    edit_manifest(bundle_dir, lambda m: m["labels"].reverse())
    with pytest.raises(ManifestError, match="differ from this software's classes"):
        load_bundle(bundle_dir)


def test_unknown_preprocessing_key(bundle_dir: Path) -> None:
    edit_manifest(bundle_dir, lambda m: m["preprocessing"].__setitem__("sharpen", True))
    with pytest.raises(ManifestError, match="sharpen"):
        load_bundle(bundle_dir)


def _retired_spec_5() -> dict[str, Any]:
    """The preprocessing of a spec 5 bundle, as its manifest recorded it."""
    shipped = read_manifest(ROOT / "device" / "models" / "default").preprocessing
    data = json.loads(json.dumps(shipped))
    data["version"] = 5
    data["segment"]["min_contrast"] = 8.0
    data["crop"] = {"margin": 0.2, "min_fraction": 0.8, "max_fraction": 1.5}
    data["colour"]["region"] = None
    data["resize_rule"] = "as version 4, except that the illuminant estimate is mapped to ..."
    return data


def test_a_bundle_of_a_retired_spec_is_refused_with_its_version(tmp_path: Path) -> None:
    bundle_dir = make_bundle(tmp_path / "v5", preprocessing=_retired_spec_5())
    with pytest.raises(ManifestError) as caught:
        load_bundle(bundle_dir)
    message = str(caught.value)
    assert message.startswith("manifest.json: preprocessing spec 5 is retired")
    assert "use a bundle of spec 3 or 6" in message


def test_a_spec_6_bundle_without_its_fitted_region_is_refused(tmp_path: Path) -> None:
    from device.imaging.pipeline import default_spec

    bundle_dir = make_bundle(tmp_path / "v6", preprocessing=default_spec(6).to_dict())
    with pytest.raises(ManifestError, match=r"spec 6 has no colour\.region"):
        load_bundle(bundle_dir)


def test_the_shipped_bundle_is_spec_6() -> None:
    from device.imaging.pipeline import SPEC_VERSION

    spec = load_bundle(ROOT / "device" / "models" / "default").preprocess
    assert spec.version == SPEC_VERSION == 6 and spec.colour.region is not None


def test_file_names_cannot_escape_the_bundle(bundle_dir: Path) -> None:
    def change(m: dict[str, Any]) -> None:
        m["files"]["../secret"] = m["files"]["model.tflite"]

    edit_manifest(bundle_dir, change)
    with pytest.raises(ManifestError, match=r"files\.\.\./secret"):
        read_manifest(bundle_dir)


def test_all_bundle_errors_share_a_base_class() -> None:
    for cls in (BundleFileMissingError, BundleChecksumError, ManifestError, TensorMismatchError):
        assert issubclass(cls, BundleError)
    assert issubclass(BundleFileMissingError, FileNotFoundError)


def test_unknown_runtime_is_reported(bundle_dir: Path) -> None:
    with pytest.raises(RuntimeUnavailableError, match="unknown runtime"):
        load_bundle(bundle_dir, runtime="onnx")


def test_runtime_env_var_forces_a_runtime(
    bundle_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SKINSCAN_RUNTIME", "no_such_runtime")
    with pytest.raises(RuntimeUnavailableError, match="SKINSCAN_RUNTIME"):
        load_bundle(bundle_dir)


def test_no_runtime_installed_is_reported(
    bundle_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from device.runtime import interpreter

    def missing(runtime: str) -> type:
        raise ImportError(f"No module named {runtime}")

    monkeypatch.setattr(interpreter, "_import_interpreter_class", missing)
    with pytest.raises(RuntimeUnavailableError, match="no TFLite runtime found"):
        load_bundle(bundle_dir)


def test_loading_a_bundle_imports_no_tensorflow(bundle_dir: Path) -> None:
    code = (
        "import sys; from device.runtime import Analyzer; "
        f"Analyzer.from_path({str(bundle_dir)!r}); "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize(
    ("field", "edit"),
    [
        ("referral_threshold", lambda m: m["calibration"].__setitem__("referral_threshold", 0.9)),
        ("temperature", lambda m: m["calibration"].__setitem__("temperature", 3.0)),
        ("uncertainty", lambda m: m["calibration"].__setitem__("uncertainty_threshold", 0.1)),
        ("label name", lambda m: m["labels"][4].__setitem__("name", "Freckle")),
        ("spec", lambda m: m["preprocessing"].__setitem__("hair_removal", False)),
    ],
)
def test_a_hand_edited_decision_field_is_refused(bundle_dir: Path, field: str, edit) -> None:
    load_bundle(bundle_dir)  # as converted: accepted
    edit_manifest(bundle_dir, edit)
    with pytest.raises(ManifestError, match=r"manifest\.json: edited after conversion"):
        load_bundle(bundle_dir)


def test_a_bundle_without_the_decision_checksum_is_refused(bundle_dir: Path) -> None:
    edit_manifest(bundle_dir, lambda m: m.pop("decision_sha256"))
    with pytest.raises(ManifestError, match="no decision_sha256"):
        load_bundle(bundle_dir)


def test_provenance_and_metrics_are_not_decision_fields(bundle_dir: Path) -> None:
    edit_manifest(bundle_dir, lambda m: m["metrics"].__setitem__("note", "re-evaluated"))
    assert load_bundle(bundle_dir).manifest.metrics["note"] == "re-evaluated"


def test_conversion_rewrites_reseal_the_bundle(bundle_dir: Path) -> None:
    from conversion.bundle_rewrite import rewrite_bundle

    manifest = read_manifest(bundle_dir)
    rewritten = rewrite_bundle(bundle_dir, manifest, calibration={"referral_threshold": 0.37})
    assert rewritten.decision_sha256 != manifest.decision_sha256
    loaded = load_bundle(bundle_dir)
    assert loaded.manifest.calibration.referral_threshold == 0.37


def test_the_shipped_bundle_is_sealed() -> None:
    manifest = read_manifest(ROOT / "device" / "models" / "default")
    assert manifest.decision_sha256 == manifest.decision_digest()
