"""Bundle signing keys: Ed25519 key files, their ids, and the set a scanner trusts.

A signing key is not an export key. The clinic's export keys (``skinscan records
keygen``) are X25519 keys for sealed boxes; these are Ed25519 keys for signatures.
Both are 32 bytes, so each file names its kind on its single line of text::

    skinscan-bundle-signing-private-v1 <base64 32-byte seed>    (mode 0600)
    skinscan-bundle-signing-public-v1 <base64 32-byte verify key>

and a loader refuses any other kind by name, an export key above all, so that one
can never be used, or trusted, in place of the other.

A key's id is the first 16 hex digits of the sha256 of its raw 32-byte public key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from device.errors import SigningKeyError

log = logging.getLogger(__name__)

PRIVATE_LABEL = "skinscan-bundle-signing-private-v1"
PUBLIC_LABEL = "skinscan-bundle-signing-public-v1"
PRIVATE_NAME = "signing.key"
PUBLIC_NAME = "signing.pub"
PUBLIC_SUFFIX = ".pub"
# The labels of the clinic's export keys (device.records.export), named here only to
# refuse them with a message that says what they are.
EXPORT_LABELS = ("skinscan-clinic-public-v1", "skinscan-clinic-private-v1")
KEY_ID_HEX = 16


def key_id(public_key: bytes) -> str:
    """The id of a raw 32-byte Ed25519 public key: first 16 hex of its sha256."""
    return hashlib.sha256(public_key).hexdigest()[:KEY_ID_HEX]


def _write_key_file(path: Path, label: str, raw: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(f"{label} {base64.b64encode(raw).decode('ascii')}\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(path, mode)  # the umask must not widen or narrow it


def generate_signing_keypair(out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Create ``signing.key`` (private, 0600) and ``signing.pub`` in ``out_dir``.

    Keep the private key at the clinic, apart from the export key; copy only
    ``signing.pub`` to scanners (``setup.sh --bundle-key signing.pub``).

    Returns:
        (private key path, public key path).

    Raises:
        SigningKeyError: either file exists already (keys are never overwritten).
    """
    from nacl.signing import SigningKey

    from device.records.crypto import fsync_dir

    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    private_path, public_path = folder / PRIVATE_NAME, folder / PUBLIC_NAME
    for path in (private_path, public_path):
        if path.exists():
            raise SigningKeyError(f"{path} exists already; refusing to overwrite a key")
    signing = SigningKey.generate()
    _write_key_file(private_path, PRIVATE_LABEL, bytes(signing), 0o600)
    _write_key_file(public_path, PUBLIC_LABEL, bytes(signing.verify_key), 0o644)
    fsync_dir(folder)
    log.info("created bundle signing key %s in %s", key_id(bytes(signing.verify_key)), folder)
    return private_path, public_path


def _read_key(path: str | os.PathLike[str], label: str) -> bytes:
    kind = "private signing key" if label == PRIVATE_LABEL else "public signing key"
    try:
        text = Path(path).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise SigningKeyError(f"no {kind} file at {path}") from None
    except IsADirectoryError:
        raise SigningKeyError(f"{path} is a folder, not a {kind} file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SigningKeyError(f"{path} is not a SkinScan {kind} file ({exc})") from exc
    parts = text.split()
    found = parts[0] if parts else ""
    if found in EXPORT_LABELS:
        raise SigningKeyError(
            f"{path} is a clinic EXPORT key ({found}), for sealing scan records, not a "
            "bundle signing key. Signing keys are kept apart from export keys: make one "
            "with `skinscan bundle keygen --out DIR`"
        )
    if len(parts) != 2 or found not in (PRIVATE_LABEL, PUBLIC_LABEL):
        raise SigningKeyError(
            f"{path} is not a SkinScan bundle signing key file (make one with "
            "`skinscan bundle keygen --out DIR`)"
        )
    if found != label:
        other = "public" if found == PUBLIC_LABEL else "private"
        raise SigningKeyError(f"{path} is the {other} signing key; a {kind} is needed here")
    try:
        raw = base64.b64decode(parts[1], validate=True)
    except binascii.Error:
        raise SigningKeyError(f"{path}: the key is not valid base64") from None
    if len(raw) != 32:
        raise SigningKeyError(f"{path}: the key has {len(raw)} bytes, expected 32")
    return raw


def load_signing_key(path: str | os.PathLike[str]) -> Any:
    """Read a private signing key file as a ``nacl.signing.SigningKey``.

    Raises:
        SigningKeyError: missing, malformed, a public key, or an export key.
    """
    from nacl.signing import SigningKey

    raw = _read_key(path, PRIVATE_LABEL)
    mode = Path(path).stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("%s is readable by others (mode %o): chmod 600 it", path, mode)
    return SigningKey(raw)


def load_verify_key(path: str | os.PathLike[str]) -> bytes:
    """Read a public signing key file (``.pub``) and return the raw 32 bytes.

    Raises:
        SigningKeyError: missing, malformed, a private key, or an export key.
    """
    return _read_key(path, PUBLIC_LABEL)


def load_trusted_keys(paths: Iterable[str | os.PathLike[str]]) -> dict[str, bytes]:
    """The signing keys a scanner trusts: key id -> raw public key.

    Args:
        paths: public key files, or folders whose ``*.pub`` files are all trusted.
            A folder that does not exist holds no keys (a scanner not yet provisioned);
            a named file that does not exist is an error.

    Raises:
        SigningKeyError: a named file is missing, or any file is not a public signing
            key (an export key in the trust list is refused, never skipped).
    """
    trusted: dict[str, bytes] = {}
    for entry in paths:
        path = Path(entry).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix == PUBLIC_SUFFIX and p.is_file())
        elif not path.exists() and not path.suffix:
            log.info("trusted key folder %s does not exist: no keys from it", path)
            files = []
        else:
            files = [path]
        for file in files:
            raw = load_verify_key(file)
            trusted[key_id(raw)] = raw
    return trusted


def describe_keys(trusted: Mapping[str, bytes]) -> str:
    """The trusted key ids for a message, e.g. ``"1a2b3c4d5e6f7a8b, ..."`` or ``"none"``."""
    return ", ".join(sorted(trusted)) or "none"
