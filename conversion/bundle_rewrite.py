"""Rewrite a bundle in place: new calibration, metrics or familiarity, same model files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conversion.manifest import MODEL_CARD_FILE, build_manifest, write_bundle
from conversion.model_card import render_model_card
from device.runtime.bundle import verify_files
from device.runtime.manifest import FamiliaritySpec


def rewrite_bundle(
    bundle_dir: Path,
    manifest: Any,
    *,
    calibration: dict[str, float] | None = None,
    metrics: dict[str, Any] | None = None,
    familiarity: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
    extra_files: dict[str, bytes] | None = None,
) -> Any:
    """Rewrite a bundle in place with changed calibration, metrics, familiarity or provenance.

    The model card is rendered again and every file's checksum recomputed; the
    model files themselves are copied unchanged (they keep the bundle id).
    """
    files = verify_files(bundle_dir, manifest)
    files.update(extra_files or {})
    update: dict[str, Any] = {}
    if calibration:
        update["calibration"] = manifest.calibration.model_copy(update=calibration)
    if metrics is not None:
        update["metrics"] = metrics
    if provenance:
        update["provenance"] = manifest.provenance.model_copy(update=provenance)
    spec = familiarity if familiarity is not None else manifest.familiarity
    if spec is not None:
        update["familiarity"] = FamiliaritySpec.model_validate(
            spec if isinstance(spec, dict) else spec.model_dump()
        )
    draft = manifest.model_copy(update=update)
    files[MODEL_CARD_FILE] = render_model_card(draft).encode("utf-8")
    rebuilt = build_manifest(
        files,
        bundle_id=draft.bundle_id,
        preprocessing=draft.preprocessing,
        calibration=draft.calibration,
        provenance=draft.provenance,
        metrics=draft.metrics,
        created_at=draft.created_at,
        familiarity=draft.familiarity,
    )
    write_bundle(bundle_dir, files, rebuilt)
    return rebuilt
