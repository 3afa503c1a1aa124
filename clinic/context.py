"""What the clinic app is set up with and what its pages share.

:mod:`clinic.app` (the factory) and :mod:`clinic.views` (the pages) both import
this module; the views never import the factory, so the two do not form a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinic.auth import LoginThrottle
from clinic.store import ClinicStore

DEFAULT_MAX_UPLOAD_BYTES = 32 * 1024 * 1024
EXTENSION = "skinscan_clinic"


@dataclass
class ClinicSettings:
    """How the clinic app is set up.

    Attributes:
        data_dir: the clinic data folder (see :mod:`clinic.store`).
        clinic_key: the clinic's private key file (``skinscan records keygen``).
        bundle_dir: the model bundle for uploads (default: the device's).
        config_file: a device config file for the quality thresholds (default: the device's).
        max_upload_bytes: the largest request body accepted (uploads, exports).
        max_pixels: the largest image accepted for analysis.
        secure_cookies: mark the session cookie ``Secure`` (behind a TLS proxy).
        session_hours: how long a login lasts.
        trusted_proxies: how many reverse proxies in front of the app set
            ``X-Forwarded-For``; 0 (default): the header is ignored and the
            connection's own address is the client's.
        throttle: the login lock-out's limits (bound to the store by the app).
    """

    data_dir: Path
    clinic_key: Path
    bundle_dir: Path | None = None
    config_file: Path | None = None
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_pixels: int = 40_000_000
    secure_cookies: bool = False
    session_hours: float = 8.0
    trusted_proxies: int = 0
    throttle: LoginThrottle = field(default_factory=LoginThrottle)


@dataclass
class ClinicContext:
    """What the views share: the store, the clinic key, the pipeline, the throttle."""

    settings: ClinicSettings
    store: ClinicStore
    clinic_private_key: bytes
    analysis: Any
    throttle: LoginThrottle


def clinic_context(app: Any) -> ClinicContext:
    """The :class:`ClinicContext` that :func:`clinic.app.create_app` attached to ``app``."""
    return app.extensions[EXTENSION]
