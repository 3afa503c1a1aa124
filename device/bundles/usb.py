"""Finding bundle folders on a USB stick, for the install screen.

What is read here is not verified: it only lists candidates and describes them. The
install verifies the copy it makes (:meth:`device.bundles.store.BundleStore.install`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from device.bundles.signing import SIGNATURE_NAME
from device.runtime.manifest import MANIFEST_NAME

# A bundle folder at the stick's top, or one or two folders down (e.g. bundles/site-a/).
MAX_DEPTH = 2
MAX_CANDIDATES = 50


def _is_bundle(folder: Path) -> bool:
    return (folder / MANIFEST_NAME).is_file()


def find_bundles_on(usb_root: str | os.PathLike[str]) -> list[Path]:
    """Bundle folders (holding a manifest.json) on a stick, sorted by path.

    Looks at ``usb_root`` itself and up to two folder levels below it, skipping hidden
    folders and folders it cannot read; a stick that is not mounted gives an empty list.

    Args:
        usb_root: the stick's mount point, e.g. ``/media/usb``.

    Returns:
        Up to 50 folders, nearest first then by name.
    """
    root = Path(usb_root)
    found: list[Path] = []
    level = [root] if root.is_dir() else []
    for _depth in range(MAX_DEPTH + 1):
        following: list[Path] = []
        for folder in level:
            if _is_bundle(folder):
                found.append(folder)
                continue  # a bundle's own folder holds no further bundles
            try:
                children = sorted(p for p in folder.iterdir() if p.is_dir())
            except OSError:
                continue
            following += [p for p in children if not p.name.startswith(".") and not p.is_symlink()]
        level = following
        if len(found) >= MAX_CANDIDATES:
            break
    return found[:MAX_CANDIDATES]


def describe_candidate(folder: str | os.PathLike[str]) -> str:
    """One line about a bundle folder for the screen, from its unverified manifest.

    E.g. ``"v6-north · adapted for clinic-north, 2026-12-07 · signed"``; the line says
    "not signed" when ``manifest.sig`` is missing, and "unreadable" when the manifest is.
    """
    path = Path(folder)
    signed = "signed" if (path / SIGNATURE_NAME).is_file() else "not signed"
    try:
        data = json.loads((path / MANIFEST_NAME).read_bytes()[: 1 << 24])
        bundle_id = str(data.get("bundle_id", "?"))[:64]
        adaptation = data.get("adaptation")
    except (OSError, ValueError, AttributeError):
        return f"{path.name} · unreadable manifest · {signed}"
    parts = [bundle_id]
    if isinstance(adaptation, dict):
        site = str(adaptation.get("site", "?"))[:64]
        parts.append(f"adapted for {site}, {str(adaptation.get('adapted_at', ''))[:10]}")
    parts.append(signed)
    return " · ".join(parts)
