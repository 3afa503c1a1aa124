"""The seven HAM10000 diagnostic classes, in the model's output order."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Diagnosis:
    """One class: its HAM10000 code, a name a health worker understands, malignancy."""

    code: str
    name: str
    malignant: bool


# Alphabetical by code, the order used by the ISIC 2018 Task 3 ground truth.
HAM10000_CLASSES: tuple[Diagnosis, ...] = (
    Diagnosis("akiec", "Actinic keratosis / intraepithelial carcinoma", True),
    Diagnosis("bcc", "Basal cell carcinoma", True),
    Diagnosis("bkl", "Benign keratosis", False),
    Diagnosis("df", "Dermatofibroma", False),
    Diagnosis("mel", "Melanoma", True),
    Diagnosis("nv", "Melanocytic nevus (mole)", False),
    Diagnosis("vasc", "Vascular lesion", False),
)

CLASS_CODES: tuple[str, ...] = tuple(d.code for d in HAM10000_CLASSES)
MALIGNANT_CODES: frozenset[str] = frozenset(d.code for d in HAM10000_CLASSES if d.malignant)


def class_index(code: str) -> int:
    """Return the output index of a HAM10000 class code; raises KeyError if unknown."""
    try:
        return CLASS_CODES.index(code)
    except ValueError:
        raise KeyError(f"unknown diagnosis code {code!r}; expected one of {CLASS_CODES}") from None
