"""The Flask app factory of the clinic web app.

Security settings, all from well-kept libraries: session cookies signed by
Flask (``HttpOnly``, ``SameSite=Strict``, ``Secure`` behind TLS), CSRF tokens
on every form (Flask-WTF's :class:`~flask_wtf.csrf.CSRFProtect`), an upload
size limit (``MAX_CONTENT_LENGTH``), a strict Content-Security-Policy, a
login check before every request but the login page and the stylesheet, and a
per-account login lock-out kept in the clinic database. ``X-Forwarded-For`` is
believed only when ``trusted_proxies`` says how many proxies set it (werkzeug's
:class:`~werkzeug.middleware.proxy_fix.ProxyFix`).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from clinic.context import EXTENSION, ClinicContext, ClinicSettings
from clinic.store import ClinicStore
from device.errors import ConfigError

__all__ = ["ClinicSettings", "create_app"]

log = logging.getLogger(__name__)


def create_app(
    settings: ClinicSettings, *, store: ClinicStore | None = None, analysis: Any = None
) -> Any:
    """Build the Flask app.

    Args:
        settings: the app's settings.
        store: an open clinic store (default: opened from ``settings.data_dir``).
        analysis: an :class:`~clinic.analysis.AnalysisService` (default:
            loaded from the settings' bundle).

    Returns:
        The ``flask.Flask`` app.

    Raises:
        ConfigError: a setting is out of range.
        ExportKeyError: the clinic key file is missing or not a private key.
        BundleError: the model bundle is invalid.
        StorageError: the data folder cannot be used.
    """
    from flask import Flask
    from flask_wtf.csrf import CSRFProtect

    from clinic import views, views_cases
    from clinic.analysis import AnalysisService
    from device.records.export import load_private_key

    private_key = load_private_key(settings.clinic_key)
    if analysis is None:
        analysis = AnalysisService(
            settings.bundle_dir, config_file=settings.config_file, max_pixels=settings.max_pixels
        )
    if settings.trusted_proxies < 0:
        raise ConfigError(f"trusted_proxies {settings.trusted_proxies}: must be 0 or more")
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
        throttle=settings.throttle.using(store),
    )
    views.register(app)
    views_cases.register(app)
    if settings.trusted_proxies:
        from werkzeug.middleware.proxy_fix import ProxyFix

        # Only the client address: the scheme and host stay as served, so Flask-WTF's
        # strict referrer check is not switched on behind a proxy whose pages send none.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies)
    log.info(
        "clinic app ready: data %s, bundle %s, %d scans",
        settings.data_dir,
        analysis.bundle_id,
        store.scan_count(),
    )
    return app
