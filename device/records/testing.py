"""Helpers for tests that need scan records (no hardware, no model)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from device.labels import CLASS_CODES, MALIGNANT_CODES
from device.records.api import ScanRecord

_EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)


def make_record(seed: int = 0, size: int = 32, **overrides: Any) -> ScanRecord:
    """A valid record with random (incompressible) images, deterministic for ``seed``.

    Args:
        seed: makes the images, probabilities and time (``seed`` minutes after 2024-01-01).
        size: image side in pixels; the heatmap has the same size.
        **overrides: fields to set, e.g. ``patient_ref="SKS-0001-22"``.
    """
    rng = np.random.default_rng(seed)
    scores = rng.dirichlet(np.ones(len(CLASS_CODES)))
    probabilities = {code: float(p) for code, p in zip(CLASS_CODES, scores, strict=True)}
    label = max(probabilities, key=probabilities.__getitem__)
    p_malignant = float(sum(probabilities[c] for c in MALIGNANT_CODES))
    fields: dict[str, Any] = {
        "scan_id": str(uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | seed, version=4)),
        "created_at": (_EPOCH + timedelta(minutes=seed)).isoformat(),
        "device_id": "test-device",
        "image": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        "heatmap": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        "probabilities": probabilities,
        "label": label,
        "risk_tier": "refer" if p_malignant > 0.5 else "monitor",
        "p_malignant": p_malignant,
        "quality": {"sharpness": float(rng.uniform(10, 100)), "dark_fraction": 0.01},
        "bundle_id": "test-bundle",
        "bundle_sha256": "0" * 64,
        "app_version": "0.0.test",
    }
    fields.update(overrides)
    return ScanRecord(**fields)
