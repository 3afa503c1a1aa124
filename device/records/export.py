"""Exports to USB, sealed so that only the clinic can open them.

An export is one or more ``.sealed`` files. Each is a short header followed by
a PyNaCl ``SealedBox`` (X25519 + XSalsa20-Poly1305, with a throw-away sender
key) addressed to the clinic's public key, configured at provisioning. The
sealed payload is a ZIP holding ``manifest.json`` (the records' fields,
including the patient reference) and the images and heatmaps as PNG files.

The device only ever holds the clinic's *public* key, so not even the device
can read an export back. The clinic opens it on a desktop with
``skinscan records open EXPORT --key clinic.key``.

Key files are one line of text: ``skinscan-clinic-public-v1 <base64>`` or
``skinscan-clinic-private-v1 <base64>``; the private one has mode 0600.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import hashlib
import io
import json
import logging
import os
import secrets
import uuid
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from device.errors import DiskFullError, StorageError, TamperError
from device.records.api import ScanRecord
from device.records.crypto import fsync_dir

log = logging.getLogger(__name__)

MAGIC = b"SKINSCAN-EXPORT-1\n"
FORMAT_VERSION = 2
# Format 2 adds each record's lesion key (body_side, lesion), scale (mm_per_px),
# bundle_label and damaged (part -> problem, for a part left out as damaged).
READABLE_FORMATS = (1, 2)
PUBLIC_LABEL = "skinscan-clinic-public-v1"
PRIVATE_LABEL = "skinscan-clinic-private-v1"
DEFAULT_MAX_PART_BYTES = 32 * 1024 * 1024
SUFFIX = ".sealed"


class ExportKeyError(StorageError, ValueError):
    """A clinic key file is missing, malformed, or of the wrong kind."""


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_records` wrote.

    Attributes:
        files: the sealed files, in part order.
        scan_ids: the exported records, oldest first.
        export_id: id shared by all parts of this export.
        sha256s: SHA-256 of each file as written, to check a read-back against.
    """

    files: list[Path]
    scan_ids: list[str]
    export_id: str
    sha256s: list[str] = field(default_factory=list)


@dataclass
class OpenedExport:
    """A decrypted export (all its parts that were given).

    Attributes:
        export_id: id shared by the parts.
        device_id: device that made it.
        exported_at: ISO-8601 time of the export.
        parts: number of parts read.
        records: decrypted records, oldest first.
        receipt_proof: the secret the device sealed into this export (base64),
            which a receipt hands back to prove the clinic opened it; None for
            exports made before receipts existed.
    """

    export_id: str
    device_id: str
    exported_at: str
    parts: int = 0
    records: list[ScanRecord] = field(default_factory=list)
    receipt_proof: str | None = None


# --------------------------------------------------------------------------- keys


def _write_key_file(path: Path, label: str, raw: bytes, mode: int) -> None:
    text = f"{label} {base64.b64encode(raw).decode()}\n".encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, text)
        os.fsync(fd)
    finally:
        os.close(fd)


def generate_clinic_keypair(
    out_dir: str | os.PathLike[str], name: str = "clinic"
) -> tuple[Path, Path]:
    """Create a clinic key pair: ``<name>.key`` (private, 0600) and ``<name>.pub``.

    Keep the private key at the clinic; copy only the ``.pub`` file to devices.

    Returns:
        (private key path, public key path).

    Raises:
        ExportKeyError: either file exists already (keys are never overwritten).
    """
    from nacl.public import PrivateKey

    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    private_path, public_path = folder / f"{name}.key", folder / f"{name}.pub"
    for path in (private_path, public_path):
        if path.exists():
            raise ExportKeyError(f"{path} exists already; refusing to overwrite a key")
    private = PrivateKey.generate()
    _write_key_file(private_path, PRIVATE_LABEL, bytes(private), 0o600)
    _write_key_file(public_path, PUBLIC_LABEL, bytes(private.public_key), 0o644)
    fsync_dir(folder)
    log.info("created clinic key pair %s / %s", private_path, public_path)
    return private_path, public_path


def _load_key(path: str | os.PathLike[str], label: str) -> bytes:
    try:
        text = Path(path).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise ExportKeyError(f"no key file at {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ExportKeyError(f"cannot read the key file {path}: {exc}") from exc
    parts = text.split()
    if len(parts) != 2 or parts[0] not in (PUBLIC_LABEL, PRIVATE_LABEL):
        raise ExportKeyError(f"{path} is not a SkinScan clinic key file")
    if parts[0] != label:
        kind = "public" if label == PUBLIC_LABEL else "private"
        raise ExportKeyError(f"{path} is not a {kind} key (it is a {parts[0]} key)")
    try:
        raw = base64.b64decode(parts[1], validate=True)
    except binascii.Error:
        raise ExportKeyError(f"{path}: the key is not valid base64") from None
    if len(raw) != 32:
        raise ExportKeyError(f"{path}: the key has {len(raw)} bytes, expected 32")
    return raw


def load_public_key(path: str | os.PathLike[str]) -> bytes:
    """Read a clinic public key file (``.pub``) and return the 32 raw bytes."""
    return _load_key(path, PUBLIC_LABEL)


def load_private_key(path: str | os.PathLike[str]) -> bytes:
    """Read a clinic private key file (``.key``) and return the 32 raw bytes."""
    return _load_key(path, PRIVATE_LABEL)


# --------------------------------------------------------------------------- export


def _png(image: np.ndarray) -> bytes:
    import cv2

    pixels = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(pixels))
    if not ok:
        raise StorageError("an image could not be encoded for export")
    return buf.tobytes()


def _fields(record: ScanRecord) -> dict[str, Any]:
    return {
        "scan_id": record.scan_id,
        "created_at": record.created_at,
        "device_id": record.device_id,
        "probabilities": dict(record.probabilities),
        "label": record.label,
        "risk_tier": record.risk_tier,
        "p_malignant": float(record.p_malignant),
        "quality": dict(record.quality),
        "bundle_id": record.bundle_id,
        "bundle_sha256": record.bundle_sha256,
        "app_version": record.app_version,
        "patient_ref": record.patient_ref,
        "operator": record.operator,
        "body_site": record.body_site,
        "corrects": record.corrects,
        "extra": dict(record.extra),
        "body_side": record.body_side,
        "lesion": record.lesion,
        "mm_per_px": None if record.mm_per_px is None else float(record.mm_per_px),
        "bundle_label": record.bundle_label,
        "damaged": dict(record.damaged),
        "image": f"images/{record.scan_id}.png",
        "heatmap": None if record.heatmap is None else f"heatmaps/{record.scan_id}.png",
    }


class _Part:
    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.zip = zipfile.ZipFile(self.buffer, "w", compression=zipfile.ZIP_STORED)
        self.records: list[dict[str, Any]] = []

    def add(self, record: ScanRecord) -> None:
        entry = _fields(record)
        self.zip.writestr(entry["image"], _png(record.image))
        if record.heatmap is not None:
            self.zip.writestr(entry["heatmap"], _png(record.heatmap))
        self.records.append(entry)

    def size(self) -> int:
        return self.buffer.tell()

    def finish(self, header: dict[str, Any]) -> bytes:
        manifest = {**header, "records": self.records}
        self.zip.writestr("manifest.json", json.dumps(manifest, indent=1, sort_keys=True))
        self.zip.close()
        return self.buffer.getvalue()


def _write_sealed(path: Path, data: bytes) -> str:
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    try:
        with open(tmp, "xb") as fh:
            fh.write(MAGIC)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
        return hashlib.sha256(MAGIC + data).hexdigest()
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(f"the export medium is full: {path.parent}") from exc
        raise StorageError(f"cannot write the export {path}: {exc}") from exc


def export_records(
    records: Iterable[ScanRecord],
    to_dir: str | os.PathLike[str],
    clinic_public_key: bytes,
    *,
    device_id: str,
    max_part_bytes: int = DEFAULT_MAX_PART_BYTES,
    receipt_proof: bytes | None = None,
    name: str = "skinscan",
) -> ExportResult:
    """Seal ``records`` to the clinic's public key and write them under ``to_dir``.

    A record read with a damaged heatmap left out (``record.damaged``) is exported
    with its photo and result, and the damage is named in the manifest, so the clinic
    sees it. Records are packed into parts of at most about ``max_part_bytes`` of
    plaintext each, so a large export never needs much memory. Each part is
    written atomically (temporary name, fsync, rename).

    Args:
        records: the records to export (e.g. :func:`device.records.store.iter_records`).
        to_dir: the destination folder, e.g. the USB stick's mount point.
        clinic_public_key: the clinic's 32-byte X25519 public key.
        device_id: this device's id, written into the manifest.
        max_part_bytes: soft size limit of one part's plaintext.
        receipt_proof: a secret sealed into every part; the clinic hands it
            back in a receipt (see :mod:`device.records.archive`).
        name: file name stem, e.g. ``skinscan-archive``.

    Returns:
        The files written and the scan ids they hold. No file is written when
        there are no records.

    Raises:
        DiskFullError: the destination is full (parts written so far stay valid).
        StorageError: the destination cannot be written.
    """
    from nacl.public import PublicKey, SealedBox

    box = SealedBox(PublicKey(bytes(clinic_public_key)))
    folder = Path(to_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot use the export folder {folder}: {exc}") from exc
    export_id = str(uuid.uuid4())
    exported_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    stem = f"{name}-{exported_at[:19].replace(':', '').replace('-', '')}-{export_id[:8]}"
    files: list[Path] = []
    digests: list[str] = []
    scan_ids: list[str] = []
    header = {
        "format": FORMAT_VERSION,
        "export_id": export_id,
        "device_id": device_id,
        "exported_at": exported_at,
    }
    if receipt_proof is not None:
        header["receipt_proof"] = base64.b64encode(receipt_proof).decode()

    def flush(part: _Part) -> None:
        number = len(files) + 1
        payload = part.finish({**header, "part": number})
        path = folder / f"{stem}-p{number:03d}{SUFFIX}"
        digests.append(_write_sealed(path, box.encrypt(payload)))
        files.append(path)
        log.info("wrote export part %s (%d records)", path, len(part.records))

    part = _Part()
    for record in records:
        part.add(record)
        scan_ids.append(record.scan_id)
        if part.size() >= max_part_bytes:
            flush(part)
            part = _Part()
    if part.records:
        flush(part)
    return ExportResult(files=files, scan_ids=scan_ids, export_id=export_id, sha256s=digests)


# --------------------------------------------------------------------------- opening


def _export_files(path: Path) -> list[Path]:
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix == SUFFIX and p.is_file())
        if not found:
            raise StorageError(f"no {SUFFIX} export files in {path}")
        return found
    if not path.is_file():
        raise StorageError(f"no export at {path}")
    return [path]


def _unpng(data: bytes, name: str) -> np.ndarray:
    import cv2

    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise StorageError(f"export entry {name} is not a PNG image")
    return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB) if pixels.ndim == 3 else pixels


def open_export(path: str | os.PathLike[str], clinic_private_key: bytes) -> OpenedExport:
    """Decrypt an export file (or a folder of parts) with the clinic's private key.

    Args:
        path: a ``.sealed`` file, or a folder holding the parts of one export.
        clinic_private_key: the clinic's 32-byte X25519 private key.

    Returns:
        The export's records, oldest first.

    Raises:
        TamperError: the file was not sealed to this key, or it was altered.
        StorageError: it is not a SkinScan export, or parts of different exports were mixed.
    """
    from nacl.exceptions import CryptoError
    from nacl.public import PrivateKey, SealedBox

    box = SealedBox(PrivateKey(bytes(clinic_private_key)))
    opened: OpenedExport | None = None
    for file in _export_files(Path(path)):
        blob = file.read_bytes()
        if not blob.startswith(MAGIC):
            raise StorageError(f"{file} is not a SkinScan export")
        try:
            payload = box.decrypt(blob[len(MAGIC) :])
        except CryptoError:
            raise TamperError(
                f"{file.name} cannot be opened with this clinic key (wrong key, or the "
                "file was altered)"
            ) from None
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            manifest = json.loads(archive.read("manifest.json"))
            if manifest.get("format") not in READABLE_FORMATS:
                raise StorageError(f"{file.name}: unknown export format {manifest.get('format')}")
            if opened is None:
                opened = OpenedExport(
                    manifest["export_id"], manifest["device_id"], manifest["exported_at"]
                )
                opened.receipt_proof = manifest.get("receipt_proof")
            elif manifest["export_id"] != opened.export_id:
                raise StorageError(f"{file.name} belongs to another export")
            opened.parts += 1
            for entry in manifest["records"]:
                heatmap = None
                if entry["heatmap"]:
                    heatmap = _unpng(archive.read(entry["heatmap"]), entry["heatmap"])
                fields = {k: v for k, v in entry.items() if k not in ("image", "heatmap")}
                opened.records.append(
                    ScanRecord(
                        image=_unpng(archive.read(entry["image"]), entry["image"]),
                        heatmap=heatmap,
                        **fields,
                    )
                )
    assert opened is not None  # _export_files never returns an empty list
    opened.records.sort(key=lambda r: r.created_at)
    return opened


def save_opened(opened: OpenedExport, out_dir: str | os.PathLike[str]) -> Path:
    """Write a decrypted export for people to look at: ``records.json`` and PNG files.

    Returns:
        The path of ``records.json``.
    """
    import cv2

    folder = Path(out_dir)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for record in opened.records:
        entry = _fields(record)
        for key, image in (("image", record.image), ("heatmap", record.heatmap)):
            if image is not None:
                name = f"images/{record.scan_id}.{key}.png"
                pixels = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
                cv2.imwrite(str(folder / name), pixels)
                entry[key] = name
        rows.append(entry)
    out = folder / "records.json"
    header = {"export_id": opened.export_id, "device_id": opened.device_id}
    out.write_text(json.dumps({**header, "records": rows}, indent=1))
    return out
