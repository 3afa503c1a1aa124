"""Labels of bigger archives than HAM10000: the ISIC one-hot CSV and a plain image/dx CSV.

Two layouts besides HAM10000's own are read into the same :class:`training.data.Sample`
list, so the split, cache and training code do not change:

- **ISIC one-hot** (``ISIC_2019_Training_GroundTruth.csv`` and the like): columns
  ``image,MEL,NV,BCC,AK,BKL,DF,VASC[,SCC][,UNK]``, one 1.0 per row. ``AK`` becomes
  ``akiec``; ``SCC`` and ``UNK`` are not among the seven classes the device reports, so
  their rows are skipped, each with its reason, and counted in the run's report. A
  ``*Metadata.csv`` next to it (ISIC 2019: ``image,age_approx,anatom_site_general,
  lesion_id,sex``) supplies lesion ids and subgroup fields when present.
- **Plain** (``labels.csv``, or any CSV named on the command line): ``image_id`` (or
  ``image``) and ``dx``, optionally ``lesion_id`` and/or ``patient_id``; ``dx`` is a
  HAM10000 code or an ISIC column name.

The split is grouped by ``patient_id`` when the CSV has one (every lesion of a patient
on one side), else by ``lesion_id``; with neither, images are split one by one, which
leaks near-duplicate views of a lesion across splits. That is reported as a warning.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from device.errors import DatasetError
from device.labels import CLASS_CODES

log = logging.getLogger(__name__)

# ISIC one-hot column -> HAM10000 class code; None: no device class, the row is skipped.
ISIC_COLUMNS: dict[str, str | None] = {
    "MEL": "mel",
    "NV": "nv",
    "BCC": "bcc",
    "AK": "akiec",
    "BKL": "bkl",
    "DF": "df",
    "VASC": "vasc",
    "SCC": None,
    "UNK": None,
}
PLAIN_LABELS_FILE = "labels.csv"
IMAGE_FOLDERS = ("images", "ISIC_2019_Training_Input", "ISIC_2020_Training_JPEG", "train", ".")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
IMAGE_LEVEL_WARNING = (
    "no lesion_id or patient_id column: the split is image-level, so several views of one "
    "lesion can land on both sides (train and test): a LEAK RISK that inflates test figures"
)


def find_labels_csv(data: Path) -> tuple[Path, str] | None:
    """The labels CSV of an archive folder (or the CSV itself) and its layout name.

    Returns:
        ``(csv path, "isic_onehot" | "plain")``, or None when ``data`` holds neither.

    Raises:
        DatasetError: the folder holds more than one ground-truth CSV.
    """
    if data.is_file():
        return data, _layout_of(data)
    truths = sorted(data.glob("*GroundTruth*.csv"))
    if len(truths) > 1:
        raise DatasetError(f"{data}: several ground-truth CSVs {[p.name for p in truths]}")
    if truths:
        return truths[0], _layout_of(truths[0])
    plain = data / PLAIN_LABELS_FILE
    if plain.is_file():
        return plain, _layout_of(plain)
    return None


def _layout_of(csv_path: Path) -> str:
    header = _header(csv_path)
    if {"MEL", "NV"} <= set(header):
        return "isic_onehot"
    if ({"image_id", "dx"} <= set(header)) or ({"image", "dx"} <= set(header)):
        return "plain"
    raise DatasetError(
        f"{csv_path}: neither an ISIC one-hot CSV (image,MEL,NV,...) nor a plain "
        f"image_id,dx CSV; header is {header}"
    )


def _header(csv_path: Path) -> list[str]:
    with csv_path.open(newline="") as handle:
        return [name.strip() for name in next(csv.reader(handle), [])]


def find_image(root: Path, image_id: str) -> Path | None:
    """The image file of ``image_id`` in one of the usual archive folders, or None."""
    for folder in IMAGE_FOLDERS:
        for suffix in IMAGE_SUFFIXES:
            path = root / folder / f"{image_id}{suffix}"
            if path.is_file():
                return path
    return None


def read_archive_rows(csv_path: Path, layout: str) -> tuple[list[dict[str, str]], list[tuple]]:
    """Rows of an archive CSV as ``{"image_id", "dx", "group", ...}`` dicts.

    ``group`` is the key the split groups by: ``patient:<id>``, ``lesion:<id>`` or empty.

    Returns:
        (usable rows, [(image_id, reason)] of rows without a device class).
    """
    if layout == "isic_onehot":
        rows, rejected = _onehot_rows(csv_path)
    else:
        rows, rejected = _plain_rows(csv_path)
    extra = _metadata_next_to(csv_path)
    for row in rows:
        meta = extra.get(row["image_id"], {})
        for key in ("lesion_id", "patient_id", "sex", "age", "localization"):
            row.setdefault(key, "")
            if not row[key] and meta.get(key):
                row[key] = meta[key]
        if row["patient_id"]:
            row["group"] = f"patient:{row['patient_id']}"
        elif row["lesion_id"]:
            row["group"] = f"lesion:{row['lesion_id']}"
        else:
            row["group"] = ""
    return rows, rejected


def grouping_of(rows: list[dict[str, str]]) -> str:
    """What the split is grouped by: ``patient_id``, ``lesion_id``, a mix, or ``image``."""
    kinds = {row["group"].split(":")[0] for row in rows if row["group"]}
    ungrouped = sum(not row["group"] for row in rows)
    if not kinds:
        return "image"
    name = "patient_id" if kinds == {"patient"} else "lesion_id" if kinds == {"lesion"} else "mixed"
    return f"{name} ({ungrouped} rows image-level)" if ungrouped else name


def _onehot_rows(csv_path: Path) -> tuple[list[dict[str, str]], list[tuple]]:
    rows: list[dict[str, str]] = []
    rejected: list[tuple] = []
    with csv_path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        columns = [c for c in ISIC_COLUMNS if c in (reader.fieldnames or [])]
        if "image" not in (reader.fieldnames or []):
            raise DatasetError(f"{csv_path}: no 'image' column")
        for raw in reader:
            image_id = raw["image"].strip()
            hot = [c for c in columns if _is_one(raw.get(c, ""))]
            if len(hot) != 1:
                rejected.append((image_id, f"one-hot row has {len(hot)} classes set {hot}"))
            elif ISIC_COLUMNS[hot[0]] is None:
                rejected.append((image_id, f"class {hot[0]} is not one of the 7 device classes"))
            else:
                rows.append({"image_id": image_id, "dx": str(ISIC_COLUMNS[hot[0]])})
    return rows, rejected


def _is_one(text: str) -> bool:
    try:
        return float(text) == 1.0
    except ValueError:
        return False


def _plain_rows(csv_path: Path) -> tuple[list[dict[str, str]], list[tuple]]:
    rows: list[dict[str, str]] = []
    rejected: list[tuple] = []
    by_name = {code.upper(): code for code in CLASS_CODES}
    by_name.update({k: v for k, v in ISIC_COLUMNS.items() if v})
    with csv_path.open(newline="") as handle:
        for raw in csv.DictReader(handle):
            raw = {k.strip(): (v or "").strip() for k, v in raw.items() if k}
            image_id = raw.get("image_id") or raw.get("image", "")
            dx = raw.get("dx", "")
            code = dx if dx in CLASS_CODES else by_name.get(dx.upper())
            if code is None:
                known = dx.upper() in ISIC_COLUMNS
                reason = "is not one of the 7 device classes" if known else "is unknown"
                rejected.append((image_id, f"dx {dx!r} {reason}"))
                continue
            row = {"image_id": image_id, "dx": code}
            for key in ("lesion_id", "patient_id", "sex", "age", "localization"):
                row[key] = raw.get(key, "")
            rows.append(row)
    return rows, rejected


def _metadata_next_to(csv_path: Path) -> dict[str, dict[str, str]]:
    """ISIC metadata (lesion_id, sex, age, site) by image id, when a *Metadata.csv is there."""
    candidates = sorted(csv_path.parent.glob("*Metadata*.csv"))
    if not candidates or candidates[0] == csv_path:
        return {}
    out: dict[str, dict[str, str]] = {}
    with candidates[0].open(newline="") as handle:
        for raw in csv.DictReader(handle):
            image_id = (raw.get("image") or raw.get("image_name") or "").strip()
            out[image_id] = {
                "lesion_id": (raw.get("lesion_id") or "").strip(),
                "patient_id": (raw.get("patient_id") or "").strip(),
                "sex": (raw.get("sex") or "").strip(),
                "age": (raw.get("age_approx") or raw.get("age") or "").strip(),
                "localization": (raw.get("anatom_site_general") or "").strip(),
            }
    log.info("lesion/patient ids and subgroups from %s", candidates[0])
    return out
