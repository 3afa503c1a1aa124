"""Helpers for the adaptation tests: an adapted bundle written without the whole CLI."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from clinic.adaptation.base_head import base_head  # noqa: E402
from clinic.adaptation.writer import write_adapted_bundle  # noqa: E402
from device.runtime.bundle import Bundle  # noqa: E402
from device.runtime.classifier import LinearHead  # noqa: E402
from device.runtime.manifest import AdaptationSpec, preprocessing_sha256  # noqa: E402

ISIC_DIR = ROOT.parent / "shared" / "data" / "isic-archive"


def perturbed_head(bundle: Bundle, seed: int = 0, scale: float = 0.5) -> LinearHead:
    """The bundle's own head with its columns shuffled and noise added: clearly different."""
    head = base_head(bundle)
    rng = np.random.default_rng(seed)
    order = rng.permutation(head.n_classes)
    noise = rng.normal(0, scale * float(np.abs(head.weights).mean()), head.weights.shape)
    weights = (head.weights[:, order] + noise).astype(np.float32)
    return LinearHead(weights=weights, bias=head.bias[order].astype(np.float32))


def write_adapted(
    out: Path,
    base: Bundle,
    head: LinearHead,
    *,
    site: str = "clinic-north",
    threshold: float = 0.3,
    spec_overrides: dict | None = None,
) -> Path:
    """Write an adapted bundle of ``base`` with ``head`` (as ``skinscan adapt`` would)."""
    spec = AdaptationSpec(
        base_bundle_id=base.bundle_id,
        base_model_sha256=base.model_sha256,
        base_preprocessing_sha256=preprocessing_sha256(base.manifest.preprocessing),
        site=site,
        adapted_at="2026-12-07T13:00:00+00:00",
        n_cases=40,
        cases_per_class={"mel": 15, "nv": 25},
        **(spec_overrides or {}),
    )
    write_adapted_bundle(
        out,
        base,
        head,
        bundle_id=f"{base.bundle_id[:30]}-{site}",
        adaptation=spec,
        calibration={"temperature": 1.0, "referral_threshold": threshold},
        metrics={"note": "test"},
        model_card="# test card\n",
        created_at="2026-12-07T13:00:00+00:00",
    )
    return out
