"""Confirmed cases: how many each scanner and site has, and loading a site's for ``skinscan adapt``.

A *confirmed case* is a stored scan with a confirmed diagnosis (the newest
confirmation of the scan; earlier ones are superseded). Cases are grouped by the
scanner that made them (the record's device id) and by site (a named group of
scanners). :func:`count_cases` gives the "Confirmed cases" page its table and
what adaptation still needs; :func:`load_site_cases` hands a site's cases, with
their decrypted photos, to ``skinscan adapt --data-dir DIR --site NAME``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clinic.adaptation.rules import MIN_CASES, MIN_MALIGNANT
from clinic.schema import BASES, OTHER_DIAGNOSIS
from clinic.store import CLINIC_DB, SCANS_DIR, ClinicStore, Confirmation
from device.errors import DatasetError, StorageError
from device.labels import CLASS_CODES, HAM10000_CLASSES, MALIGNANT_CODES
from device.records.paths import DB_NAME

# What `skinscan adapt` refuses below (clinic.adaptation.rules.check_cases): at least
# MIN_CASES usable cases, MIN_MALIGNANT of them malignant, more than one class, and
# benign cases besides the malignant ones.
MIN_CLASSES = 2
BASIS_LABELS = {
    "histopathology": "Histopathology",
    "consensus": "Dermatologist consensus",
    "follow-up": "Unchanged at follow-up",
}
CONFIRMED_LABELS = {d.code: f"{d.name} ({d.code})" for d in HAM10000_CLASSES} | {
    OTHER_DIAGNOSIS: "Other / unknown"
}


@dataclass(frozen=True)
class CaseCounts:
    """The confirmed cases of one scanner or site.

    Attributes:
        name: the scanner's device id or the site's name.
        per_class: class code (and "other") -> cases.
        per_basis: basis -> cases (every diagnosis, "other" included).
        first: ISO-8601 time of the earliest confirmation counted, or None.
        last: ISO-8601 time of the latest, or None.
    """

    name: str
    per_class: Mapping[str, int] = field(default_factory=dict)
    per_basis: Mapping[str, int] = field(default_factory=dict)
    first: str | None = None
    last: str | None = None

    @property
    def usable(self) -> int:
        """Cases with one of the model's classes (what adaptation can fit on)."""
        return sum(self.per_class.get(code, 0) for code in CLASS_CODES)

    @property
    def malignant(self) -> int:
        """Usable cases of a malignant class (akiec, bcc, mel)."""
        return sum(self.per_class.get(code, 0) for code in MALIGNANT_CODES)

    @property
    def other(self) -> int:
        """Cases confirmed as other / unknown (kept, never fitted)."""
        return self.per_class.get(OTHER_DIAGNOSIS, 0)

    @property
    def classes(self) -> int:
        """How many of the model's classes have at least one case."""
        return sum(1 for code in CLASS_CODES if self.per_class.get(code, 0) > 0)

    def needs(self) -> list[str]:
        """What adaptation still needs, in words; empty when it has enough cases to try."""
        out = []
        if self.malignant < MIN_MALIGNANT:
            missing = MIN_MALIGNANT - self.malignant
            out.append(f"needs {missing} more malignant case{_s(missing)} (akiec, bcc or mel)")
        if self.usable < MIN_CASES:
            missing = MIN_CASES - self.usable
            out.append(f"needs {missing} more case{_s(missing)} in all")
        if self.classes < MIN_CLASSES:
            out.append("needs cases of more than one class")
        elif self.usable and self.malignant == self.usable:
            out.append("needs benign cases too (bkl, df, nv or vasc)")
        return out

    @property
    def ready(self) -> bool:
        """Whether there are enough cases for ``skinscan adapt`` to try (it may still refuse)."""
        return not self.needs()


@dataclass(frozen=True)
class CaseOverview:
    """Confirmed cases per scanner and per site.

    Attributes:
        scanners: one :class:`CaseCounts` per scanner that made a stored scan.
        sites: one per site (its scanners' cases together).
        site_of: each assigned scanner's site.
        total: every confirmed scan, all scanners together.
    """

    scanners: list[CaseCounts]
    sites: list[CaseCounts]
    site_of: Mapping[str, str]
    total: CaseCounts


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def tally(name: str, confirmations: Iterable[Confirmation]) -> CaseCounts:
    """Count current confirmations by class and by basis."""
    per_class = dict.fromkeys((*CLASS_CODES, OTHER_DIAGNOSIS), 0)
    per_basis = dict.fromkeys(BASES, 0)
    times = []
    for c in confirmations:
        per_class[c.diagnosis] = per_class.get(c.diagnosis, 0) + 1
        per_basis[c.basis] = per_basis.get(c.basis, 0) + 1
        times.append(c.confirmed_at)
    return CaseCounts(
        name, per_class, per_basis, min(times, default=None), max(times, default=None)
    )


def count_cases(store: ClinicStore) -> CaseOverview:
    """Every scanner's and site's confirmed cases (current confirmations only)."""
    current = store.current_confirmations()
    scanner_of = store.scanner_of_scans()
    site_of = store.site_of_scanners()
    by_scanner: dict[str, list[Confirmation]] = {d: [] for d in set(scanner_of.values())}
    for scan_id, confirmation in current.items():
        scanner = scanner_of.get(scan_id)
        if scanner is not None:
            by_scanner[scanner].append(confirmation)
    sites = []
    for site in store.sites():
        members = [c for d in site.scanners for c in by_scanner.get(d, [])]
        sites.append(tally(site.name, members))
    return CaseOverview(
        scanners=[tally(d, by_scanner[d]) for d in sorted(by_scanner)],
        sites=sites,
        site_of=site_of,
        total=tally("all scanners", current.values()),
    )


def _open_existing(data_dir: Path) -> ClinicStore:
    """The clinic store in ``data_dir``; never makes a new (empty) one."""
    if not (data_dir / CLINIC_DB).is_file() or not (data_dir / SCANS_DIR / DB_NAME).is_file():
        raise StorageError(
            f"{data_dir} is not a clinic data folder (no {CLINIC_DB} and {SCANS_DIR}/{DB_NAME}); "
            "give the folder `skinscan serve --data-dir` uses"
        )
    return ClinicStore(data_dir, clear_tmp=False)


def _png(image: np.ndarray) -> bytes:
    """A stored photo (RGB uint8) as lossless PNG bytes, as ``Case.image`` takes them."""
    import cv2

    pixels = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    # Fast, light compression: the bytes are decoded again at once, never kept.
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(pixels), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise StorageError("a stored photo could not be encoded as PNG")
    return buf.tobytes()


def load_site_cases(data_dir: Path, site: str, clinic_key: Path | None = None) -> list[Any]:
    """Every confirmed case of ``site`` from the clinic's data folder, oldest confirmation first.

    Only each scan's current (newest) confirmation counts. Cases confirmed as
    other / unknown are returned with ``dx=None``, for ``adapt`` to list and leave
    out of the fit. The photos are the stored scans' photos, decrypted with the
    store's own key (``DATA_DIR/store.key``) and handed over as PNG bytes.

    Args:
        data_dir: the clinic data folder (``skinscan serve --data-dir``).
        site: the site's name (the "Sites" page).
        clinic_key: not needed to read the store (its photos are sealed with
            ``store.key``, not the export key); accepted so that callers may pass it.

    Returns:
        :class:`clinic.adaptation.cases.Case` objects.

    Raises:
        StorageError: ``data_dir`` is not a clinic data folder, or cannot be read.
        DatasetError: no such site, or it has no scanners.
        TamperError: a stored photo or note was altered.
    """
    from clinic.adaptation.cases import Case

    del clinic_key  # documented above: the store key lives in data_dir
    with _open_existing(Path(data_dir)) as store:
        found = store.site(site)
        if found is None:
            known = ", ".join(s.name for s in store.sites()) or "none yet"
            raise DatasetError(
                f"there is no site {site!r} in {data_dir} (sites: {known}); make it on the "
                "clinic app's Sites page"
            )
        if not found.scanners:
            raise DatasetError(
                f"the site {site!r} has no scanners; assign them on the clinic app's Sites page"
            )
        members = set(found.scanners)
        scanner_of = store.scanner_of_scans()
        current = sorted(store.current_confirmations().values(), key=lambda c: c.seq)
        cases = []
        for confirmation in current:
            scanner = scanner_of.get(confirmation.scan_id)
            if scanner not in members:
                continue
            record = store.get_scan(confirmation.scan_id)
            cases.append(
                Case(
                    case_id=confirmation.scan_id,
                    dx=None
                    if confirmation.diagnosis == OTHER_DIAGNOSIS
                    else confirmation.diagnosis,
                    image=_png(record.image),
                    basis=confirmation.basis,
                    confirmed_at=confirmation.confirmed_at,
                    scanner_id=scanner,
                    passed_gate=True,
                )
            )
        return cases
