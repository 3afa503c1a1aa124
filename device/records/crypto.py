"""Encryption at rest for scan records: the device key and AES-GCM.

One 256-bit device key is created at first start and kept in a file of mode
0600. Three sub-keys are derived from it with HKDF, so no key is used for two
purposes: one encrypts (AES-256-GCM), one indexes patient references (HMAC),
and one gives a key check value that tells a wrong key file from a good one.

Every encrypted blob is ``nonce (12 bytes) || ciphertext || tag (16 bytes)``
with a fresh random nonce, and its associated data names the scan id and the
field, so a blob moved to another record or field fails authentication.
The key itself is never logged and never appears in a ``repr``.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import logging
import os
import secrets
import stat
from pathlib import Path
from typing import Protocol, runtime_checkable

from device.errors import DiskFullError, StorageError, TamperError

log = logging.getLogger(__name__)

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
_AAD_PREFIX = b"skinscan/v1/"


@runtime_checkable
class KeyProvider(Protocol):
    """Something that hands the store its 256-bit device key."""

    def load_key(self, *, create: bool) -> bytes:
        """Return the device key.

        Args:
            create: whether a missing key may be created. The store passes False
                when records already exist, because a new key could not read them.

        Raises:
            StorageError: the key is missing (and ``create`` is False) or unreadable.
        """
        ...


class StaticKeyProvider:
    """A key held in memory; for tests and for keys kept outside a file."""

    def __init__(self, key: bytes) -> None:
        """Wrap ``key``, which must be 32 bytes."""
        if len(key) != KEY_BYTES:
            raise ValueError(f"device key must be {KEY_BYTES} bytes, got {len(key)}")
        self._key = bytes(key)

    def load_key(self, *, create: bool) -> bytes:
        """Return the key; ``create`` is ignored."""
        return self._key

    def __repr__(self) -> str:
        return "StaticKeyProvider(<hidden>)"


class FileKeyProvider:
    """The device key in a file readable only by its owner (mode 0600).

    The file holds the 32 raw key bytes. It is created atomically (temporary
    file, fsync, rename, fsync of the folder), so a power cut while it is being
    created leaves either no key or a whole key.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Use the key file at ``path``."""
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"FileKeyProvider({str(self.path)!r})"

    def load_key(self, *, create: bool) -> bytes:
        """Read the key, creating it first when allowed and absent.

        Raises:
            StorageError: the file is missing and ``create`` is False, has the
                wrong size, or cannot be read or written.
        """
        try:
            return self._read()
        except FileNotFoundError:
            if not create:
                raise StorageError(
                    f"the device key {self.path} is missing, so the saved records cannot be "
                    "read; restore the key file (a new key would not open them)"
                ) from None
        return self._create()

    def _read(self) -> bytes:
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            raise
        except OSError as exc:  # permissions, a symlink, an I/O error
            raise StorageError(f"cannot read the device key {self.path}: {exc.strerror}") from exc
        try:
            mode = os.fstat(fd).st_mode
            key = os.read(fd, KEY_BYTES + 1)
        finally:
            os.close(fd)
        if len(key) != KEY_BYTES:
            raise StorageError(
                f"the device key {self.path} has {len(key)} bytes, expected {KEY_BYTES}; "
                "it is damaged or not a SkinScan key"
            )
        if stat.S_IMODE(mode) & 0o077:
            log.warning("device key %s was readable by others; setting mode 0600", self.path)
            try:
                os.chmod(self.path, 0o600)
            except OSError as exc:
                log.warning("could not tighten the key file mode: %s", exc.strerror)
        return key

    def _create(self) -> bytes:
        key = secrets.token_bytes(KEY_BYTES)
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{self.path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, key)
                os.fsync(fd)
            finally:
                os.close(fd)
            # link() fails if another process created the key meanwhile: use theirs.
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                os.unlink(tmp)
                return self._read()
            os.unlink(tmp)
            fsync_dir(folder)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFullError(f"no space to create the device key in {folder}") from exc
            raise StorageError(f"cannot create the device key {self.path}: {exc}") from exc
        log.info("created a new device key at %s (mode 0600)", self.path)
        return key


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """fsync a folder so that renames and new names in it are durable."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _hkdf(key: bytes, info: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(key)


def _aad(scan_id: str, purpose: str, extra: bytes = b"") -> bytes:
    return _AAD_PREFIX + purpose.encode() + b"/" + scan_id.encode() + b"/" + extra


class RecordCipher:
    """AES-256-GCM for record fields, bound to their scan id and purpose.

    Args:
        device_key: the 32-byte device key (sub-keys are derived from it).
    """

    def __init__(self, device_key: bytes) -> None:
        if len(device_key) != KEY_BYTES:
            raise ValueError(f"device key must be {KEY_BYTES} bytes")
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM(_hkdf(device_key, b"skinscan v1 record encryption"))
        self._index_key = _hkdf(device_key, b"skinscan v1 patient-ref index")
        self.key_check = _hkdf(device_key, b"skinscan v1 key check").hex()[:32]

    def __repr__(self) -> str:
        return f"RecordCipher(key_check={self.key_check[:8]}...)"

    def encrypt(
        self, plaintext: bytes, scan_id: str, purpose: str, extra_aad: bytes = b""
    ) -> bytes:
        """Encrypt ``plaintext`` with a fresh nonce, bound to ``scan_id`` and ``purpose``.

        Args:
            plaintext: the bytes to protect.
            scan_id: the record's scan id, authenticated with the ciphertext.
            purpose: what the blob is ("image", "heatmap", "seal").
            extra_aad: more bytes to authenticate (e.g. the record's other fields).

        Returns:
            ``nonce || ciphertext || tag``.
        """
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, _aad(scan_id, purpose, extra_aad))

    def decrypt(self, blob: bytes, scan_id: str, purpose: str, extra_aad: bytes = b"") -> bytes:
        """Decrypt a blob made by :meth:`encrypt` with the same scan id, purpose and extra data.

        Raises:
            TamperError: the blob, its scan id or its associated data was altered,
                or the key is wrong.
        """
        from cryptography.exceptions import InvalidTag

        if len(blob) < NONCE_BYTES + TAG_BYTES:
            raise TamperError(f"scan {scan_id}: the {purpose} is truncated ({len(blob)} bytes)")
        try:
            return self._aead.decrypt(
                blob[:NONCE_BYTES], blob[NONCE_BYTES:], _aad(scan_id, purpose, extra_aad)
            )
        except InvalidTag:
            raise TamperError(
                f"scan {scan_id}: the {purpose} failed authentication (altered, or wrong key)"
            ) from None

    def index(self, value: str) -> str:
        """Keyed HMAC-SHA256 of ``value`` (hex), for looking up encrypted fields by equality."""
        return hmac.new(self._index_key, value.encode("utf-8"), hashlib.sha256).hexdigest()
