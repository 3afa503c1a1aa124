"""Signed test bundles: signing keys, signed tiny bundles, hand-built adapted bundles.

Built on :func:`bundle_factory.make_bundle` (the prebuilt tiny int8 models, no
TensorFlow). An adapted bundle is written here by hand, as the bundle contract
describes it (``head.npz`` plus a sealed ``adaptation`` section), so these tests do
not depend on ``skinscan adapt``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from bundle_factory import make_bundle

from device.bundles.keys import generate_signing_keypair, load_trusted_keys
from device.bundles.signing import sign_bundle
from device.runtime.bundle import sha256_bytes
from device.runtime.classifier import LinearHead
from device.runtime.manifest import MANIFEST_NAME, Manifest, preprocessing_sha256


def make_keys(folder: Path) -> tuple[Path, Path, dict[str, bytes]]:
    """A fresh signing key pair in ``folder``: (private, public, trusted-key mapping)."""
    private, public = generate_signing_keypair(folder)
    return private, public, load_trusted_keys([public])


def signed_bundle(dest: Path, key: Path | None, **kwargs: Any) -> Path:
    """A tiny bundle at ``dest``, signed with ``key`` (left unsigned when ``key`` is None)."""
    make_bundle(dest, **kwargs)
    if key is not None:
        sign_bundle(dest, key)
    return dest


def rewrite_manifest(bundle: Path, change: Mapping[str, Any], *, seal: bool = True) -> None:
    """Merge ``change`` into the manifest's top level and write it back (sealed again)."""
    data = json.loads((bundle / MANIFEST_NAME).read_text())
    data.update(change)
    manifest = Manifest.model_validate(data)
    if seal:
        manifest = manifest.sealed()
    (bundle / MANIFEST_NAME).write_text(manifest.to_json())


def adapted_bundle(
    dest: Path,
    key: Path | None,
    *,
    base: Path | None = None,
    site: str = "clinic-north",
    adaptation: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> Path:
    """An adapted bundle: a copy of ``base`` (a fresh tiny bundle by default) with a head.

    Args:
        dest: the folder to write.
        key: the private signing key, or None to leave it unsigned.
        base: the base bundle folder to adapt.
        site: the adaptation's site.
        adaptation: overrides of the adaptation section (e.g. another base trunk).
        seed: the head's random weights.
    """
    if base is None:
        base = make_bundle(dest.parent / f"{dest.name}-base")
    shutil.copytree(base, dest)
    (dest / "manifest.sig").unlink(missing_ok=True)
    data = json.loads((dest / MANIFEST_NAME).read_text())
    channels = data["classifier"]["feature_map"]["shape"][-1]
    classes = len(data["labels"])
    rng = np.random.default_rng(seed)
    head = LinearHead(
        rng.normal(0, 0.1, (channels, classes)).astype(np.float32),
        rng.normal(0, 0.1, classes).astype(np.float32),
    ).to_bytes()
    (dest / "head.npz").write_bytes(head)
    files = dict(data["files"])
    files["head.npz"] = {"sha256": sha256_bytes(head), "size": len(head)}
    section = {
        "head_file": "head.npz",
        "head_runtime": "float32",
        "base_bundle_id": data["bundle_id"],
        "base_model_sha256": files["model.tflite"]["sha256"],
        "base_preprocessing_sha256": preprocessing_sha256(data["preprocessing"]),
        "site": site,
        "adapted_at": "2026-12-07T13:00:00+00:00",
        "n_cases": 60,
        "cases_per_class": {"mel": 20, "nv": 40},
    }
    section.update(adaptation or {})
    rewrite_manifest(
        dest, {"files": files, "adaptation": section, "bundle_id": f"{data['bundle_id']}-{site}"}
    )
    if key is not None:
        sign_bundle(dest, key)
    return dest
