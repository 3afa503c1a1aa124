"""The clinic app's pages for casework: worklist, confirmed diagnoses, sites, confirmed cases, CSV.

* ``/worklist``: scans the device referred or called uncertain that no clinician has
  reviewed yet, oldest first.
* ``POST /scans/<id>/confirm``: append a confirmed diagnosis to a scan.
* ``/sites``: make sites (named groups of scanners) and assign scanners to them.
* ``/confirmed``: confirmed cases per site and per scanner, what ``skinscan adapt``
  still needs, and the commands to adapt and sign a bundle.
* ``/export/reviews.csv`` and ``/export/confirmed.csv``: the CSV exports.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from clinic.confirmed_cases import (
    BASIS_LABELS,
    CONFIRMED_LABELS,
    MIN_CASES,
    MIN_CLASSES,
    MIN_MALIGNANT,
    count_cases,
)
from clinic.csv_export import confirmations_csv, reviews_csv
from clinic.schema import OTHER_DIAGNOSIS
from clinic.store import ClinicStore, EntryError
from clinic.views import _ctx, _message, _page, _user
from device.errors import SkinScanError
from device.labels import HAM10000_CLASSES
from device.records.store import RecordSummary

log = logging.getLogger(__name__)

WORKLIST_TIERS = ("refer", "uncertain")


@dataclass(frozen=True)
class WorklistItem:
    """One scan waiting for a review: its summary, scanner and site, and days waiting."""

    scan: RecordSummary
    scanner: str
    site: str | None
    days: int


def worklist(store: ClinicStore, now: datetime | None = None) -> list[WorklistItem]:
    """Scans the device referred or called uncertain that have no review, oldest first."""
    reviewed = store.reviewed_scan_ids()
    waiting = [
        s
        for s in store.scans.summaries()
        if s.risk_tier in WORKLIST_TIERS and s.scan_id not in reviewed
    ]
    if not waiting:
        return []
    scanner_of = store.scanner_of_scans()
    site_of = store.site_of_scanners()
    now = now or datetime.now(timezone.utc)
    items = []
    for s in sorted(waiting, key=lambda s: s.created_at):
        scanner = scanner_of.get(s.scan_id, "")
        items.append(WorklistItem(s, scanner, site_of.get(scanner), _days_since(s.created_at, now)))
    return items


def _days_since(when: str, now: datetime) -> int:
    try:
        then = datetime.fromisoformat(when)
    except ValueError:
        return 0
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    return max(0, (now - then).days)


def worklist_count() -> int:
    """How many scans wait on the worklist (shown in the navigation bar)."""
    store = _ctx().store
    reviewed = store.reviewed_scan_ids()
    return sum(
        1
        for s in store.scans.summaries()
        if s.risk_tier in WORKLIST_TIERS and s.scan_id not in reviewed
    )


# --------------------------------------------------------------------------- pages


def worklist_page() -> Any:
    """The worklist: referred and uncertain scans without a review, oldest first."""
    return _page("worklist.html", items=worklist(_ctx().store))


def confirm(scan_id: str) -> Any:
    """Append a confirmed diagnosis to a scan."""
    from flask import redirect, request, url_for

    diagnosis = request.form.get("diagnosis", "")
    basis = request.form.get("basis", "")
    note = request.form.get("note", "").strip()
    if diagnosis not in CONFIRMED_LABELS:
        return _message("Diagnosis not saved", "Choose the confirmed diagnosis from the list.", 400)
    if basis not in BASIS_LABELS:
        return _message(
            "Diagnosis not saved",
            "Choose what confirmed it: histopathology, dermatologist consensus or unchanged "
            "at follow-up.",
            400,
        )
    if len(note) > 2000:
        return _message("Diagnosis not saved", "The note is longer than 2000 characters.", 400)
    store = _ctx().store
    if not store.has_scan(scan_id):
        return _message("Diagnosis not saved", "There is no such scan.", 404)
    try:
        store.add_confirmation(scan_id, _user(), diagnosis, basis, note)
    except EntryError as exc:
        return _message("Diagnosis not saved", f"{exc}.", 400)
    return redirect(url_for("scan", scan_id=scan_id) + "#confirmed")


def sites_page() -> Any:
    """GET: sites and scanners. POST: make a site, or assign a scanner to a site."""
    from flask import redirect, request, url_for

    store = _ctx().store
    if request.method == "POST":
        action = request.form.get("action", "")
        try:
            if action == "create":
                store.add_site(request.form.get("name", ""), _user())
            elif action == "assign":
                device_id = request.form.get("scanner", "")
                if device_id not in store.scanners():
                    raise EntryError("there is no scanner with that id in the clinic store")
                site = request.form.get("site", "") or None
                store.assign_scanner(device_id, site, _user())
            else:
                raise EntryError("unknown action")
        except EntryError as exc:
            return _sites(400, error=f"Not saved: {exc}.")
        return redirect(url_for("sites_page"))
    return _sites(200)


def _sites(status: int, **values: Any) -> Any:
    store = _ctx().store
    scanner_of = store.scanner_of_scans()
    scans_per_scanner: dict[str, int] = {}
    for device_id in scanner_of.values():
        scans_per_scanner[device_id] = scans_per_scanner.get(device_id, 0) + 1
    return _page(
        "sites.html",
        status,
        sites=store.sites(),
        scanners=sorted(scans_per_scanner.items()),
        site_of=store.site_of_scanners(),
        **values,
    )


def confirmed_page() -> Any:
    """Confirmed cases per site and per scanner, and what adaptation still needs."""
    ctx = _ctx()
    return _page(
        "confirmed.html",
        overview=count_cases(ctx.store),
        classes=HAM10000_CLASSES,
        other=OTHER_DIAGNOSIS,
        bases=BASIS_LABELS,
        data_dir=ctx.store.data_dir.resolve(),
        min_malignant=MIN_MALIGNANT,
        min_cases=MIN_CASES,
        min_classes=MIN_CLASSES,
    )


def _csv_response(text: str, stem: str) -> Any:
    from flask import Response

    day = datetime.now(timezone.utc).strftime("%Y%m%d")
    return Response(
        text,
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="skinscan-{stem}-{day}.csv"'},
    )


def reviews_csv_download() -> Any:
    """Every review as CSV."""
    return _csv_response(reviews_csv(_ctx().store), "reviews")


def confirmed_csv_download() -> Any:
    """Every confirmed diagnosis (superseded ones marked) as CSV."""
    return _csv_response(confirmations_csv(_ctx().store), "confirmed")


def register(app: Any) -> None:
    """Add the casework pages to ``app``."""
    rules = [
        ("/worklist", worklist_page, ("GET",)),
        ("/scans/<scan_id>/confirm", confirm, ("POST",)),
        ("/sites", sites_page, ("GET", "POST")),
        ("/confirmed", confirmed_page, ("GET",)),
        ("/export/reviews.csv", reviews_csv_download, ("GET",)),
        ("/export/confirmed.csv", confirmed_csv_download, ("GET",)),
    ]
    for rule, view, methods in rules:
        app.add_url_rule(rule, view.__name__, view, methods=list(methods))

    @app.context_processor
    def _navigation() -> dict[str, Any]:
        from flask import request, session

        if not session.get("user") or request.endpoint in ("login", "static"):
            return {}
        try:
            return {"worklist_waiting": worklist_count()}
        except SkinScanError as exc:  # an error page must still render (without the count)
            log.error("worklist count unavailable: %s", exc)
            return {}
