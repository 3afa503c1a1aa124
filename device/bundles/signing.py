"""Signing a bundle, and checking a bundle's signature.

``manifest.sig`` sits beside ``manifest.json`` and is not listed in its ``files``::

    {"algorithm": "ed25519", "key_id": "<16 hex>", "signature": "<base64, 64 bytes>"}

The signature is Ed25519, detached, over the exact bytes of ``manifest.json``. The
manifest lists every other file's size and sha256, so checking those files against it
(:func:`device.runtime.bundle.verify_files`) extends the signature to the whole bundle.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from device.bundles.keys import describe_keys, key_id, load_signing_key
from device.errors import (
    BundleFileMissingError,
    BundleSignatureError,
    BundleUnsignedError,
    BundleUntrustedKeyError,
)
from device.runtime.bundle import SIGNATURE_NAME
from device.runtime.manifest import MANIFEST_NAME

log = logging.getLogger(__name__)

ALGORITHM = "ed25519"
MAX_SIGNATURE_BYTES = 4096


def signature_document(manifest_bytes: bytes, signing_key: object) -> dict[str, str]:
    """The ``manifest.sig`` content for ``manifest_bytes`` signed by a ``SigningKey``."""
    signed = signing_key.sign(manifest_bytes)  # type: ignore[attr-defined]
    return {
        "algorithm": ALGORITHM,
        "key_id": key_id(bytes(signing_key.verify_key)),  # type: ignore[attr-defined]
        "signature": base64.b64encode(signed.signature).decode("ascii"),
    }


def sign_bundle(bundle_dir: str | os.PathLike[str], key_path: str | os.PathLike[str]) -> str:
    """Sign a bundle folder: write ``manifest.sig`` over its ``manifest.json``.

    The bundle's manifest and files are checked first (:func:`read_manifest` and
    :func:`verify_files`), so a corrupt bundle is never signed. An existing signature
    is replaced.

    Args:
        bundle_dir: the bundle folder (base or adapted).
        key_path: the private signing key (``signing.key`` from ``skinscan bundle keygen``).

    Returns:
        The signing key's id.

    Raises:
        SigningKeyError: the key file is not a private signing key (e.g. an export key).
        BundleError: the bundle is invalid.
    """
    from device.records.durable import write_durable
    from device.runtime.bundle import read_manifest, verify_files

    folder = Path(bundle_dir)
    signing_key = load_signing_key(key_path)
    manifest = read_manifest(folder)
    verify_files(folder, manifest)
    manifest_bytes = (folder / MANIFEST_NAME).read_bytes()
    document = signature_document(manifest_bytes, signing_key)
    text = json.dumps(document, indent=2) + "\n"
    write_durable(folder / SIGNATURE_NAME, text.encode("ascii"))
    os.chmod(folder / SIGNATURE_NAME, 0o644)
    log.info("signed bundle %s with key %s", manifest.bundle_id, document["key_id"])
    return document["key_id"]


def read_signature(bundle_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Read and check the form of a bundle's ``manifest.sig``.

    Raises:
        BundleUnsignedError: there is no ``manifest.sig``.
        BundleSignatureError: it is not the documented JSON.
    """
    path = Path(bundle_dir) / SIGNATURE_NAME
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_SIGNATURE_BYTES + 1)
    except FileNotFoundError:
        raise BundleUnsignedError(
            f"Bundle not signed: {SIGNATURE_NAME} is missing. Only bundles signed by "
            "the clinic's signing key can be installed (skinscan bundle sign)"
        ) from None
    except OSError as exc:
        raise BundleSignatureError(f"{SIGNATURE_NAME}: cannot be read ({exc})") from exc
    try:
        document = json.loads(raw.decode("utf-8")) if len(raw) <= MAX_SIGNATURE_BYTES else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        document = None
    fields = ("algorithm", "key_id", "signature")
    if not isinstance(document, dict) or not all(isinstance(document.get(k), str) for k in fields):
        raise BundleSignatureError(
            f"Bundle signature unreadable: {SIGNATURE_NAME} is not a SkinScan signature"
        )
    if document["algorithm"] != ALGORITHM:
        raise BundleSignatureError(
            f"Bundle signature uses {document['algorithm']!r}; this scanner accepts only "
            f"{ALGORITHM}"
        )
    return {k: document[k] for k in fields}


def check_signature(
    manifest_bytes: bytes, document: Mapping[str, str], trusted: Mapping[str, bytes]
) -> str:
    """Check a signature document against the trusted keys.

    Args:
        manifest_bytes: the exact bytes of ``manifest.json``.
        document: from :func:`read_signature`.
        trusted: key id -> raw public key (:func:`device.bundles.keys.load_trusted_keys`).

    Returns:
        The id of the trusted key that signed it.

    Raises:
        BundleUntrustedKeyError: no key is trusted, or the signer is not trusted.
        BundleSignatureError: the signature does not verify (the manifest was altered).
    """
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey

    if not trusted:
        raise BundleUntrustedKeyError(
            "No signing key is trusted on this scanner, so no bundle can be installed. "
            "Provision the clinic's signing.pub: setup.sh --bundle-key FILE"
        )
    signer = document["key_id"]
    if signer not in trusted:
        raise BundleUntrustedKeyError(
            f"Signed by a key this scanner does not trust (key {signer}; trusted: "
            f"{describe_keys(trusted)})"
        )
    try:
        signature = base64.b64decode(document["signature"], validate=True)
    except binascii.Error:
        raise BundleSignatureError(f"{SIGNATURE_NAME}: the signature is not base64") from None
    try:
        VerifyKey(trusted[signer]).verify(manifest_bytes, signature)
    except (BadSignatureError, ValueError):
        raise BundleSignatureError(
            f"Signature does not match: {MANIFEST_NAME} was changed after it was signed "
            f"(key {signer})"
        ) from None
    return signer


def read_manifest_bytes(bundle_dir: str | os.PathLike[str]) -> bytes:
    """The exact bytes of a bundle's ``manifest.json``.

    Raises:
        BundleFileMissingError: the folder or its manifest is missing.
    """
    path = Path(bundle_dir) / MANIFEST_NAME
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise BundleFileMissingError(f"{MANIFEST_NAME}: missing from bundle {bundle_dir}") from None
    except IsADirectoryError:
        raise BundleFileMissingError(f"{MANIFEST_NAME}: not a file in {bundle_dir}") from None
    except OSError as exc:
        raise BundleFileMissingError(f"{MANIFEST_NAME}: cannot be read ({exc})") from exc
