"""Writing the adapted bundle: base files copied byte for byte, head, card, sealed manifest.

The bundle is written into a temporary folder beside ``--out``, loaded back with the
device's own loader (every check the scanner makes), and only then renamed to
``--out``: a crash leaves either no bundle or a whole one, never half of one. An
existing non-empty ``--out`` is refused, never overwritten. The manifest is sealed
by :func:`conversion.manifest.write_bundle`, the same code conversion uses.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from clinic.adaptation.rules import OutputExistsError
from conversion.manifest import MODEL_CARD_FILE, write_bundle
from device.runtime.bundle import Bundle, load_bundle, sha256_bytes, verify_files
from device.runtime.classifier import LinearHead
from device.runtime.manifest import AdaptationSpec, FileEntry, Manifest

log = logging.getLogger(__name__)


def check_output_folder(out: str | Path) -> Path:
    """Refuse an output folder that exists and is not empty (checked before any work).

    Raises:
        OutputExistsError: ``out`` is a file, or a folder with something in it.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputExistsError(
            f"{out}: already exists and is not an empty folder; choose a new --out "
            "(an adapted bundle is never written over another)"
        )
    return out


def slug(text: str, limit: int = 20) -> str:
    """Lower-case letters, digits and dashes only, at most ``limit`` characters."""
    cleaned = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return (cleaned or "site")[:limit].strip("-")


def adapted_bundle_id(base_id: str, site: str, head: LinearHead) -> str:
    """``<base id>-<site>-<head sha256[:8]>``, at most 64 characters."""
    return f"{base_id[:34]}-{slug(site)}-{sha256_bytes(head.to_bytes())[:8]}"


def write_adapted_bundle(
    out: str | Path,
    base: Bundle,
    head: LinearHead,
    *,
    bundle_id: str,
    adaptation: AdaptationSpec,
    calibration: dict[str, float],
    metrics: dict[str, Any],
    model_card: str,
    created_at: str,
) -> Manifest:
    """Write the adapted bundle atomically and return its (loaded-back) manifest.

    Args:
        out: the new bundle folder (must not exist, or be empty).
        base: the loaded base bundle; its files are re-verified and copied unchanged.
        head: the adapted head.
        bundle_id: the new bundle's id.
        adaptation: the manifest's adaptation section (``head_file`` names the head).
        calibration: changed calibration fields (temperature, referral_threshold).
        metrics: the manifest's metrics (the cross-validation figures).
        model_card: MODEL_CARD.md text.
        created_at: ISO time.

    Raises:
        OutputExistsError: ``out`` is not empty.
        BundleError: the written bundle does not load (then nothing is left behind).
    """
    out = check_output_folder(out)
    files = verify_files(base.path, base.manifest)
    if base.manifest.adaptation is not None:
        files.pop(base.manifest.adaptation.head_file, None)
    files[adaptation.head_file] = head.to_bytes()
    files[MODEL_CARD_FILE] = model_card.encode("utf-8")
    data = base.manifest.model_dump(mode="json", exclude={"adaptation"})
    data.update(
        bundle_id=bundle_id,
        created_at=created_at,
        calibration={**data["calibration"], **calibration},
        metrics=metrics,
        adaptation=adaptation.model_dump(mode="json"),
        files={
            name: FileEntry(sha256=sha256_bytes(content), size=len(content)).model_dump()
            for name, content in sorted(files.items())
        },
        decision_sha256="",
    )
    manifest = Manifest.model_validate(data)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.adapt-{os.getpid()}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        write_bundle(tmp, files, manifest)
        written = load_bundle(tmp).manifest
        if out.exists():
            out.rmdir()  # empty, checked above
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote adapted bundle %s to %s", bundle_id, out)
    return written
