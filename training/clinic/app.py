"""The Flask app factory of the clinic web app.

Security settings, all from well-kept libraries: session cookies signed by
Flask (``HttpOnly``, ``SameSite=Strict``, ``Secure`` behind TLS), CSRF tokens
on every form (Flask-WTF's :class:`~flask_wtf.csrf.CSRFProtect`), an upload
size limit (``MAX_CONTENT_LENGTH``), a strict Content-Security-Policy, and a
login check before every request but the login page and the stylesheet.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from training.clinic.auth import LoginThrottle
from training.clinic.store import ClinicStore

log = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_BYTES = 32 * 1024 * 1024
EXTENSION = "skinscan_clinic"


@dataclass
class ClinicSettings:
    """How the clinic app is set up.

    Attributes:
        data_dir: the clinic data folder (see :mod:`training.clinic.store`).
        clinic_key: the clinic's private key file (``skinscan records keygen``).
        bundle_dir: the model bundle for uploads (default: the device's).
        config_file: a device config file for the quality thresholds (default: the device's).
        max_upload_bytes: the largest request body accepted (uploads, exports).
        max_pixels: the largest image accepted for analysis.
        secure_cookies: mark the session cookie ``Secure`` (behind a TLS proxy).
        session_hours: how long a login lasts.
    """

    data_dir: Path
    clinic_key: Path
    bundle_dir: Path | None = None
    config_file: Path | None = None
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_pixels: int = 40_000_000
    secure_cookies: bool = False
    session_hours: float = 8.0
    throttle: LoginThrottle = field(default_factory=LoginThrottle)


@dataclass
class ClinicContext:
    """What the views share: the store, the clinic key, the pipeline, the throttle."""

    settings: ClinicSettings
    store: ClinicStore
    clinic_private_key: bytes
    analysis: Any
    throttle: LoginThrottle


def create_app(
    settings: ClinicSettings, *, store: ClinicStore | None = None, analysis: Any = None
) -> Any:
    """Build the Flask app.

    Args:
        settings: the app's settings.
        store: an open clinic store (default: opened from ``settings.data_dir``).
        analysis: an :class:`~training.clinic.analysis.AnalysisService` (default:
            loaded from the settings' bundle).

    Returns:
        The ``flask.Flask`` app.

    Raises:
        ExportKeyError: the clinic key file is missing or not a private key.
        BundleError: the model bundle is invalid.
        StorageError: the data folder cannot be used.
    """
    from flask import Flask
    from flask_wtf.csrf import CSRFProtect

    from device.records.export import load_private_key
    from training.clinic import views
    from training.clinic.analysis import AnalysisService

    private_key = load_private_key(settings.clinic_key)
    if analysis is None:
        analysis = AnalysisService(
            settings.bundle_dir, config_file=settings.config_file, max_pixels=settings.max_pixels
        )
    if store is None:
        store = ClinicStore(settings.data_dir)

    app = Flask(__name__.rsplit(".", 1)[0])
    app.config.update(
        SECRET_KEY=store.session_secret(),
        SESSION_COOKIE_NAME="skinscan_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=bool(settings.secure_cookies),
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.session_hours),
        MAX_CONTENT_LENGTH=int(settings.max_upload_bytes),
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        WTF_CSRF_SSL_STRICT=bool(settings.secure_cookies),
        TEMPLATES_AUTO_RELOAD=False,
    )
    CSRFProtect(app)
    app.extensions[EXTENSION] = ClinicContext(
        settings=settings,
        store=store,
        clinic_private_key=private_key,
        analysis=analysis,
        throttle=settings.throttle,
    )
    views.register(app)
    log.info(
        "clinic app ready: data %s, bundle %s, %d scans",
        settings.data_dir,
        analysis.bundle_id,
        store.scan_count(),
    )
    return app
