"""Shared fixtures: the real HAM10000 folder when present, and a tiny synthetic one."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import pytest

from device.labels import CLASS_CODES
from device.phantoms import make_phantom

HAM10000_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ham10000"


@pytest.fixture(scope="session")
def ham_dir() -> Path:
    """The real HAM10000 folder (../shared/data/ham10000); skips the test when absent."""
    if not (HAM10000_DIR / "HAM10000_metadata.csv").is_file():
        pytest.skip("HAM10000 not present at ../shared/data/ham10000")
    return HAM10000_DIR


def write_synthetic_ham(root: Path, per_class: int = 6, lesions_with_two_images: int = 2) -> Path:
    """Write a HAM10000-layout folder of phantom JPEGs (200x150), ``per_class`` per class.

    The first ``lesions_with_two_images`` lesions of every class have two images.
    """
    images = root / "images"
    images.mkdir(parents=True)
    rows = []
    seed = 0
    for dx in CLASS_CODES:
        for lesion in range(per_class):
            copies = 2 if lesion < lesions_with_two_images else 1
            for _ in range(copies):
                seed += 1
                image_id = f"ISIC_{seed:07d}"
                phantom = make_phantom(seed, size=(150, 200))
                cv2.imwrite(str(images / f"{image_id}.jpg"), phantom.image[..., ::-1])
                rows.append(
                    {
                        "lesion_id": f"HAM_{dx}_{lesion}",
                        "image_id": image_id,
                        "dx": dx,
                        "dx_type": "histo",
                        "age": str(30 + seed % 50),
                        "sex": "male" if seed % 2 else "female",
                        "localization": "back" if seed % 3 else "face",
                    }
                )
    with (root / "HAM10000_metadata.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture
def synthetic_ham(tmp_path: Path) -> Path:
    """A tiny HAM10000-layout dataset of phantoms."""
    return write_synthetic_ham(tmp_path / "ham")


def break_three_rows(root: Path) -> dict[str, str]:
    """Give a synthetic HAM10000 folder an unknown dx, a missing file and a corrupt JPEG.

    Each is the first row of a different class, so every class keeps images.

    Returns:
        The broken image ids under "unknown", "missing" and "corrupt".
    """
    csv_path = root / "HAM10000_metadata.csv"
    rows = list(csv.DictReader(csv_path.open()))
    firsts: dict[str, dict] = {}
    for row in rows:
        firsts.setdefault(row["dx"], row)
    unknown, missing, corrupt = list(firsts.values())[:3]
    unknown["dx"] = "xyz"
    (root / "images" / f"{missing['image_id']}.jpg").unlink()
    (root / "images" / f"{corrupt['image_id']}.jpg").write_bytes(b"\xff\xd8garbage")
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return {
        "unknown": unknown["image_id"],
        "missing": missing["image_id"],
        "corrupt": corrupt["image_id"],
    }
