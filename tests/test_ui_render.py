"""The renderer: every screen at 480x320, 800x480 and other sizes, with no clipped,
overlapping or tiny text, and a heatmap toggle that changes only the photo."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest
from app_fakes import sample_result

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

from device.app.controller import ERROR_TEXT, FREE_SPACE_STEPS, NOTICE_TEXT, _result_screen
from device.app.patient import BODY_SITES
from device.hw.buttons import button_labels
from device.hw.buttons_keys import KeyButtons
from device.phantoms import make_phantom
from device.ui.render import MIN_FONT_PX, TIER_COLOURS, Renderer, surface_to_array
from device.ui.screens import (
    UNUSUAL_LIGHT_NOTES,
    AnalyzingScreen,
    CardScreen,
    CompareScreen,
    CompareSide,
    ErrorScreen,
    Hint,
    HistoryScreen,
    PreviewScreen,
    RankedName,
    RetakeScreen,
    ShutdownScreen,
    SiteScreen,
)

SIZES = [(480, 320), (800, 480), (1024, 600), (320, 240), (1920, 1080)]
LONG_NAME = "Actinic keratosis / intraepithelial carcinoma"
REF = "SKS-000142-7F3Q"
PATIENT = f"Patient {REF} · upper arm"
# A long path with a long folder name, as a test's tmp folder or a deep mount gives.
OLD_DB = "/media/sdcard/var/lib/skinscan-field-device-0042/corrupt-20260301T101500Z-2/scans.db"


class RecordingRenderer(Renderer):
    """A renderer that remembers where each line of text went and at what size."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lines: list[tuple[str, object, int]] = []

    def draw_text(self, surface, text, font, colour, pos, anchor="topleft"):
        rect = super().draw_text(surface, text, font, colour, pos, anchor)
        self.lines.append((text, rect.copy(), font.get_height()))
        return rect


def hints(*pairs):
    return tuple(Hint(b, a) for b, a in pairs)


def result_screen(tier="refer", show=True, p_malignant=0.55, unfamiliar=False, unusual_light=False):
    view = sample_result(p_malignant=p_malignant, tier=tier)
    view = type(view)(
        **{
            **view.__dict__,
            "image": make_phantom(2).image[100:380, 180:460],
            "unfamiliar": unfamiliar,
            "unusual_light": unusual_light,
        }
    )
    overlay = view.image.copy()
    overlay[60:200, 60:200] = (250, 220, 30)
    view = type(view)(
        **{
            **view.__dict__,
            "overlay": overlay,
            "top3": (
                RankedName(LONG_NAME, "akiec", 0.46, True),
                RankedName("Melanocytic nevus (mole)", "nv", 0.31),
                RankedName("Benign keratosis", "bkl", 0.12),
            ),
        }
    )
    return _result_screen(
        view,
        show,
        "Result",
        hints(("capture", "New"), ("toggle", "Heatmap"), ("save", "Save"), ("next", "History")),
    )


def all_screens():
    frame = make_phantom(1).image
    return {
        "preview": PreviewScreen(
            frame, (200, 120, 440, 360), True, None, 29.5, "simulated camera",
            hints=hints(("capture", "Scan"), ("next", "History"), ("shutdown", "Power off")),
        ),
        "preview-bad": PreviewScreen(
            frame, None, False, "too bright — glare, press the lens flat", 12.0,
            hints=hints(("capture", "Scan"), ("next", "History"), ("shutdown", "Power off")),
        ),
        "analyzing": AnalyzingScreen(frame),
        "result-refer": result_screen("refer"),
        "result-uncertain": result_screen("uncertain", False, 0.1),
        "result-monitor": result_screen("monitor", True, 0.02),
        "result-unfamiliar": result_screen("uncertain", True, 0.08, unfamiliar=True),
        "result-colour-corrected": result_screen("monitor", True, 0.04, unusual_light=True),
        "retake": RetakeScreen(
            frame,
            ("blurred — hold still", "too dark — check the LED ring"),
            hints=hints(("capture", "Try again")),
        ),
        "error-bundle": ErrorScreen(
            "bundle",
            "Model bundle invalid",
            "/opt/skinscan/models/default/model.tflite: sha256 mismatch "
            "(expected 3fa2c9e0b1d4a7f6e5c3b2a1908f7e6d, got 91c0ffee00000000000000000000)",
            "Scans cannot be analysed. Reinstall the model bundle (see docs/deployment.md), then "
            "press Capture to try again.",
            hints=hints(("capture", "Retry"), ("next", "History"), ("shutdown", "Power off")),
        ),
        "error-camera": ErrorScreen(
            "camera", "Camera not found", "camera disconnected", "Check the cable.", True,
            hints=hints(("shutdown", "Power off")),
        ),
        "history": HistoryScreen(
            1, 5, result_screen(), "2025-03-01 14:02",
            hints=hints(("next", "Older"), ("toggle", "Heatmap"), ("back", "Live view")),
        ),
        "history-empty": HistoryScreen(0, 0, None, hints=hints(("back", "Back"))),
        "shutdown": ShutdownScreen(hints=hints(("capture", "Power off"), ("back", "Cancel"))),
        "shutdown-done": ShutdownScreen(confirmed=True),
        # The patient card, body site and follow-up (issue 22), with the patient line.
        "starting": AnalyzingScreen(
            None, "Starting camera…", hints=hints(("capture", "Scan")), title="Starting"
        ),
        "preview-patient": PreviewScreen(
            frame, (200, 120, 440, 360), True, None, 29.5, message="Patient card read",
            warning="unreadable image file notes-from-the-visit.jpg: not a decodable image; "
            "skipped · unreadable image file b.png: empty file; skipped",
            hints=hints(
                ("capture", "Scan"), ("toggle", "Site"), ("next", "History"),
                ("patient", "Patient"), ("shutdown", "Power off"),
            ),
            patient=PATIENT,
        ),
        "card": CardScreen(frame, hints=hints(("capture", "Read card"), ("back", "Cancel"))),
        "card-refused": CardScreen(
            frame,
            "This looks like a name, not a card reference (four or more letters in a row).",
            REF,
            hints=hints(("capture", "Read card"), ("toggle", "Next patient"), ("back", "Cancel")),
            patient=PATIENT,
        ),
        "reading-card": AnalyzingScreen(frame, "Reading card…", title="Patient card"),
        "site": SiteScreen(
            BODY_SITES, 6, "upper arm",
            hints=hints(
                ("capture", "Choose"), ("next", "Down"), ("toggle", "Up"), ("back", "Cancel")
            ),
            patient=PATIENT,
        ),
        "history-patient": HistoryScreen(
            0, 4, result_screen(), "2026-04-10 09:00 UTC",
            hints=hints(
                ("next", "Older"), ("toggle", "Heatmap"), ("capture", "Compare"),
                ("save", "All"), ("back", "Live view"),
            ),
            scope=f"Patient {REF}", subject="upper arm", earlier=2, patient=PATIENT,
        ),
        "compare": CompareScreen(
            CompareSide(frame[100:380, 180:460], None, "2026-03-01 09:00 UTC", "monitor", 0.12,
                        "Melanocytic nevus (mole)"),
            CompareSide(frame[100:380, 180:460], None, "2026-04-10 09:00 UTC", "refer", 0.3,
                        LONG_NAME),
            True, "upper arm", "40 days later · P(malignant) 12% → 30%", "1 of 2",
            hints=hints(("next", "Earlier"), ("toggle", "Heatmap"), ("back", "History")),
            patient=PATIENT,
        ),
        # Issue 22 section 2 on the screen: a damaged record, a moved database, a full disk.
        "history-damaged": HistoryScreen(
            0, 3, result_screen(), "2026-04-10 09:00 UTC", unreadable=1,
            hints=hints(("next", "Older"), ("toggle", "Heatmap"), ("back", "Live view")),
            patient=PATIENT,
        ),
        "history-all-damaged": HistoryScreen(
            0, 0, None, unreadable=2, hints=hints(("back", "Back"))
        ),
        "notice-corrupt-db": ErrorScreen(
            "notice", NOTICE_TEXT["corrupt_db_moved"][0],
            "Damage found: database disk image is malformed.",
            NOTICE_TEXT["corrupt_db_moved"][1] + " Press Capture when you have read this.",
            hints=hints(("capture", "Continue"), ("shutdown", "Power off")),
            path=OLD_DB, path_label=NOTICE_TEXT["corrupt_db_moved"][2], cause="corrupt_db_moved",
        ),
        "error-disk-full": ErrorScreen(
            "disk_full", ERROR_TEXT["disk_full"][0],
            "0.9 MiB free; 16.0 MiB is kept in reserve so that saved scans can always be "
            "opened, checked and exported.",
            ERROR_TEXT["disk_full"][1], steps=FREE_SPACE_STEPS,
            hints=hints(("back", "Back to result"), ("shutdown", "Power off")), patient=PATIENT,
        ),
        "notice-storage-full": ErrorScreen(
            "notice", NOTICE_TEXT["storage_full"][0],
            "0.9 MiB free; 16.0 MiB is kept in reserve so that saved scans can always be "
            "opened, checked and exported.",
            NOTICE_TEXT["storage_full"][1], steps=FREE_SPACE_STEPS,
            hints=hints(("capture", "Continue"), ("shutdown", "Power off")), cause="storage_full",
        ),
        "retake-tiny": RetakeScreen(
            np.full((15, 20, 3), 150, np.uint8),
            ("unusable photo — frame: 20x15 is too small (minimum 16x16)",),
            hints=hints(("capture", "Try again")), patient=PATIENT,
        ),
    }  # fmt: skip


GPIO_LABELS = button_labels(["capture", "toggle", "next", "save", "back", "power"])


@pytest.mark.parametrize("labels", ["keys", "gpio"])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", list(all_screens()))
def test_text_is_inside_the_screen_legible_and_not_overlapping(size, name, labels):
    renderer = RecordingRenderer(size, KeyButtons.labels if labels == "keys" else GPIO_LABELS)
    surface = renderer.render(all_screens()[name])
    assert surface.get_size() == size
    bounds = surface.get_rect()
    assert renderer.lines, "nothing was written"
    for text, rect, height in renderer.lines:
        assert bounds.contains(rect), f"{text!r} at {rect} leaves the {size} screen"
        assert height >= MIN_FONT_PX, f"{text!r} is {height}px high"
    for i, (text_a, rect_a, _) in enumerate(renderer.lines):
        for text_b, rect_b, _ in renderer.lines[i + 1 :]:
            overlap = rect_a.clip(rect_b)
            assert overlap.width * overlap.height <= 4, f"{text_a!r} overlaps {text_b!r}"


@pytest.mark.parametrize("size", [(480, 320), (800, 480)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_result_shows_everything_a_health_worker_needs(size):
    renderer = RecordingRenderer(size, KeyButtons.labels)
    renderer.render(result_screen("refer"))
    text = " ".join(line for line, _, _ in renderer.lines)
    for needed in (
        "Refer to a clinician",
        "Screening aid — not a diagnosis",
        "P(malignant)",
        "55%",
        "46%",
        "Melanocytic nevus (mole)",
        "low",
        "high",
        "Space: New",
        "H: Heatmap",
    ):
        assert needed in text, needed
    # The long name is wrapped whole, not cut off.
    assert "carcinoma" in text and "Actinic" in text


@pytest.mark.parametrize("size", [(480, 320), (800, 480)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_unfamiliar_frame_says_uncertain_refer(size):
    renderer = RecordingRenderer(size, KeyButtons.labels)
    renderer.render(result_screen("uncertain", True, 0.08, unfamiliar=True))
    text = " ".join(line for line, _, _ in renderer.lines)
    assert "Uncertain — refer (unfamiliar image)" in text
    assert "Monitor" not in text
    # A referral stays a referral, whatever the familiarity check says.
    renderer.lines.clear()
    renderer.render(result_screen("refer", True, 0.55, unfamiliar=True))
    assert "Refer to a clinician" in " ".join(line for line, _, _ in renderer.lines)


@pytest.mark.parametrize(
    "size", [(320, 240), (480, 320), (800, 480)], ids=lambda s: f"{s[0]}x{s[1]}"
)
def test_corrected_colours_are_noted_without_hiding_the_saved_status(size):
    renderer = RecordingRenderer(size, KeyButtons.labels)
    renderer.render(result_screen("monitor", True, 0.04))
    plain = [line for line, _, _ in renderer.lines]
    renderer.lines.clear()
    renderer.render(result_screen("monitor", True, 0.04, unusual_light=True))
    noted = [line for line, _, _ in renderer.lines]
    assert any(line in UNUSUAL_LIGHT_NOTES for line in noted)
    assert not any(line in UNUSUAL_LIGHT_NOTES for line in plain)
    assert "Not saved yet" in noted  # the note never pushes the save status away
    height = size[1]
    assert all(rect.bottom <= height for _, rect, _ in renderer.lines)


def test_heatmap_toggle_changes_only_the_photo():
    renderer = Renderer((480, 320), KeyButtons.labels)
    on = surface_to_array(renderer.render(result_screen(show=True)))
    off = surface_to_array(renderer.render(result_screen(show=False)))
    changed = np.any(on != off, axis=2)
    assert changed.sum() > 1000
    _ys, xs = np.nonzero(changed)
    assert xs.max() < 260  # the photo and its legend are on the left half


@pytest.mark.parametrize("tier", ["refer", "monitor", "uncertain"])
def test_risk_banner_uses_the_tier_colour(tier):
    image = surface_to_array(Renderer((800, 480)).render(result_screen(tier)))
    colour = np.array(TIER_COLOURS[tier][0])
    panel = image[40:110, 400:790].astype(int)
    assert (np.abs(panel - colour).sum(axis=2) < 20).mean() > 0.3


def test_preview_quality_light_is_green_or_red():
    screens = all_screens()
    renderer = Renderer((480, 320))
    good = surface_to_array(renderer.render(screens["preview"]))
    bad = surface_to_array(renderer.render(screens["preview-bad"]))

    # The light sits at the bottom left of the live image.
    def light(image):
        patch = image[260:300, 60:110].reshape(-1, 3).astype(int)
        return patch[np.argmax(np.abs(patch[:, 0] - patch[:, 1]))]

    assert light(good)[1] > light(good)[0]  # green
    assert light(bad)[0] > light(bad)[1]  # red


def test_lesion_box_is_drawn_where_the_lesion_is():
    screen = all_screens()["preview"]  # 640x480 frame, lesion box (200, 120, 440, 360)
    renderer = Renderer((800, 480))
    image = surface_to_array(renderer.render(screen))
    frame = renderer.fit_image(screen.frame, renderer.content_rect())
    scale = frame.width / 640
    cyan = np.all(np.abs(image.astype(int) - (0, 220, 255)) < 40, axis=2)
    ys, xs = np.nonzero(cyan)
    assert abs(xs.min() - (frame.left + 200 * scale)) <= 3
    assert abs(xs.max() - (frame.left + 440 * scale)) <= 3
    assert abs(ys.min() - (frame.top + 120 * scale)) <= 3
    assert abs(ys.max() - (frame.top + 360 * scale)) <= 3


def test_wrap_never_exceeds_the_width():
    renderer = Renderer((480, 320))
    font = renderer.font(13)
    for width in (80, 150, 230):
        for line in renderer.wrap(LONG_NAME + " " + LONG_NAME, font, width):
            assert font.size(line)[0] <= width or " " not in line


def test_hints_use_the_backend_labels():
    renderer = RecordingRenderer((480, 320), {"capture": "CAPTURE", "shutdown": "Hold POWER"})
    renderer.render(all_screens()["preview"])
    texts = [t for t, _, _ in renderer.lines]
    assert "CAPTURE: Scan" in texts
    assert "Hold POWER: Power off" in texts


def rendered_text(screen, size=(480, 320), labels=None) -> list[str]:
    renderer = RecordingRenderer(size, labels if labels is not None else GPIO_LABELS)
    renderer.render(screen)
    return [text for text, _, _ in renderer.lines]


@pytest.mark.parametrize("size", [(320, 240), (480, 320), (800, 480)], ids=lambda s: f"{s[0]}")
@pytest.mark.parametrize("name", [n for n, s in all_screens().items() if s.patient])
def test_the_patient_line_is_on_the_screen_whole(size, name):
    texts = rendered_text(all_screens()[name], size)
    assert PATIENT in texts  # whole, never cut with "…"


@pytest.mark.parametrize("size", [(320, 240), (480, 320), (800, 480)], ids=lambda s: f"{s[0]}")
def test_every_hint_keeps_its_action_on_small_screens(size):
    """Five hints on a 320 px screen wrap to a second row rather than losing their words."""
    for name in ("preview-patient", "history-patient"):
        screen = all_screens()[name]
        texts = rendered_text(screen, size)
        for hint in screen.hints:
            assert f"{GPIO_LABELS[hint.button]}: {hint.action}" in texts, (name, hint)


def test_the_starting_screen_is_not_titled_analysing():
    texts = rendered_text(all_screens()["starting"])
    assert "Starting" in texts and "Analysing" not in texts
    assert "Analysing" in rendered_text(all_screens()["analyzing"])


def test_a_refused_card_says_why_on_screen():
    text = " ".join(rendered_text(all_screens()["card-refused"]))
    assert "Card not read" in text and "looks like a name" in text


def test_the_warning_band_names_the_skipped_file():
    text = " ".join(rendered_text(all_screens()["preview-patient"], (800, 480)))
    assert "Unreadable image file notes-from-the-visit.jpg" in text


def test_compare_shows_both_dates_tiers_and_the_change():
    texts = rendered_text(all_screens()["compare"], (800, 480))
    joined = " ".join(texts)
    for needed in (
        "2026-03-01 09:00 UTC", "2026-04-10 09:00 UTC", "Monitor", "Refer to a clinician",
        "40 days later · P(malignant) 12% → 30%", "Screening aid — not a diagnosis",
    ):  # fmt: skip
        assert needed in joined, needed


def test_history_says_when_in_utc_and_how_many_earlier_scans():
    joined = " ".join(rendered_text(all_screens()["history-patient"], (800, 480)))
    assert "2026-04-10 09:00 UTC" in joined and "2 earlier of this lesion" in joined


THREE_SIZES = [(320, 240), (480, 320), (800, 480)]


@pytest.mark.parametrize("size", THREE_SIZES, ids=lambda s: f"{s[0]}")
def test_damaged_scans_are_counted_above_the_history(size):
    joined = " ".join(rendered_text(all_screens()["history-damaged"], size))
    assert "1 saved scan could not be read — run 'skinscan records verify'" in joined
    assert "Saved scan 1/3" in joined and "Refer to a clinician" in joined
    joined = " ".join(rendered_text(all_screens()["history-all-damaged"], size))
    assert "2 saved scans could not be read — run 'skinscan records verify'" in joined
    assert "No saved scans can be shown" in joined and "yet" not in joined


@pytest.mark.parametrize("size", THREE_SIZES, ids=lambda s: f"{s[0]}")
def test_a_moved_database_shows_the_whole_path_of_the_old_file(size):
    texts = rendered_text(all_screens()["notice-corrupt-db"], size)
    assert OLD_DB in "".join(texts)  # broken over lines at "/", never cut with "…"
    joined = " ".join(texts)
    for needed in (
        "Scan database was damaged", "nothing was deleted", "now at:",
        "Press Capture when you have read this.", "Damage found: database disk image",
    ):  # fmt: skip
        assert needed in joined, needed
    assert not any(t.endswith("…") for t in texts), texts


@pytest.mark.parametrize("size", THREE_SIZES, ids=lambda s: f"{s[0]}")
def test_storage_full_shows_every_step_whole_and_the_reserve(size):
    texts = rendered_text(all_screens()["error-disk-full"], size)
    joined = " ".join(texts)
    for step in FREE_SPACE_STEPS:
        assert " ".join(step.split()) in joined, step
    for entry in ("Export to USB", "Free space"):  # the menu's entries, no shell command
        assert entry in joined, entry
    assert "skinscan records" not in joined
    assert "16.0 MiB is kept in reserve" in joined
    assert not any(t.endswith("…") for t in texts), texts


def test_wrap_path_breaks_after_slashes_and_gives_the_path_back():
    renderer = Renderer((320, 240))
    font = renderer.font(13, True)
    for width in (60, 120, 280):
        lines = renderer.wrap_path(OLD_DB, font, width)
        assert "".join(lines) == OLD_DB
        assert all(font.size(line)[0] <= width for line in lines)
    assert renderer.wrap_path(OLD_DB, font, 280)[0].endswith("/")


def test_compare_shows_p_on_the_same_side_of_the_threshold_as_the_tier():
    # 0.0951 below a 0.097 line: "10%" would read as at or above "refer at >= 9.7%".
    base = all_screens()["compare"]
    earlier = replace(
        base.earlier, risk_tier="monitor", p_malignant=0.0951, referral_threshold=0.097
    )
    later = replace(base.later, risk_tier="refer", p_malignant=0.0975, referral_threshold=0.097)
    joined = " ".join(rendered_text(replace(base, earlier=earlier, later=later), (800, 480)))
    assert "Monitor P(malignant) 9.5%" in joined
    assert "Monitor P(malignant) 10%" not in joined
