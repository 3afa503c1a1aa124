"""The menu's screens with real wording, at every supported size: each line inside its box,
nothing cut or left out, file names whole, and the last word (what next, may the stick be
removed) always shown."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

from device.app.controller import initial_state, step, view
from device.app.events import Button, Frame, UsbChecked, UsbDone, UsbProgress
from device.app.menu_state import UsbOutcome
from device.hw.buttons import BUTTON_EVENTS, button_labels
from device.ui.render import MIN_FONT_PX, Renderer

SIZES = [(480, 320), (800, 480), (720, 1280)]
FILE = "skinscan-20261207T121616-a0601a74-p001.sealed"
ARCHIVE = "skinscan-archive-20261207T130000-1b2c3d4e-p001.sealed"
OUTCOMES = {
    "export": UsbOutcome(
        "export", True, "Exported 120 scans",
        ("Sealed for the clinic on the stick KINGSTON.",
         "2 scans could not be read and stayed on the scanner (tell your supervisor)."),
        (FILE, FILE.replace("p001", "p002")),
        "Take the stick to the clinic; bring back its receipt to free space.", True, "KINGSTON",
    ),
    "busy-stick": UsbOutcome(
        "export", True, "Exported 3 scans",
        ("Sealed for the clinic on the stick KINGSTON.",
         "Do NOT remove the stick yet: the USB stick KINGSTON could not be unmounted: Error "
         "unmounting /dev/sda1: target is busy. Power the scanner off first."),
        (FILE,), "Take the stick to the clinic; bring back its receipt to free space.", False,
    ),
    "free-space": UsbOutcome(
        "free-space", True, "Freed the space of 118 scans",
        ("118 scans the clinic confirmed were moved onto the stick, checked, and removed "
         "from the scanner.", "4 scans the clinic has not confirmed yet stay on the scanner.",
         "1 receipt from the clinic recorded."),
        (ARCHIVE,), "Give the stick to the clinic to keep: its archive file is a sealed copy.",
        True,
    ),
    "model-refused": UsbOutcome(
        "update-model", False, "Model refused: the signature does not match",
        ("From the stick: north-v6 (ham10000-isic-v6k-int8-95dad40e-north · adapted for "
         "clinic-north, 2026-12-07 · signed)", "Signature does not match: manifest.json was "
         "changed after it was signed", "The running model is kept: "
         "ham10000-isic-v6k-int8-95dad40e."),
        (), "The bundle was changed or damaged after signing. Copy it onto the stick again.",
        True,
    ),
    "export-in-parts": UsbOutcome(
        "export", True, "Exported 500 scans", ("Sealed for the clinic on the stick KINGSTON.",),
        tuple(FILE.replace("p001", f"p{i:03d}") for i in range(1, 17)),
        "Take the stick to the clinic; bring back its receipt to free space.", True,
    ),
    "no-stick": UsbOutcome("export", False, "No USB stick found", (), (),
                           "Plug a USB stick into the scanner, then choose it from the menu."),
}  # fmt: skip


def screens() -> dict[str, object]:
    live, _ = step(initial_state(), Frame(np.zeros((48, 64, 3), np.uint8), None, True, None, 30))
    menu, _ = step(live, Button("menu"))
    found, _ = step(menu, UsbChecked(("KINGSTON",)))
    out = {"menu": view(found), "menu-none": view(step(menu, UsbChecked(()))[0])}
    busy, _ = step(found, Button("capture"))
    out["busy"] = view(step(busy, UsbProgress("Exporting scan 37 of 120…", 36, 120))[0])
    for name, outcome in OUTCOMES.items():
        out[name] = view(step(busy, UsbDone(outcome))[0])
    return out


SCREENS = screens()


class Recorder(Renderer):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.text_log = []
        self.cut_log = []


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", list(SCREENS))
def test_menu_screens_fit_whole_at_every_size(size, name):
    screen = SCREENS[name]
    renderer = Recorder(size, button_labels(BUTTON_EVENTS))
    renderer.render(screen)
    whole = renderer.pygame.Rect(0, 0, *size)
    for drawn in renderer.text_log:
        assert whole.contains(drawn.rect) and drawn.box.contains(drawn.rect), drawn
        assert drawn.font_px >= MIN_FONT_PX, drawn
    assert not renderer.cut_log, renderer.cut_log
    text = " ".join(d.text for d in renderer.text_log)
    flat = text.replace(" ", "")
    if screen.kind == "usb_done":
        for line in (screen.title, *screen.lines, f"Next: {screen.next_step}"):
            assert " ".join(line.split()) in text, (size, line)
        for name_ in screen.files:
            assert name_ in flat, (size, name_)  # a file name may wrap, never lose a letter
        assert ("You may remove the stick." in text) == screen.removable
    if screen.kind == "menu":
        for item in screen.items:
            assert item in text
        assert screen.stick in text and screen.help in text
    if screen.kind == "usb_busy":
        assert "Do not remove the USB stick." in text and "36 of 120" in text
