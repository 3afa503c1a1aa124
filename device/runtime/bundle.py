"""The one strict loader of model bundles.

A bundle is a folder::

    model.tflite      int8 classifier: feature map + logits
    gradcam.tflite    gradient submodel: (feature map, one-hot) -> weights, CAM
    MODEL_CARD.md     (optional) the model card
    manifest.json     see :mod:`device.runtime.manifest`

:func:`load_bundle` refuses a bundle unless all of these hold, in this order:

1. the folder and ``manifest.json`` exist (:class:`BundleFileMissingError`);
2. the manifest is JSON and matches the schema, including its preprocessing
   spec and its labels agreeing with :mod:`device.labels` (:class:`ManifestError`);
3. every file listed exists (:class:`BundleFileMissingError`) and has the listed
   size and sha256 (:class:`BundleChecksumError`);
4. a runtime loads both models (:class:`BundleModelError`);
5. every tensor agrees with the manifest, and the model input size equals the
   preprocessing spec's ``input_size`` (:class:`TensorMismatchError`);
6. a site-adapted bundle (manifest ``adaptation``) has a head ``W`` (C, K) that fits
   the feature map and the labels, was fitted on this very trunk (its
   ``base_model_sha256`` is model.tflite's) and this preprocessing spec
   (``base_preprocessing_sha256``) (:class:`AdaptationError`);
7. the decision fields (labels, tensors, preprocessing, calibration, familiarity,
   adaptation when present) match the manifest's ``decision_sha256``, so an edited
   threshold is refused (:class:`ManifestError`). This comes last so that an edit the
   checks above can name precisely (a wrong tensor, a bad spec) is named by them.

Every message names the file and the problem, for the device's error screen.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from device.errors import (
    AdaptationError,
    BundleChecksumError,
    BundleFileMissingError,
    ConfigError,
    ManifestError,
    TensorMismatchError,
)
from device.imaging.pipeline import PreprocessSpec
from device.labels import HAM10000_CLASSES
from device.runtime.classifier import Classifier, LinearHead
from device.runtime.explainer import Explainer
from device.runtime.familiarity import FeatureDensity
from device.runtime.interpreter import create_model
from device.runtime.manifest import MANIFEST_NAME, Manifest, preprocessing_sha256

log = logging.getLogger(__name__)

DEFAULT_BUNDLE_DIR = Path(__file__).resolve().parents[1] / "models" / "default"
# A signed bundle's detached signature over manifest.json (device.bundles.signing); it
# cannot be listed in the manifest it signs.
SIGNATURE_NAME = "manifest.sig"


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _format_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "missing":
            msg = "missing field"
        parts.append(f"{loc}: {msg}")
    more = len(exc.errors()) - len(parts)
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def read_manifest(bundle_dir: str | Path) -> Manifest:
    """Read and validate ``manifest.json`` without touching the other files.

    Args:
        bundle_dir: the bundle folder.

    Returns:
        The validated manifest.

    Raises:
        BundleFileMissingError: the folder or manifest.json does not exist.
        ManifestError: invalid JSON, schema violation, bad preprocessing spec, or
            labels that disagree with this software's classes.
    """
    folder = Path(bundle_dir)
    if not folder.is_dir():
        raise BundleFileMissingError(f"{folder}: model bundle folder not found")
    path = folder / MANIFEST_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BundleFileMissingError(f"{MANIFEST_NAME}: missing from bundle {folder}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{MANIFEST_NAME}: cannot be read ({exc})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(
            f"{MANIFEST_NAME}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from exc
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        raise ManifestError(f"{MANIFEST_NAME}: {_format_validation_error(exc)}") from exc
    _check_labels(manifest)
    preprocess_spec(manifest)
    return manifest


def verify_decision_fields(manifest: Manifest) -> None:
    """Refuse a manifest whose decision fields differ from its ``decision_sha256``.

    Raises:
        ManifestError: the seal is missing or does not match.
    """
    if not manifest.decision_sha256:
        raise ManifestError(
            f"{MANIFEST_NAME}: no decision_sha256, so edits to its thresholds cannot be "
            "detected; rebuild the bundle with this version's conversion (skinscan convert)"
        )
    if not manifest.is_sealed:
        raise ManifestError(
            f"{MANIFEST_NAME}: edited after conversion: its decision fields (labels, tensors, "
            "preprocessing, calibration such as referral_threshold, familiarity, adaptation) "
            "no longer match its decision_sha256. Restore the original manifest.json; decision "
            "settings are changed only by conversion (or skinscan adapt), which seals the "
            "bundle again"
        )


def _check_labels(manifest: Manifest) -> None:
    # The decision logic and the metrics use device.labels; a bundle trained on a
    # different class list or order would be silently wrong, so refuse it.
    expected = [(d.code, d.malignant) for d in HAM10000_CLASSES]
    actual = [(label.code, label.malignant) for label in manifest.labels]
    if actual != expected:
        raise ManifestError(
            f"{MANIFEST_NAME}: labels {[c for c, _ in actual]} (malignant flags "
            f"{[m for _, m in actual]}) differ from this software's classes "
            f"{[c for c, _ in expected]}"
        )


def preprocess_spec(manifest: Manifest) -> PreprocessSpec:
    """The manifest's preprocessing spec as a :class:`PreprocessSpec`.

    Raises:
        ManifestError: the spec has unknown keys, a retired or unknown version (the
            message names it and what to do), or is spec 6 with no fitted colour region.
    """
    try:
        spec = PreprocessSpec.from_dict(dict(manifest.preprocessing))
    except ConfigError as exc:
        raise ManifestError(f"{MANIFEST_NAME}: {exc}") from exc
    if not spec.fitted:
        raise ManifestError(
            f"{MANIFEST_NAME}: preprocessing spec {spec.version} has no colour.region: the "
            "illuminant region is fitted in training and recorded in the run's config.json; "
            "convert the run again from that config"
        )
    return spec


def verify_files(bundle_dir: str | Path, manifest: Manifest) -> dict[str, bytes]:
    """Read every file the manifest lists and check its size and sha256.

    Args:
        bundle_dir: the bundle folder.
        manifest: its validated manifest.

    Returns:
        File name -> verified content.

    Raises:
        BundleFileMissingError: a listed file is absent.
        BundleChecksumError: a file has the wrong size (truncated or padded) or sha256.
    """
    folder = Path(bundle_dir)
    contents: dict[str, bytes] = {}
    for name, entry in manifest.files.items():
        path = folder / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise BundleFileMissingError(f"{name}: missing from bundle {folder}") from None
        except OSError as exc:
            raise BundleFileMissingError(f"{name}: cannot be read ({exc})") from exc
        if len(data) != entry.size:
            kind = "truncated" if len(data) < entry.size else "larger than expected"
            raise BundleChecksumError(
                f"{name}: {kind}: {len(data)} bytes, the manifest says {entry.size}"
            )
        digest = sha256_bytes(data)
        if digest != entry.sha256:
            raise BundleChecksumError(
                f"{name}: sha256 mismatch (manifest {entry.sha256[:12]}…, file {digest[:12]}…): "
                "the file is corrupt or was modified"
            )
        contents[name] = data
    listed = set(manifest.files) | {MANIFEST_NAME, SIGNATURE_NAME}
    for extra in sorted(p.name for p in folder.iterdir() if p.is_file()):
        if extra not in listed and not extra.startswith("."):
            log.warning("bundle %s: %s is not listed in the manifest; ignored", folder, extra)
    return contents


def load_head(manifest: Manifest, contents: dict[str, bytes]) -> LinearHead | None:
    """The site-adapted head of a bundle, checked against its trunk; None for a base bundle.

    Args:
        manifest: the validated manifest.
        contents: the verified files (:func:`verify_files`).

    Raises:
        AdaptationError: the head file is unreadable or has the wrong shape, or the head
            was fitted on another trunk (model.tflite sha256) or preprocessing spec.
    """
    spec = manifest.adaptation
    if spec is None:
        return None
    model_sha = manifest.files[manifest.classifier.file].sha256
    if spec.base_model_sha256 != model_sha:
        raise AdaptationError(
            f"{MANIFEST_NAME}: adaptation.base_model_sha256 ({spec.base_model_sha256[:12]}…) "
            f"is not this bundle's {manifest.classifier.file} ({model_sha[:12]}…): the head "
            "was fitted on another base model's features"
        )
    own_spec = preprocessing_sha256(manifest.preprocessing)
    if spec.base_preprocessing_sha256 != own_spec:
        raise AdaptationError(
            f"{MANIFEST_NAME}: adaptation.base_preprocessing_sha256 "
            f"({spec.base_preprocessing_sha256[:12]}…) is not this bundle's preprocessing "
            f"({own_spec[:12]}…): the head was fitted on images prepared another way"
        )
    head = LinearHead.from_bytes(contents[spec.head_file], label=spec.head_file)
    channels = manifest.classifier.feature_map.shape[-1]
    if head.weights.shape != (channels, len(manifest.labels)):
        raise AdaptationError(
            f"{spec.head_file}: W has shape {head.weights.shape} but the feature map has "
            f"{channels} channels and the bundle {len(manifest.labels)} labels"
        )
    return head


@dataclass(frozen=True)
class Bundle:
    """A loaded, verified model bundle with its interpreters created once.

    Attributes:
        path: the bundle folder.
        manifest: the validated manifest.
        preprocess: the preprocessing spec the model was trained with.
        classifier: runs model.tflite.
        explainer: runs gradcam.tflite.
        familiarity: the out-of-distribution check, or None for bundles without one.
    """

    path: Path
    manifest: Manifest
    preprocess: PreprocessSpec
    classifier: Classifier
    explainer: Explainer
    familiarity: FeatureDensity | None = None

    @property
    def bundle_id(self) -> str:
        """The manifest's bundle id."""
        return self.manifest.bundle_id

    @property
    def model_sha256(self) -> str:
        """sha256 of model.tflite (stored with every scan record)."""
        return self.manifest.files[self.manifest.classifier.file].sha256

    @property
    def runtime(self) -> str:
        """The runtime running the classifier."""
        return self.classifier.runtime

    @property
    def head(self) -> LinearHead | None:
        """The site-adapted float head, or None for a base bundle."""
        return self.classifier.head


def load_bundle(
    bundle_dir: str | Path | None = None,
    *,
    runtime: str | None = None,
    num_threads: int | None = None,
) -> Bundle:
    """Load and verify a model bundle; the only way the device loads a model.

    Args:
        bundle_dir: the bundle folder; defaults to the shipped ``device/models/default``.
        runtime: force a runtime (see :mod:`device.runtime.interpreter`).
        num_threads: interpreter threads.

    Returns:
        The loaded bundle.

    Raises:
        BundleFileMissingError, ManifestError, BundleChecksumError, BundleModelError,
        TensorMismatchError, AdaptationError: see the module docstring. All derive
        from BundleError.
        RuntimeUnavailableError: no TFLite runtime is installed.
    """
    folder = Path(bundle_dir) if bundle_dir is not None else DEFAULT_BUNDLE_DIR
    manifest = read_manifest(folder)
    spec = preprocess_spec(manifest)
    contents = verify_files(folder, manifest)
    cls_spec, cam_spec = manifest.classifier, manifest.gradcam
    if spec.input_size != cls_spec.input_size:
        raise TensorMismatchError(
            f"{MANIFEST_NAME}: preprocessing.input_size is {spec.input_size} but "
            f"classifier.input is {cls_spec.input_size}x{cls_spec.input_size}"
        )
    model = create_model(
        contents[cls_spec.file], label=cls_spec.file, runtime=runtime, num_threads=num_threads
    )
    model_size = model.inputs[0].shape[1] if model.inputs and len(model.inputs[0].shape) == 4 else 0
    if model_size != spec.input_size:
        raise TensorMismatchError(
            f"{cls_spec.file}: the model takes {model_size}x{model_size} images but the "
            f"preprocessing spec makes {spec.input_size}x{spec.input_size}"
        )
    head = load_head(manifest, contents)
    classifier = Classifier(model, cls_spec, manifest.calibration.temperature, head)
    gradcam = create_model(
        contents[cam_spec.file], label=cam_spec.file, runtime=runtime, num_threads=num_threads
    )
    explainer = Explainer(gradcam, cam_spec, head)
    familiarity = None
    if manifest.familiarity is not None:
        name = manifest.familiarity.file
        familiarity = FeatureDensity.from_bytes(contents[name], label=name).with_threshold(
            manifest.familiarity.threshold
        )
        if familiarity.mean.shape[0] != cls_spec.feature_map.shape[-1]:
            raise TensorMismatchError(
                f"{name}: fitted on {familiarity.mean.shape[0]} features but the feature map "
                f"has {cls_spec.feature_map.shape[-1]} channels"
            )
    verify_decision_fields(manifest)
    log.info(
        "loaded bundle %s from %s (%s, input %d)",
        manifest.bundle_id,
        folder,
        classifier.runtime,
        spec.input_size,
    )
    return Bundle(
        path=folder,
        manifest=manifest,
        preprocess=spec,
        classifier=classifier,
        explainer=explainer,
        familiarity=familiarity,
    )
