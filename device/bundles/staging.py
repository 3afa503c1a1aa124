"""Copying a bundle from a stick into the store's staging folder, durably.

Only the files the (still unverified) manifest lists are copied, with ``manifest.json``
and ``manifest.sig``; each file is read up to one byte past its listed size, so a
padded or huge file cannot fill the disk and is still caught by the size check. Every
copied file is fsynced, then the folder, so what is verified afterwards is what is on
disk. Nothing here decides whether the bundle is good: the copy is verified afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from device.bundles.signing import SIGNATURE_NAME
from device.errors import BundleFileMissingError, DiskFullError, StorageError
from device.records.crypto import fsync_dir
from device.records.durable import is_disk_full
from device.runtime.manifest import MANIFEST_NAME

_CHUNK = 1 << 20
# The schema's FileName pattern: a bare name, no folders, no "..", not hidden.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
# Reserve kept free on the store's file system beyond the bundle itself.
SPACE_MARGIN_BYTES = 16 * 1024 * 1024
MAX_METADATA_BYTES = 16 * 1024 * 1024


def listed_files(source: Path) -> dict[str, int]:
    """File name -> size limit for the copy: the manifest's files plus the metadata.

    An unreadable manifest lists nothing more: the copy then holds just what is there
    of ``manifest.json`` and ``manifest.sig``, and verification names the problem.
    """
    wanted = {MANIFEST_NAME: MAX_METADATA_BYTES}
    wanted[SIGNATURE_NAME] = MAX_METADATA_BYTES
    try:
        data = json.loads((source / MANIFEST_NAME).read_bytes()[:MAX_METADATA_BYTES])
        files = data.get("files", {}) if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return wanted
    for name, entry in files.items() if isinstance(files, dict) else ():
        size = entry.get("size") if isinstance(entry, dict) else None
        if isinstance(name, str) and _SAFE_NAME.match(name) and name not in wanted:
            wanted[name] = size + 1 if isinstance(size, int) and size >= 0 else 0
    return wanted


def _copy_one(src: Path, dst: Path, limit: int) -> None:
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with src.open("rb") as reader:
            left = limit
            while left > 0:
                chunk = reader.read(min(_CHUNK, left))
                if not chunk:
                    break
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
                left -= len(chunk)
        os.fsync(fd)
    finally:
        os.close(fd)


def check_space(folder: Path, needed: int) -> None:
    """Refuse before copying when the file system has too little room.

    Raises:
        DiskFullError: less than ``needed`` plus a margin is free.
    """
    free = shutil.disk_usage(folder).free
    if free < needed + SPACE_MARGIN_BYTES:
        raise DiskFullError(
            f"Not enough space to install: the bundle needs {needed // 2**20 + 1} MB, "
            f"{free // 2**20} MB is free. Nothing was changed"
        )


def copy_bundle(source: Path, staging: Path) -> None:
    """Copy the bundle at ``source`` into the new folder ``staging`` and fsync it all.

    Raises:
        BundleFileMissingError: ``source`` is not a folder.
        DiskFullError: the file system filled up (the caller removes ``staging``).
        StorageError: a file could not be read or written.
    """
    if not source.is_dir():
        raise BundleFileMissingError(f"{source}: bundle folder not found")
    wanted = listed_files(source)
    metadata = (MANIFEST_NAME, SIGNATURE_NAME)
    check_space(staging.parent, sum(v for k, v in wanted.items() if k not in metadata))
    staging.mkdir(mode=0o755)
    for name, limit in wanted.items():
        src = source / name
        if src.is_symlink() or not src.is_file():
            continue  # verification of the copy names what is missing
        try:
            _copy_one(src, staging / name, limit)
        except OSError as exc:
            if is_disk_full(exc):
                raise DiskFullError(
                    "Storage full while copying the bundle: nothing was changed"
                ) from exc
            raise StorageError(f"{name}: cannot be copied ({exc.strerror or exc})") from exc
    fsync_dir(staging)


def remove_tree(paths: Iterable[Path]) -> None:
    """Remove folders or files, ignoring what is already gone (leftovers of a cut install)."""
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
