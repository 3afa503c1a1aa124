"""The clinic app's pages: login, patients, scans, follow-up, import, upload, review.

The casework pages (worklist, confirmed diagnoses, sites, confirmed cases, CSV
export) are in :mod:`clinic.views_cases`, which builds on this module's helpers.

Every page and image needs a login (:func:`_require_login` runs before each
request); only the login page and the stylesheet are served without one.
Every failure a user can cause gets a page that says what happened, with a
4xx status, never a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from clinic.analysis import QualityGateError, UploadError
from clinic.auth import verify_login
from clinic.confirmed_cases import BASIS_LABELS, CONFIRMED_LABELS
from clinic.context import ClinicContext, clinic_context
from clinic.followup import compare, different_lesions
from clinic.importer import ImportRefusedError, import_uploaded, receipt_name
from device.errors import SkinScanError, StorageError, TamperError
from device.imaging import quality
from device.imaging.quality import judged_metrics
from device.labels import HAM10000_CLASSES
from device.records.api import InvalidRecordError, PatientRefError, ScanRecord
from device.records.qr import validate_patient_ref
from device.result_text import referral_figures
from device.ui.screens import NOTICE, tier_action

log = logging.getLogger(__name__)

PUBLIC_ENDPOINTS = frozenset({"login", "static"})
# The quality gate's metrics (device.imaging.quality.QualityReport) in the order the
# table shows them: label, and which way the metric must lie against which threshold.
QUALITY_METRICS = {
    "sharpness": ("Sharpness (variance of Laplacian)", ">=", "min_sharpness"),
    "reblur_loss": ("Re-blur loss (sharpness, any contrast)", ">=", "min_reblur_loss"),
    "dark_fraction": ("Dark pixels", "<=", "max_dark_fraction"),
    "bright_fraction": ("Bright (clipped) pixels", "<=", "max_bright_fraction"),
    "colourfulness": ("Colourfulness (CIELAB chroma)", ">=", "min_colourfulness"),
    "lesion_contrast": ("Lesion contrast", ">=", "min_lesion_contrast"),
    "ink_fraction": ("Ink or pen marks (share of the centre)", "<=", "max_ink_fraction"),
    "lesion_colour_distance": (
        "Lesion colour against skin (CIELAB ΔE)",
        ">=",
        "min_lesion_colour_distance",
    ),
}
# The quality gate speaks to a health worker holding the scanner ("check the LED
# ring"); an uploaded photo needs advice about the photo. Keyed by what failed;
# a reason not listed here is shown as the gate words it.
UPLOAD_ADVICE = {
    quality.REASON_BLUR.split(" — ")[0]: "upload a sharper photo (in focus, not moved)",
    quality.REASON_DARK.split(" — ")[0]: "upload a better-lit photo",
    quality.REASON_BRIGHT.split(" — ")[0]: "upload a photo without glare or clipped highlights",
    quality.REASON_NO_LESION.split(" — ")[0]: "upload a photo with the lesion in the centre",
    quality.REASON_INK.split(" — ")[0]: "upload a photo of the lesion itself",
}
REFILL_FILE = "Your entries are kept; choose the image file again (browsers do not keep it)."
DIAGNOSES = [(d.code, f"{d.name} ({d.code})") for d in HAM10000_CLASSES] + [("other", "Other")]
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def _ctx() -> ClinicContext:
    from flask import current_app

    return clinic_context(current_app)


def _user() -> str:
    from flask import session

    return str(session.get("user", ""))


def _page(template: str, status: int = 200, **values: Any) -> Any:
    from flask import render_template

    return render_template(template, user=_user(), notice=NOTICE, **values), status


def _message(title: str, text: str, status: int, **values: Any) -> Any:
    return _page("message.html", status, title=title, text=text, **values)


def _safe_next(target: str | None) -> str:
    """Only a local path may follow the login (no open redirect)."""
    from flask import url_for

    if target and target.startswith("/") and not target.startswith("//"):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("patients")


# --------------------------------------------------------------------------- hooks


def _require_login() -> Any:
    from flask import redirect, request, session, url_for

    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if not session.get("user"):
        return redirect(url_for("login", next=request.full_path.rstrip("?")))
    return None


def _headers(response: Any) -> Any:
    from flask import request

    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.endpoint != "static":
        response.headers["Cache-Control"] = "no-store"
    return response


# --------------------------------------------------------------------------- view models


def _quality_rows(quality: Mapping[str, float], thresholds: Any) -> list[dict[str, Any]]:
    """The quality table: each metric with its label, value, limit and pass/fail.

    A metric this page does not know (from a newer scanner) is shown as it is named,
    without a limit.
    """
    rows = []
    known = [n for n in QUALITY_METRICS if n in quality]
    for name in known + sorted(set(quality) - set(QUALITY_METRICS)):
        value = quality[name]
        label, op, attribute = QUALITY_METRICS.get(name, (name, None, None))
        limit = None if attribute is None else getattr(thresholds, attribute)
        passed = None if limit is None else (value >= limit if op == ">=" else value <= limit)
        if name == "lesion_contrast" and passed is False:
            # The gate lets a faint lesion through when its colour stands out clearly.
            distance = quality.get("lesion_colour_distance")
            faint_ok = getattr(thresholds, "faint_lesion_colour_distance", None)
            passed = distance is not None and faint_ok is not None and distance >= faint_ok
        rows.append(
            {
                "metric": name,
                "name": label,
                "value": value,
                "limit": None if limit is None else f"{op} {limit:g}",
                "passed": passed,
                "judged": True,
            }
        )
    # A check after the first failing stage was measured but never judged by the gate.
    judged = judged_metrics({r["metric"] for r in rows if r["passed"] is False})
    for row in rows:
        row["judged"] = row["metric"] in judged or row["metric"] not in QUALITY_METRICS
    return rows


def _scan_view(record: ScanRecord) -> dict[str, Any]:
    from device.app.results import result_from_record

    ctx = _ctx()
    default = ctx.analysis.referral_threshold if record.bundle_id == ctx.analysis.bundle_id else 0.5
    view = result_from_record(record, default_threshold=default)
    # The figures and their comparison from the device's referral rule (never "10%" < "10%").
    figures = referral_figures(view.p_malignant, view.referral_threshold, min_decimals=1)
    return {
        "record": record,
        "top3": view.top3,
        "p_malignant": view.p_malignant,
        "threshold": view.referral_threshold,
        "above": figures.above,
        "figures": figures,
        "tier": view.risk_tier,
        "action": tier_action(view.risk_tier, view.unfamiliar),
        "unusual_light": view.unusual_light,
        "has_heatmap": record.heatmap is not None and record.heatmap.ndim == 3,
        "quality": _quality_rows(record.quality, ctx.analysis.thresholds),
        "source": record.extra.get("source", "scanner export"),
    }


def _png_response(image: Any) -> Any:
    import cv2
    import numpy as np
    from flask import Response

    pixels = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(pixels))
    if not ok:
        raise StorageError("the image could not be encoded")
    return Response(buf.tobytes(), mimetype="image/png")


def _load_scan(scan_id: str) -> ScanRecord:
    from flask import abort

    try:
        return _ctx().store.get_scan(scan_id)
    except KeyError:
        abort(404)


# --------------------------------------------------------------------------- pages


def login() -> Any:
    """GET: the login form. POST: check the password (throttled), start a session."""
    from flask import redirect, request, session

    ctx = _ctx()
    if request.method == "GET":
        return _page("login.html", next=request.args.get("next", ""))
    username = request.form.get("username", "").strip().lower()
    password = request.form.get("password", "")
    # Per account, never per address: behind a proxy on the same machine all users
    # share one address (the address is logged, and is the client's only when
    # trusted_proxies is set).
    wait = ctx.throttle.retry_after(username)
    if wait > 0:
        minutes = max(1, round(wait / 60))
        log.warning("locked account %r: login refused from %s", username, request.remote_addr)
        return _page(
            "login.html",
            429,
            error=(
                f"Too many failed logins for this account. Try again in about {minutes} "
                "minute(s), or ask the clinic's administrator to unlock it."
            ),
            next=request.form.get("next", ""),
        )
    if not username or not verify_login(ctx.store, username, password):
        ctx.throttle.failed(username, request.remote_addr)
        log.warning("failed login for %r from %s", username, request.remote_addr)
        return _page(
            "login.html",
            401,
            error="Wrong username or password.",
            next=request.form.get("next", ""),
        )
    ctx.throttle.succeeded(username)
    session.clear()  # a fresh session (and CSRF token) at every login
    session["user"] = username
    session.permanent = True
    log.info("login: %s from %s", username, request.remote_addr)
    return redirect(_safe_next(request.form.get("next")))


def logout() -> Any:
    """End the session."""
    from flask import redirect, session, url_for

    session.clear()
    return redirect(url_for("login"))


def index() -> Any:
    """The start page is the patient list."""
    from flask import redirect, url_for

    return redirect(url_for("patients"))


def patients() -> Any:
    """Patients by the scanner's patient reference, the most recently scanned first."""
    store = _ctx().store
    return _page(
        "patients.html",
        patients=store.patients(),
        unreferenced=len(store.scans_of(None)),
        total=store.scan_count(),
    )


def patient(patient_ref: str) -> Any:
    """One patient's scans, newest first, with the follow-up picker."""
    from flask import abort

    try:
        ref = validate_patient_ref(patient_ref)
    except PatientRefError:
        abort(404)
    scans = _ctx().store.scans_of(ref)
    if not scans:
        abort(404)
    return _page("patient.html", patient_ref=ref, scans=scans)


def unreferenced() -> Any:
    """Scans that carry no patient reference, newest first."""
    return _page("patient.html", patient_ref=None, scans=_ctx().store.scans_of(None))


def scan(scan_id: str) -> Any:
    """The result page of one scan, with its reviews and the review form."""
    record = _load_scan(scan_id)
    store = _ctx().store
    siblings = [s for s in store.scans_of(record.patient_ref) if s.scan_id != scan_id]
    if record.body_site:
        siblings = [s for s in siblings if s.body_site == record.body_site] or siblings
    if record.lesion:  # a labelled lesion is followed up only against the same lesion
        key = (record.body_site, record.body_side, record.lesion)
        siblings = [s for s in siblings if (s.body_site, s.body_side, s.lesion) == key]
    return _page(
        "scan.html",
        scan=_scan_view(record),
        reviews=store.reviews(scan_id),
        diagnoses=DIAGNOSES,
        siblings=siblings[:10],
        confirmations=store.confirmations(scan_id),
        confirmed_labels=CONFIRMED_LABELS,
        basis_labels=BASIS_LABELS,
    )


def scan_photo(scan_id: str) -> Any:
    """The scan's photo (PNG, after login only)."""
    return _png_response(_load_scan(scan_id).image)


def scan_heatmap(scan_id: str) -> Any:
    """The scan's Grad-CAM overlay (PNG, after login only)."""
    from flask import abort

    record = _load_scan(scan_id)
    if record.heatmap is None:
        abort(404)
    return _png_response(record.heatmap)


def review(scan_id: str) -> Any:
    """Append the clinician's review of a scan."""
    from flask import redirect, request, url_for

    verdict = request.form.get("verdict", "")
    diagnosis = request.form.get("diagnosis", "").strip()
    note = request.form.get("note", "").strip()
    if verdict not in ("agree", "disagree"):
        return _message("Review not saved", "Choose whether you agree or disagree.", 400)
    if diagnosis and diagnosis not in {code for code, _ in DIAGNOSES}:
        return _message("Review not saved", "Choose a diagnosis from the list.", 400)
    if len(note) > 2000:
        return _message("Review not saved", "The note is longer than 2000 characters.", 400)
    try:
        _ctx().store.add_review(scan_id, _user(), verdict, diagnosis or None, note)
    except KeyError:
        return _message("Review not saved", "There is no such scan.", 404)
    return redirect(url_for("scan", scan_id=scan_id) + "#reviews")


def compare_scans() -> Any:
    """Two scans of the same patient side by side, with what changed."""
    from flask import request

    ids = [request.args.get("a", ""), request.args.get("b", "")]
    ids += request.args.getlist("scan")
    ids = list(dict.fromkeys(i for i in ids if i))
    if len(ids) != 2:
        return _message("Choose two scans", "Tick exactly two scans to compare.", 400)
    records = [_load_scan(i) for i in ids]
    if records[0].patient_ref != records[1].patient_ref:
        return _message(
            "Not the same patient",
            "These scans belong to different patients; a follow-up compares one lesion.",
            400,
        )
    if different_lesions(records[0], records[1]):
        return _message(
            "Not the same lesion",
            "These scans are of different lesions (body site, side or lesion label differ); "
            "a follow-up compares one lesion.",
            400,
        )
    comparison = compare(records[0], records[1], _ctx().analysis.analyzer.spec)
    views = [_scan_view(comparison.earlier), _scan_view(comparison.later)]
    return _page("compare.html", c=comparison, views=views)


def import_page() -> Any:
    """GET: the import form and log. POST: import the uploaded export parts."""
    from flask import request

    ctx = _ctx()
    if request.method == "GET":
        return _page("import.html", imports=ctx.store.imports())
    files = [(f.filename or "", f.read()) for f in request.files.getlist("export") if f.filename]
    try:
        report = import_uploaded(ctx.store, files, ctx.clinic_private_key, imported_by=_user())
    except ImportRefusedError as exc:
        log.warning("import refused: %s", exc)
        return _page("import.html", 422, imports=ctx.store.imports(), error=str(exc))
    return _page("import.html", imports=ctx.store.imports(), report=report)


def import_receipt(export_id: str) -> Any:
    """The receipt of an imported export, as a file for the scanner's ``records ack``."""
    from flask import Response, abort

    receipt = _ctx().store.receipt(export_id)
    if receipt is None:
        abort(404)
    disposition = f'attachment; filename="{receipt_name(export_id)}"'
    return Response(
        receipt, mimetype="application/json", headers={"Content-Disposition": disposition}
    )


def _upload_advice(reason: str) -> str:
    """A quality-gate reason with advice for an uploaded photo instead of the device's."""
    what = reason.split(" — ", 1)[0]
    return f"{what} — {UPLOAD_ADVICE[what]}" if what in UPLOAD_ADVICE else reason


def _upload_form(status: int, error: str, form: Mapping[str, str]) -> Any:
    """The upload form again, with the message and what the user had entered."""
    if any(form.values()):
        error = f"{error} {REFILL_FILE}"
    return _page("upload.html", status, analysis=_ctx().analysis, error=error, form=form)


def upload() -> Any:
    """GET: the upload form. POST: analyse the image through the device pipeline."""
    from flask import redirect, request, url_for

    ctx = _ctx()
    if request.method == "GET":
        return _page("upload.html", analysis=ctx.analysis, form={})
    form = {
        "patient_ref": request.form.get("patient_ref", "").strip()[:64],
        "body_site": request.form.get("body_site", "").strip()[:64],
    }
    file = request.files.get("image")
    if file is None or not file.filename:
        return _upload_form(400, "Choose an image file.", form)
    patient_ref = form["patient_ref"] or None
    if patient_ref is not None:
        try:
            patient_ref = validate_patient_ref(patient_ref)
        except PatientRefError as exc:
            return _upload_form(400, f"Patient reference refused: {exc}.", form)
    data = file.read()
    try:
        record = ctx.analysis.analyse_upload(
            data,
            ctx.store.temp_path(),
            uploaded_by=_user(),
            patient_ref=patient_ref,
            body_site=form["body_site"] or None,
        )
    except QualityGateError as exc:
        return _page(
            "retake.html",
            422,
            reasons=[_upload_advice(r) for r in exc.reasons],
            quality=_quality_rows(exc.metrics, ctx.analysis.thresholds),
        )
    except (UploadError, InvalidRecordError) as exc:
        return _upload_form(400, f"{exc}.", form)
    ctx.store.add_scan(record)
    return redirect(url_for("scan", scan_id=record.scan_id))


# --------------------------------------------------------------------------- errors


def _csrf_error(exc: Any) -> Any:
    return _message(
        "Form expired",
        f"The form could not be accepted ({exc.description}). Reload the page and try again.",
        400,
    )


def _too_large(_exc: Any) -> Any:
    from flask import current_app

    limit = current_app.config["MAX_CONTENT_LENGTH"] // (1024 * 1024)
    return _message("File too large", f"Uploads are limited to {limit} MB.", 413)


def _tampered(exc: TamperError) -> Any:
    log.error("tampered record: %s", exc)
    return _message(
        "Record failed its integrity check",
        f"{exc}. The stored record was altered or the store key is wrong; it is not shown.",
        409,
    )


def _storage(exc: SkinScanError) -> Any:
    log.error("storage error: %s", exc)
    return _message("The clinic store could not do that", str(exc), 503)


def _http_error(exc: Any) -> Any:
    return _message(exc.name, exc.description, exc.code)


def register(app: Any) -> None:
    """Add the routes, hooks and error pages to ``app``."""
    from flask_wtf.csrf import CSRFError
    from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

    app.before_request(_require_login)
    app.after_request(_headers)
    rules = [
        ("/login", login, ("GET", "POST")),
        ("/logout", logout, ("POST",)),
        ("/", index, ("GET",)),
        ("/patients", patients, ("GET",)),
        ("/patients/<patient_ref>", patient, ("GET",)),
        ("/unreferenced", unreferenced, ("GET",)),
        ("/scans/<scan_id>", scan, ("GET",)),
        ("/scans/<scan_id>/photo.png", scan_photo, ("GET",)),
        ("/scans/<scan_id>/heatmap.png", scan_heatmap, ("GET",)),
        ("/scans/<scan_id>/review", review, ("POST",)),
        ("/compare", compare_scans, ("GET",)),
        ("/import", import_page, ("GET", "POST")),
        ("/import/<path:export_id>/receipt", import_receipt, ("GET",)),
        ("/upload", upload, ("GET", "POST")),
    ]
    for rule, view, methods in rules:
        app.add_url_rule(rule, view.__name__, view, methods=list(methods))
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(RequestEntityTooLarge, _too_large)
    app.register_error_handler(TamperError, _tampered)
    app.register_error_handler(StorageError, _storage)
    app.register_error_handler(HTTPException, _http_error)
