"""Skin tone (ITA) of the skin around a lesion."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from training.skin_tone import band_table, ita_band, ita_from_lab, skin_tone


def _lesion_on_skin(
    lightness: float, b_star: float, size: tuple[int, int] = (150, 200)
) -> np.ndarray:
    """A dark round lesion on uniform skin of the given CIELAB L* (0-100) and b*."""
    lab = np.zeros((*size, 3), np.uint8)
    lab[..., 0] = round(lightness * 255 / 100)
    lab[..., 1] = 128 + 8
    lab[..., 2] = round(128 + b_star)
    skin = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    cv2.circle(skin, (size[1] // 2, size[0] // 2), size[0] // 4, (12, 6, 4), -1)
    return skin


def test_ita_formula_and_bands() -> None:
    assert ita_from_lab(50.0, 10.0) == pytest.approx(0.0)
    assert ita_from_lab(70.0, 20.0) == pytest.approx(45.0)
    assert ita_band(60.0) == "very light"
    assert ita_band(45.0) == "light"
    assert ita_band(30.0) == "intermediate"
    assert ita_band(15.0) == "tan"
    assert ita_band(0.0) == "brown"
    assert ita_band(-45.0) == "dark"
    assert ita_band(math.nan) == "unknown"


@pytest.mark.parametrize(
    ("lightness", "b_star", "band"),
    [
        (80.0, 12.0, "very light"),
        (65.0, 12.0, "light"),
        (55.0, 20.0, "tan"),
        (45.0, 15.0, "brown"),
        (22.0, 10.0, "dark"),
    ],
)
def test_skin_around_the_lesion_gives_its_ita(lightness: float, b_star: float, band: str) -> None:
    tone = skin_tone(_lesion_on_skin(lightness, b_star))
    # 8-bit CIELAB rounding moves the angle by about a degree.
    assert tone.ita == pytest.approx(ita_from_lab(lightness, b_star), abs=2.5)
    assert tone.band == band
    assert 0.5 < tone.skin_fraction < 0.95


def test_the_lesion_itself_does_not_darken_the_estimate() -> None:
    small = skin_tone(_lesion_on_skin(70.0, 15.0))
    image = _lesion_on_skin(70.0, 15.0)
    cv2.circle(image, (100, 75), 55, (50, 30, 20), -1)  # a much larger lesion
    large = skin_tone(image)
    assert large.ita == pytest.approx(small.ita, abs=2.0)
    assert large.skin_fraction < small.skin_fraction


def test_too_little_skin_is_unknown() -> None:
    black = np.zeros((150, 200, 3), np.uint8)
    tone = skin_tone(black)
    assert math.isnan(tone.ita) and tone.band == "unknown"


def test_band_table_lists_every_band_in_order() -> None:
    table = band_table({"a": ["light", "light", "dark"], "b": []})
    assert list(table["a"]) == [
        "very light",
        "light",
        "intermediate",
        "tan",
        "brown",
        "dark",
        "unknown",
    ]
    assert table["a"]["light"] == 2 and table["a"]["dark"] == 1 and sum(table["b"].values()) == 0
