"""Confirmed cases: what adaptation learns from, and the labelled-folder loader.

A :class:`Case` is one lesion image with its confirmed diagnosis. Two sources fill them:

* ``--metadata CSV --images DIR``: a folder in ``skinscan eval``'s layout (columns
  ``image_id,dx``, optional ``basis`` and ``date``; images found by eval's own lookup,
  :func:`device.evaluation.runner.read_labelled_csv`), read by :func:`load_csv_cases`;
* ``--data-dir DIR --site NAME``: the clinic's confirmed diagnoses, read by
  ``clinic.confirmed_cases.load_site_cases`` (imported lazily by the CLI).
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from device.errors import DatasetError
from device.evaluation.runner import read_labelled_csv
from device.labels import CLASS_CODES

log = logging.getLogger(__name__)

Basis = Literal["histopathology", "consensus", "follow-up", "unknown"]
BASES: tuple[str, ...] = ("histopathology", "consensus", "follow-up", "unknown")
# Spellings seen in archives' metadata (HAM10000's dx_type) mapped to the clinic's bases.
_BASIS_ALIASES = {
    "histo": "histopathology",
    "histopathology": "histopathology",
    "consensus": "consensus",
    "follow_up": "follow-up",
    "follow-up": "follow-up",
    "followup": "follow-up",
    "confocal": "consensus",
}
OTHER_CODES = frozenset({"", "other", "unknown"})


@dataclass(frozen=True)
class Case:
    """One confirmed case.

    Attributes:
        case_id: unique id (the image id for a labelled folder).
        dx: the confirmed class code (one of :data:`device.labels.CLASS_CODES`), or
            None for "other / unknown" (kept in the counts, not used to fit the head).
        image: the image file, or its encoded bytes (JPEG/PNG).
        basis: how the diagnosis was confirmed.
        confirmed_at: ISO date of the confirmation, when known.
        scanner_id: the scanner that took the image, when known.
        passed_gate: the scanner's quality gate already passed this image at capture
            (the clinic's stored photo of a scan). The gate is not run again: the
            stored photo is the analysed square, smaller than the still the gate judged,
            so a second gate would refuse sharp scans as blurred.
    """

    case_id: str
    dx: str | None
    image: Path | bytes
    basis: Basis = "unknown"
    confirmed_at: str | None = None
    scanner_id: str | None = None
    passed_gate: bool = False

    @property
    def label(self) -> int | None:
        """Index of ``dx`` in the model's class order, or None for other/unknown."""
        return None if self.dx is None else CLASS_CODES.index(self.dx)


def normalise_basis(value: str) -> Basis:
    """A basis from free text (``histo``, ``follow_up``...); "unknown" when not recognised."""
    return _BASIS_ALIASES.get(value.strip().lower(), "unknown")  # type: ignore[return-value]


def _optional_columns(csv_path: Path) -> dict[str, dict[str, str]]:
    """image_id -> the optional ``basis`` (or ``dx_type``), ``date`` and ``scanner_id``."""
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    out: dict[str, dict[str, str]] = {}
    for row in rows:
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        out.setdefault(
            row.get("image_id", ""),
            {
                "basis": row.get("basis") or row.get("dx_type", ""),
                "date": row.get("date", ""),
                "scanner_id": row.get("scanner_id", ""),
                "dx": row.get("dx", ""),
            },
        )
    return out


def load_csv_cases(
    csv_path: str | Path, images_dir: str | Path
) -> tuple[list[Case], list[tuple[str, str]]]:
    """Read the cases of a labelled folder (``skinscan eval``'s layout).

    Rows whose ``dx`` is empty, "other" or "unknown" become cases with ``dx=None``;
    rows with another code that is not one of the 7 classes, empty or repeated ids are
    returned as skipped with a reason.

    Args:
        csv_path: CSV with ``image_id`` and ``dx``; optional ``basis`` (or HAM10000's
            ``dx_type``), ``date`` and ``scanner_id``.
        images_dir: folder holding ``<image_id>.jpg``.

    Returns:
        (cases, skipped rows as (image_id, reason)).

    Raises:
        DatasetError: the CSV or folder is missing or the CSV lacks a required column.
    """
    csv_path, images_dir = Path(csv_path), Path(images_dir)
    items, skipped_rows = read_labelled_csv(csv_path, images_dir)
    try:
        extra = _optional_columns(csv_path)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{csv_path}: cannot be read ({exc})") from exc

    def case(image_id: str, dx: str | None, path: Path) -> Case:
        info = extra.get(image_id, {})
        return Case(
            case_id=image_id,
            dx=dx,
            image=path,
            basis=normalise_basis(info.get("basis", "")),
            confirmed_at=info.get("date") or None,
            scanner_id=info.get("scanner_id") or None,
        )

    cases = [case(item.image_id, CLASS_CODES[item.label], Path(item.path)) for item in items]
    skipped: list[tuple[str, str]] = []
    for row in skipped_rows:
        image_id = row["image_id"]
        dx = extra.get(image_id, {}).get("dx", "")
        if row["reason"].startswith("unknown dx") and dx.lower() in OTHER_CODES:
            cases.append(case(image_id, None, images_dir / f"{image_id}.jpg"))
        else:
            skipped.append((image_id, row["reason"]))
    if skipped:
        counts = Counter(reason for _, reason in skipped)
        log.info("%s: %d rows skipped (%s)", csv_path, len(skipped), dict(counts))
    return cases, skipped
