"""The record type and the store interface shared by the app and the stores.

The controller only talks to :class:`ScanStore`; the SQLite store and the
in-memory store used in tests both implement it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from types import TracebackType
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np

from device.errors import SkinScanError, StorageError


@dataclass(frozen=True)
class ScanRecord:
    """One saved scan. Images are RGB uint8 arrays; they are encrypted at rest.

    Attributes:
        scan_id: UUID4 string, set by the caller.
        created_at: ISO-8601 UTC timestamp.
        device_id: stable id of the device that made the scan.
        image: the analysed photo (the ROI crop shown on screen), RGB uint8.
        heatmap: the Grad-CAM overlay or map as RGB uint8, or None.
        probabilities: class code -> calibrated probability, all classes.
        label: the chosen class code.
        risk_tier: "refer", "monitor" or "uncertain".
        p_malignant: P(mel) + P(bcc) + P(akiec).
        quality: quality metric name -> value.
        bundle_id: the model bundle's id; bundle_sha256 its model.tflite sha256.
        app_version: skinscan version that made the record.
        patient_ref: opaque reference (from a QR card); never a name. Encrypted.
        operator: optional operator id.
        body_site: optional body site, e.g. "back".
        corrects: scan_id of an earlier record this one corrects (audit trail).
        extra: text -> text notes (referral threshold, flags, when a patient was assigned).
        body_side: "left" or "right" for a paired body site, else None.
        lesion: which lesion of the site: "1".."9" or a short name (see
            :data:`LESION_NAMES`); with the patient, site and side it is the lesion's key.
        mm_per_px: the saved photo's scale, millimetres per photo pixel (from the
            camera's configured field width), or None when the device had none.
        bundle_label: how the bundle that made the scan described itself when it was
            made, e.g. "adapted for clinic-north, 2026-12-07"; None for a base bundle.
        damaged: part -> problem, for a record read back with a damaged part left out
            (only "heatmap" can be left out: a record is never read without its photo).
    """

    scan_id: str
    created_at: str
    device_id: str
    image: np.ndarray
    heatmap: np.ndarray | None
    probabilities: Mapping[str, float]
    label: str
    risk_tier: str
    p_malignant: float
    quality: Mapping[str, float]
    bundle_id: str
    bundle_sha256: str
    app_version: str
    patient_ref: str | None = None
    operator: str | None = None
    body_site: str | None = None
    corrects: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)
    body_side: str | None = None
    lesion: str | None = None
    mm_per_px: float | None = None
    bundle_label: str | None = None
    damaged: Mapping[str, str] = field(default_factory=dict)

    @property
    def lesion_key(self) -> tuple[str | None, str | None, str | None, str | None]:
        """(patient reference, body site, side, lesion): two scans show the same lesion
        only when these are equal and the patient, site and lesion are all set."""
        return (self.patient_ref, self.body_site, self.body_side, self.lesion)


BODY_SIDES = ("left", "right")
# Lesion labels within one site: a number, or one of these short names (the buttons
# choose from a list; nothing is typed on the device).
LESION_NUMBERS = tuple(str(n) for n in range(1, 10))
LESION_NAMES = ("largest", "upper", "lower", "inner", "outer", "new")
LESION_LABELS = LESION_NUMBERS + LESION_NAMES


def lesion_text(body_site: str | None, body_side: str | None, lesion: str | None) -> str:
    """A lesion as people read it: "left forearm, lesion 2", "face", or "" when no site."""
    if not body_site:
        return ""
    site = f"{body_side} {body_site}" if body_side else body_site
    return f"{site}, lesion {lesion}" if lesion else site


@runtime_checkable
class ScanStore(Protocol):
    """Append-only store of scans."""

    def save(self, record: ScanRecord) -> str:
        """Durably save ``record`` and return its scan id. Raises StorageError/DiskFullError."""
        ...

    def get(self, scan_id: str) -> ScanRecord:
        """Load one record, decrypting it. Raises KeyError or TamperError.

        The SQLite and memory stores also take ``salvage=True``: a record whose heatmap
        alone is damaged is then returned without it, named in ``record.damaged``.
        """
        ...

    def history(
        self, patient_ref: str | None = None, body_site: str | None = None, limit: int = 100
    ) -> Sequence[ScanRecord]:
        """Records newest first, optionally filtered by patient reference and body site."""
        ...

    def close(self) -> None:
        """Release the database."""
        ...


_Closable = TypeVar("_Closable", bound="ClosesOnExit")


class ClosesOnExit:
    """Context-manager support for anything with ``close()``: ``with Store(...) as s``."""

    def close(self) -> None:  # pragma: no cover - every user defines it
        raise NotImplementedError

    def __enter__(self: _Closable) -> _Closable:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class StoreReadOnlyError(StorageError):
    """The store cannot save: its data folder is read-only or unavailable.

    The app keeps scanning and shows this message instead of "saved".
    """


class InvalidRecordError(StorageError, ValueError):
    """A record cannot be saved as given (bad id, image, time or reference); nothing was written."""


class PatientRefError(SkinScanError, ValueError):
    """A patient reference is not an opaque reference (e.g. it looks like a name)."""


@dataclass(frozen=True)
class StoreNotice:
    """Something the screen should tell the user about the store at start.

    Attributes:
        kind: "corrupt_db_moved", "read_only", "key_created" or "swept".
        message: one line for the screen, in plain words.
        path: the file or folder concerned, if any.
    """

    kind: str
    message: str
    path: str | None = None


RISK_TIERS = ("refer", "monitor", "uncertain")


def correction_of(
    original: ScanRecord, *, created_at: str | None = None, **changes: object
) -> ScanRecord:
    """Make the record that corrects ``original``: a new scan id that points at the old one.

    Records are append-only, so a mistake (wrong body site, wrong patient card)
    is fixed by saving this new record; the original stays as the audit trail.

    Args:
        original: the record being corrected.
        created_at: time of the correction (default: now, UTC).
        **changes: fields to change, e.g. ``body_site="left forearm"``.

    Returns:
        A new, unsaved record with ``corrects=original.scan_id``.
    """
    for name in ("scan_id", "corrects"):
        if name in changes:
            raise TypeError(f"{name} is set by correction_of")
    when = created_at or datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    return replace(
        original,
        scan_id=str(uuid.uuid4()),
        created_at=when,
        corrects=original.scan_id,
        **changes,  # type: ignore[arg-type]
    )


class DamagedDatabaseError(StorageError):
    """The scan database is damaged, and this caller may not move it aside.

    Nothing was moved, renamed or created. ``skinscan records repair`` (or the
    device app at start-up) moves it to ``corrupt-<time>/`` and starts a new one.

    Attributes:
        path: the damaged database file.
        damage: what is wrong with it, in SQLite's words.
    """

    def __init__(self, path: str, damage: str) -> None:
        self.path = path
        self.damage = damage
        super().__init__(
            f"the scan database {path} is damaged ({damage}); nothing was changed. Run "
            "`skinscan records repair` to move it aside (nothing is deleted) and start a new one"
        )
