"""Which lesion the scans are of, and where a card read leads: part of the app's state.

A lesion is known by the patient, the body site, the side of a paired site and a
label within the site (a number or a short name, chosen with the buttons). The
body-site list asks for them in turn: site, then side (paired sites only), then
lesion. A card can be read for the live view's patient, for the result waiting
to be saved, or for a saved scan that has no patient.
"""

from __future__ import annotations

from dataclasses import dataclass

SITE_STAGES = ("site", "side", "lesion")
CARD_FOR = ("", "result", "assign")


@dataclass(frozen=True)
class LesionChoice:
    """The lesion chosen, and the body-site list's progress.

    Attributes:
        side: "left" or "right" of a paired site, else None.
        lesion: the lesion's label within the site, or None.
        stage: what the body-site list asks now: "site", "side" or "lesion".
        picked_site: the site chosen, while its side and lesion are asked.
        picked_side: the side chosen, while the lesion is asked.
        card_for: what the card being read is for: "" (the live view's patient),
            "result" (the result waiting to be saved) or "assign" (a saved scan).
        assign_scan: the saved scan that gets the patient, for "assign".
    """

    side: str | None = None
    lesion: str | None = None
    stage: str = "site"
    picked_site: str | None = None
    picked_side: str | None = None
    card_for: str = ""
    assign_scan: str | None = None
