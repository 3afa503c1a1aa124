"""Every screen at every supported display size (480x320, 800x480, the 7" 720x1280 portrait
panel): every line of text inside its box and the screen, legible, never cut, never
overlapping; portrait screens use the whole height; the live view shows the battery and
the free storage."""

from __future__ import annotations

import dataclasses
import os
import types
import typing

import numpy as np
import pytest
from test_ui_render import PATIENT, all_screens, hints

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

from device.hw.buttons_keys import KeyButtons
from device.phantoms import make_phantom
from device.ui import screens as screens_module
from device.ui.render import MIN_FONT_PX, Renderer, surface_to_array
from device.ui.screens import DeviceStatus, Hint, PreviewScreen, Screen, ShutdownScreen

SUPPORTED_SIZES = [(480, 320), (800, 480), (720, 1280)]
FRAME = make_phantom(1).image
PREVIEW_HINTS = hints(
    ("capture", "Scan"), ("toggle", "Site"), ("next", "History"), ("patient", "Patient"),
    ("shutdown", "Power off"),
)  # fmt: skip


def extra_screens() -> dict[str, Screen]:
    """The screens of issue 28 item 6: battery and storage in view."""
    return {
        "preview-status": PreviewScreen(
            FRAME, (200, 120, 440, 360), True, None, 29.5, "simulated camera",
            hints=PREVIEW_HINTS, status=DeviceStatus(62, False, 480),
        ),
        "preview-charging": PreviewScreen(
            FRAME, None, False, "blurred — hold still", 12.0, hints=PREVIEW_HINTS,
            status=DeviceStatus(97, True, 12000), patient=PATIENT,
        ),
        "preview-low": PreviewScreen(
            FRAME, (200, 120, 440, 360), True, None, 29.5, "simulated camera",
            warning="unreadable image file notes-from-the-visit.jpg: not a decodable image; "
            "skipped", hints=PREVIEW_HINTS, patient=PATIENT,
            status=DeviceStatus(
                9, False, 14, battery_low=True, storage_low=True,
                alerts=("Battery low — charge soon", "Storage almost full — export to USB"),
            ),
        ),
        "preview-no-battery": PreviewScreen(
            FRAME, None, True, None, 30.0, hints=PREVIEW_HINTS, status=DeviceStatus(None, None, 3),
        ),
        "preview-storage-full": PreviewScreen(
            FRAME, None, True, None, 30.0, hints=PREVIEW_HINTS,
            status=DeviceStatus(
                50, True, 0, storage_low=True,
                alerts=("Storage full — new scans can NOT be saved: export to USB",),
            ),
        ),
        "shutdown-battery": ShutdownScreen(confirmed=True, poweroff=True, reason="battery"),
    }  # fmt: skip


# ---- screens built from their types, so that a screen added later is covered too ------------

SAMPLE_TEXT = "Sample text for {name}, as long as a real sentence on this screen"


def _value_for(kind: typing.Any, name: str) -> typing.Any:
    """A plausible value of type ``kind`` for a field called ``name``."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        return _value_for(options[0], name)
    if kind is np.ndarray:
        return FRAME[100:380, 180:460].copy()
    if kind is str:
        return SAMPLE_TEXT.format(name=name.replace("_", " "))
    if kind is bool:
        return True
    if kind is int:
        return 2
    if kind is float:
        return 0.42
    if origin is tuple:
        args = typing.get_args(kind)
        if len(args) == 2 and args[1] is Ellipsis:
            if args[0] is Hint:
                return hints(("capture", "Choose"), ("next", "Down"), ("back", "Back"))
            return tuple(_value_for(args[0], f"{name} {i + 1}") for i in range(3))
        if all(a is int for a in args):  # a box
            return (200, 120, 440, 360)
        return tuple(_value_for(a, name) for a in args)
    if dataclasses.is_dataclass(kind):
        return build_sample(kind)
    raise TypeError(f"no sample value for {kind!r} ({name})")


def build_sample(cls: type) -> typing.Any:
    """An instance of a screen dataclass with every field that has no default filled in."""
    types_of = typing.get_type_hints(cls, vars(screens_module))
    values = {}
    for field in dataclasses.fields(cls):
        if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            values[field.name] = _value_for(types_of[field.name], field.name)
    if "hints" in types_of:
        values["hints"] = hints(("capture", "Choose"), ("next", "Down"), ("back", "Back"))
    return cls(**values)


def screen_types() -> list[type]:
    """Every screen the renderer can be given (the members of ``Screen``)."""
    return list(typing.get_args(Screen))


def every_screen() -> dict[str, Screen]:
    """The hand-made samples, and one built from its type for every other screen type."""
    samples: dict[str, Screen] = {**all_screens(), **extra_screens()}
    covered = {type(s) for s in samples.values()}
    for cls in screen_types():
        if cls not in covered:
            samples[f"auto-{cls.__name__}"] = build_sample(cls)
    return samples


class Recorder(Renderer):
    """A renderer with the canvas's text and cut logs switched on."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.text_log = []
        self.cut_log = []


SCREENS = every_screen()


def test_every_screen_type_and_kind_has_a_sample():
    kinds = {s.kind for s in SCREENS.values()}
    assert set(screens_module.SCREEN_KINDS) <= kinds
    assert {type(s) for s in SCREENS.values()} >= set(screen_types())


@pytest.mark.parametrize("size", SUPPORTED_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", list(SCREENS))
def test_no_text_is_cut_at_any_supported_size(size, name):
    renderer = Recorder(size, KeyButtons.labels)
    surface = renderer.render(SCREENS[name])
    assert surface.get_size() == size
    screen = surface.get_rect()
    assert renderer.text_log, "nothing was written"
    for drawn in renderer.text_log:
        where = f"{drawn.text!r} at {drawn.rect}"
        assert screen.contains(drawn.rect), f"{where} leaves the {size} screen"
        assert drawn.box.contains(drawn.rect), f"{where} leaves its box {drawn.box}"
        assert drawn.font_px >= MIN_FONT_PX, f"{where} is {drawn.font_px}px high"
    assert not renderer.cut_log, f"text shortened with '…': {renderer.cut_log}"
    rects = [(d.text, d.rect) for d in renderer.text_log]
    for i, (text_a, rect_a) in enumerate(rects):
        for text_b, rect_b in rects[i + 1 :]:
            overlap = rect_a.clip(rect_b)
            assert overlap.width * overlap.height <= 4, f"{text_a!r} overlaps {text_b!r}"


def test_the_log_catches_text_outside_its_box_and_cuts():
    """The checks above can fail: text forced past its box or shortened is caught."""
    renderer = Recorder((480, 320))
    surface = renderer.pygame.Surface((480, 320))
    font = renderer.font(14)
    box = renderer.pygame.Rect(10, 10, 60, 20)
    with renderer.within(box):
        renderer.draw_text(surface, "far too long for this box", font, (255, 255, 255), (10, 10))
    assert not renderer.text_log[0].box.contains(renderer.text_log[0].rect)
    shown = renderer.ellipsize("far too long for this box", font, 60)
    assert shown.endswith("…") and renderer.cut_log == [("far too long for this box", shown)]


def test_a_shorter_wording_is_chosen_before_anything_is_cut():
    renderer = Recorder((480, 320))
    wordings = ("Space for 480 scans", "480 scans left", "480 left")
    wide = renderer.font(12).size(wordings[0])[0]
    _, text = renderer.fit_one_line(wordings, wide + 2, 12)
    assert text == wordings[0]
    narrow = renderer.font(0).size(wordings[2])[0] + 2
    _, text = renderer.fit_one_line(wordings, narrow, 12)
    assert text == wordings[2] and not renderer.cut_log
    _, text = renderer.fit_one_line(wordings, narrow // 2, 12)
    assert text.endswith("…") and renderer.cut_log


def test_portrait_splits_image_above_text_and_landscape_beside_it():
    for size, portrait in (((480, 320), False), ((720, 1280), True)):
        renderer = Recorder(size)
        area = renderer.content_rect()
        image, text = renderer.image_and_text(area, 0.5)
        assert renderer.portrait is portrait
        if portrait:
            assert image.width == text.width == area.width and text.top > image.bottom
        else:
            assert image.height == text.height == area.height and text.left > image.right


def test_a_screen_added_later_is_built_from_its_type():
    @dataclasses.dataclass(frozen=True)
    class MenuLike:
        title: str
        items: tuple[str, ...]
        index: int
        hints: tuple[Hint, ...] = ()
        kind: str = "menu"

    sample = build_sample(MenuLike)
    assert len(sample.items) == 3 and sample.title.startswith("Sample text")
    assert sample.hints


# ---- portrait uses the whole screen ------------------------------------------------------------


def _lowest_text(name: str, size: tuple[int, int]) -> int:
    renderer = Recorder(size, KeyButtons.labels)
    renderer.render(SCREENS[name])
    footer_top = size[1] - renderer.footer_height()
    return max(d.rect.bottom for d in renderer.text_log if d.rect.bottom <= footer_top)


@pytest.mark.parametrize("name", ["result-refer", "history-patient", "compare", "card-refused"])
def test_portrait_screens_use_the_lower_half(name):
    """On the 720x1280 panel the text goes below the photo, down the whole screen."""
    assert _lowest_text(name, (720, 1280)) > 1280 * 0.55


@pytest.mark.parametrize("name", ["result-refer", "compare", "preview-low"])
def test_portrait_photo_spans_the_width(name):
    image = surface_to_array(Renderer((720, 1280)).render(SCREENS[name]))
    # The photo (skin-coloured phantom) covers most of some row across the screen.
    skin = (image[:, :, 0].astype(int) - image[:, :, 2]) > 40
    assert skin.sum(axis=1).max() > 720 * 0.5


def test_portrait_live_view_puts_the_quality_light_under_the_frame():
    renderer = Recorder((720, 1280), KeyButtons.labels)
    renderer.render(SCREENS["preview-low"])
    frame = renderer.fit_image(FRAME, renderer.content_rect())
    ready = next(d for d in renderer.text_log if d.text == "Ready to scan")
    assert ready.rect.top >= renderer.content_rect().top + frame.height * 0.9
    bands = [d for d in renderer.text_log if d.text.startswith("Battery low")]
    assert bands and bands[0].rect.top > ready.rect.bottom


# ---- battery and storage in the live view ------------------------------------------------------


def _texts(name: str, size: tuple[int, int]) -> list[str]:
    renderer = Recorder(size, KeyButtons.labels)
    renderer.render(SCREENS[name])
    return [d.text for d in renderer.text_log]


@pytest.mark.parametrize("size", SUPPORTED_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_live_view_shows_battery_and_free_storage(size):
    texts = _texts("preview-status", size)
    assert "62%" in texts
    assert any("480" in t and "scans" in t for t in texts), texts
    assert "Live view" in texts


def test_storage_reads_in_full_where_there_is_room():
    wide = (800, 480)
    assert any(t.startswith("Space for 480 scans") for t in _texts("preview-status", wide))
    assert any(t.startswith("Space for 9999+ scans") for t in _texts("preview-charging", wide))


@pytest.mark.parametrize("size", SUPPORTED_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_low_battery_and_storage_are_warned_on_the_live_view(size):
    joined = " ".join(_texts("preview-low", size))
    assert "Battery low — charge soon" in joined
    assert "Storage almost full — export to USB" in joined
    assert "9%" in joined
    assert "Unreadable image file" in joined  # the camera's notice is still there


def test_no_battery_gauge_shows_no_percent():
    texts = _texts("preview-no-battery", (800, 480))
    assert not any(t.endswith("%") for t in texts)
    assert any("3 scans" in t for t in texts)


def _header_pixels(name: str) -> np.ndarray:
    image = surface_to_array(Renderer((800, 480)).render(SCREENS[name]))
    return image[: Renderer((800, 480)).title_height(), 700:].reshape(-1, 3).astype(int)


def test_the_battery_icon_turns_amber_when_low():
    amber = np.array((245, 180, 40))
    green = np.array((46, 170, 80))

    def share(pixels, colour):
        return (np.abs(pixels - colour).sum(axis=1) < 30).mean()

    low, ok = _header_pixels("preview-low"), _header_pixels("preview-status")
    assert share(low, amber) > share(ok, amber) + 0.01
    assert share(ok, green) > share(low, green) + 0.01


@pytest.mark.parametrize("size", SUPPORTED_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_battery_shutdown_says_why(size):
    joined = " ".join(_texts("shutdown-battery", size))
    assert "Battery empty" in joined and "Saved scans are kept" in joined
