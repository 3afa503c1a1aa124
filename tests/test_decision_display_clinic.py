"""The clinic's scan page shows the same figures as the device: they agree with the tier."""

from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("flask")
pytest.importorskip("flask_wtf")
pytest.importorskip("argon2")

from clinic_support import import_files, login, make_app, make_export, make_keys

from device.labels import CLASS_CODES
from device.records.testing import make_record

SHIPPED_THRESHOLD = 0.09715669520147026


def record_with(seed: int, p_malignant: float, tier: str):
    """A record whose melanoma probability is ``p_malignant`` and nevus the rest."""
    probabilities = dict.fromkeys(CLASS_CODES, 0.0)
    probabilities["mel"] = p_malignant
    probabilities["nv"] = 1.0 - p_malignant
    return make_record(
        seed, size=48, probabilities=probabilities, label="nv", risk_tier=tier,
        p_malignant=p_malignant, extra={"referral_threshold": f"{SHIPPED_THRESHOLD:.6f}"},
    )  # fmt: skip


@pytest.fixture
def client(tmp_path):
    from clinic.analysis import AnalysisService

    private, public = make_keys(tmp_path / "keys")
    app = make_app(tmp_path / "clinic", private, AnalysisService(max_pixels=2_000_000))
    test_client = app.test_client()
    assert login(test_client).status_code == 302
    yield test_client, public, tmp_path
    app.extensions["skinscan_clinic"].store.close()


def page_of(client, record) -> str:
    test_client, public, tmp_path = client
    (part,) = make_export(tmp_path / f"usb-{record.scan_id[:8]}", public, [record])
    assert import_files(test_client, [(part.name, part.read_bytes())]).status_code == 200
    return test_client.get(f"/scans/{record.scan_id}").get_data(as_text=True)


@pytest.mark.parametrize(
    ("p_malignant", "tier", "p_text", "relation", "t_text"),
    [
        (0.095, "monitor", "9.5%", "&lt;", "9.7%"),
        (0.0969, "uncertain", "9.69%", "&lt;", "9.72%"),
        (0.0972, "refer", "9.7%", "≥", "9.7%"),
    ],
)
def test_the_scan_page_never_shows_a_figure_against_its_tier(
    client, p_malignant, tier, p_text, relation, t_text
):
    page = page_of(client, record_with(int(p_malignant * 1e4), p_malignant, tier))
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))
    assert f"P(malignant) {p_text} {relation} referral threshold {t_text}" in text, text[:2000]
    if tier == "uncertain":
        # No confident class leads an Uncertain result: the closest one, no percentage.
        assert "Closest class: Melanocytic nevus (mole)" in text
        assert '<td class="num">' not in page
    else:
        assert re.findall(r'<td class="num">(\d+)%</td>', page)[0] == str(
            round(100 * max(p_malignant, 1 - p_malignant))
        )


def test_the_shown_figures_parse_in_the_order_of_the_exact_ones(client):
    rng = np.random.default_rng(3)
    for p in SHIPPED_THRESHOLD + rng.choice([-1, 1], 3) * 10.0 ** rng.uniform(-6, -3, 3):
        tier = "refer" if p >= SHIPPED_THRESHOLD else "monitor"
        page = page_of(client, record_with(int(rng.integers(100, 10_000)), float(p), tier))
        found = re.search(r'pmal-value">([\d.]+)%</strong>\s*(≥|&lt;) referral threshold '
                          r"<strong>([\d.]+)%", page)  # fmt: skip
        assert found, page
        shown_p, shown_t = float(found.group(1)), float(found.group(3))
        assert (shown_p >= shown_t) == (p >= SHIPPED_THRESHOLD) == (found.group(2) == "≥")
