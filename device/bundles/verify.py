"""Everything a scanner checks before it will run a signed bundle.

:func:`load_signed_bundle` refuses a bundle unless all of these hold, in this order,
each with its own error type and a message short enough for the device's screen:

1. ``manifest.sig`` exists (:class:`BundleUnsignedError`), is the documented JSON
   (:class:`BundleSignatureError`), names a key this scanner trusts
   (:class:`BundleUntrustedKeyError`) and verifies over the exact bytes of
   ``manifest.json`` (:class:`BundleSignatureError`);
2. for an adapted bundle, its ``adaptation`` section names the trunk it carries
   (``base_model_sha256`` equals the sha256 listed for ``model.tflite``), else
   :class:`BundleBaseMismatchError`; and the preprocessing its head was fitted through
   (``base_preprocessing_sha256`` equals the sha256 of its own preprocessing dict), else
   :class:`BundlePreprocessingError`; with ``known_trunks``, the trunk must also be one
   of those (a base this scanner has run), else :class:`BundleBaseMismatchError`;
3. its preprocessing spec is one this software runs (:class:`BundlePreprocessingError`);
4. the manifest matches the schema (:class:`ManifestError`), and then the strict loader
   :func:`device.runtime.bundle.load_bundle` checks every file's size and sha256
   (:class:`BundleChecksumError`: one byte changed, truncated), loads both models, checks
   every tensor and the ``decision_sha256`` seal.

Checks 2 and 3 read the signed JSON before the schema does, so that a bundle from another
trunk or for another spec is named as such rather than as a schema problem.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from device.bundles.signing import check_signature, read_manifest_bytes, read_signature
from device.errors import (
    BundleBaseMismatchError,
    BundleFileMissingError,
    BundlePreprocessingError,
    BundleSignatureError,
    ConfigError,
    ManifestError,
)
from device.runtime.manifest import MANIFEST_NAME, MODEL_FILE, Manifest, preprocessing_sha256


def _short(digest: object) -> str:
    return f"{str(digest)[:12]}…"


def check_adaptation(data: Mapping[str, Any], known_trunks: Collection[str] | None = None) -> None:
    """Check an adapted manifest's ``adaptation`` section against the bundle it is in.

    Args:
        data: the manifest as parsed JSON (a base bundle, without ``adaptation``, passes).
        known_trunks: sha256 of the trunks this scanner has run; None skips that check.

    Raises:
        BundleBaseMismatchError: the section names another trunk than the one carried,
            or a trunk not in ``known_trunks``.
        BundlePreprocessingError: its head was fitted through another preprocessing.
        ManifestError: the section is not an object.
    """
    adaptation = data.get("adaptation")
    if adaptation is None:
        return
    if not isinstance(adaptation, dict):
        raise ManifestError(f"{MANIFEST_NAME}: adaptation must be an object")
    classifier = data.get("classifier")
    model_file = classifier.get("file", MODEL_FILE) if isinstance(classifier, dict) else MODEL_FILE
    files = data.get("files")
    entry = files.get(model_file) if isinstance(files, dict) else None
    carried = entry.get("sha256") if isinstance(entry, dict) else None
    named = adaptation.get("base_model_sha256")
    if not carried or named != carried:
        raise BundleBaseMismatchError(
            f"Adapted for another base model: its manifest names trunk {_short(named)} but "
            f"the bundle carries {_short(carried)}"
        )
    preprocessing = data.get("preprocessing")
    if not isinstance(preprocessing, dict):
        raise ManifestError(f"{MANIFEST_NAME}: preprocessing must be an object")
    fitted_through = adaptation.get("base_preprocessing_sha256")
    if fitted_through != preprocessing_sha256(preprocessing):
        raise BundlePreprocessingError(
            "Adapted through another preprocessing spec than the one it declares: its head "
            "would see different images than it was fitted on"
        )
    if known_trunks is not None and carried not in known_trunks:
        base = adaptation.get("base_bundle_id", "?")
        raise BundleBaseMismatchError(
            f"Adapted from base {base} (trunk {_short(carried)}), which this scanner has "
            "never run. Install that base bundle first"
        )


def check_preprocessing(data: Mapping[str, Any]) -> None:
    """Refuse a preprocessing spec this software does not run.

    Raises:
        BundlePreprocessingError: a retired, unknown or malformed spec.
    """
    from device.imaging.pipeline import PreprocessSpec

    preprocessing = data.get("preprocessing")
    if not isinstance(preprocessing, dict):
        raise BundlePreprocessingError(f"{MANIFEST_NAME}: no preprocessing spec")
    try:
        PreprocessSpec.from_dict(dict(preprocessing))
    except ConfigError as exc:
        raise BundlePreprocessingError(
            f"Made for a preprocessing spec this software does not run: {exc}"
        ) from exc


def _parse(manifest_bytes: bytes) -> dict[str, Any]:
    try:
        data = json.loads(manifest_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{MANIFEST_NAME}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{MANIFEST_NAME}: not a JSON object")
    return data


def load_signed_bundle(
    bundle_dir: str | os.PathLike[str],
    trusted_keys: Mapping[str, bytes],
    *,
    known_trunks: Collection[str] | None = None,
    runtime: str | None = None,
) -> tuple[Any, str]:
    """Verify a signed bundle (module docstring) and load it.

    Args:
        bundle_dir: the bundle folder.
        trusted_keys: key id -> raw public key (:func:`device.bundles.keys.load_trusted_keys`).
        known_trunks: sha256 of trunks this scanner has run, to refuse an adapted bundle
            from any other base; None skips that check.
        runtime: force a TFLite runtime (see :mod:`device.runtime.interpreter`).

    Returns:
        (the loaded :class:`device.runtime.bundle.Bundle`, the signing key's id).

    Raises:
        BundleError: a subclass naming the first check that failed.
    """
    from device.runtime.bundle import load_bundle

    folder = Path(bundle_dir)
    if not folder.is_dir():
        raise BundleFileMissingError(f"{folder}: bundle folder not found")
    document = read_signature(folder)
    manifest_bytes = read_manifest_bytes(folder)
    signer = check_signature(manifest_bytes, document, trusted_keys)
    data = _parse(manifest_bytes)
    check_adaptation(data, known_trunks)
    check_preprocessing(data)
    bundle = load_bundle(folder, runtime=runtime)
    # The loader read manifest.json again: it must be the bytes whose signature was checked.
    if read_manifest_bytes(folder) != manifest_bytes:
        raise BundleSignatureError(f"{MANIFEST_NAME} changed while it was being checked")
    return bundle, signer


def verify_signed_bundle(
    bundle_dir: str | os.PathLike[str],
    trusted_keys: Mapping[str, bytes],
    *,
    known_trunks: Collection[str] | None = None,
) -> Manifest:
    """Verify a signed bundle completely (see the module docstring), loading its models.

    Args:
        bundle_dir: the bundle folder.
        trusted_keys: key id -> raw public key.
        known_trunks: optional sha256 set of trunks this scanner has run.

    Returns:
        Its validated manifest.

    Raises:
        BundleError: a subclass naming the first check that failed.
    """
    bundle, _ = load_signed_bundle(bundle_dir, trusted_keys, known_trunks=known_trunks)
    return bundle.manifest
