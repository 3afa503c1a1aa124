"""The clinic scan and retake pages' quality table: every metric, labelled, with its limit."""

from __future__ import annotations

import html
import re

import numpy as np
import pytest

pytest.importorskip("flask")
pytest.importorskip("flask_wtf")
pytest.importorskip("argon2")

from clinic_support import encode, lesion_jpeg, login, make_app, make_keys, upload

from clinic.views import _quality_rows
from device.imaging.quality import QualityThresholds, assess_quality
from device.phantoms import make_phantom

ROW = re.compile(
    r"<tr><td>([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td>\s*<td>(?:<span class=\"\w+\">)?(\w+|—)"
)
# The gate's threshold for each metric, and which way it must go.
LIMITS = {
    "sharpness": (">=", "min_sharpness"),
    "reblur_loss": (">=", "min_reblur_loss"),
    "dark_fraction": ("<=", "max_dark_fraction"),
    "bright_fraction": ("<=", "max_bright_fraction"),
    "lesion_contrast": (">=", "min_lesion_contrast"),
    "colourfulness": (">=", "min_colourfulness"),
    "ink_fraction": ("<=", "max_ink_fraction"),
    "lesion_colour_distance": (">=", "min_lesion_colour_distance"),
}


@pytest.fixture(scope="module")
def analysis():
    from clinic.analysis import AnalysisService

    return AnalysisService(max_pixels=2_000_000)


@pytest.fixture
def client(tmp_path, analysis):
    app = make_app(tmp_path / "clinic", make_keys(tmp_path / "keys")[0], analysis)
    client = app.test_client()
    assert login(client).status_code == 302
    yield client
    app.extensions["skinscan_clinic"].store.close()


def _table(page: str) -> dict[str, tuple[str, str, str]]:
    """The quality table of a page: label -> (value, limit, pass/fail)."""
    return {
        html.unescape(label): (value, html.unescape(limit), verdict)
        for label, value, limit, verdict in ROW.findall(page)
    }


def test_every_metric_of_the_gate_has_a_label_and_its_limit():
    thresholds = QualityThresholds(min_reblur_loss=0.9, min_colourfulness=55.0)  # not the defaults
    report = assess_quality(make_phantom(5, size=(450, 600)).image, thresholds)
    metrics = report.metrics()
    assert set(metrics) == set(LIMITS), "a new gate metric needs a label and limit here"
    rows = _quality_rows(metrics, thresholds)
    assert len(rows) == len(metrics)
    assert {row["metric"] for row in rows} == set(metrics)
    for row in rows:
        name = row["metric"]
        op, attribute = LIMITS[name]
        limit = getattr(thresholds, attribute)
        assert row["name"] != name and "_" not in row["name"], row
        assert row["limit"] == f"{op} {limit:g}"
        value = metrics[name]
        assert row["passed"] == (value >= limit if op == ">=" else value <= limit), row
    by_metric = {row["metric"]: row for row in rows}
    assert by_metric["colourfulness"]["name"].startswith("Colourfulness")
    assert by_metric["colourfulness"]["passed"] is False  # 55 is above any skin photo's chroma
    assert by_metric["reblur_loss"]["name"].startswith("Re-blur")
    assert by_metric["reblur_loss"]["passed"] == (metrics["reblur_loss"] >= 0.9)
    # A metric from a newer scanner is shown as named, without a limit; old records lack some.
    (future,) = _quality_rows({"glare_spots": 3.0}, thresholds)
    assert (future["name"], future["limit"], future["passed"]) == ("glare_spots", None, None)
    assert [r["metric"] for r in _quality_rows({"sharpness": 9.0}, thresholds)] == ["sharpness"]


@pytest.mark.parametrize(("distance", "passes"), [(8.0, True), (7.0, False)])
def test_a_faint_lesion_passes_contrast_when_its_colour_stands_out(distance, passes):
    # As the gate decides: under the contrast limit, a clear colour distance still passes.
    thresholds = QualityThresholds(min_lesion_contrast=0.2, faint_lesion_colour_distance=7.5)
    metrics = {"lesion_contrast": 0.1, "lesion_colour_distance": distance}
    rows = {r["metric"]: r for r in _quality_rows(metrics, thresholds)}
    assert rows["lesion_contrast"]["passed"] is passes


def test_a_grey_photo_shows_colourfulness_failing_against_its_limit(client, analysis):
    grey = make_phantom(5, size=(450, 600)).image.mean(axis=2, keepdims=True)
    grey = np.repeat(grey, 3, axis=2).astype(np.uint8)
    response = upload(client, encode(grey, ".png"), name="grey.png")
    assert response.status_code == 422
    table = _table(response.get_data(as_text=True))
    (label,) = [k for k in table if k.startswith("Colourfulness")]
    value, limit, verdict = table[label]
    assert limit == f">= {analysis.thresholds.min_colourfulness:g}" and verdict == "fail"
    assert float(value) < analysis.thresholds.min_colourfulness
    assert len(table) == len(LIMITS) and all(v[1] != "—" for v in table.values())


def test_the_scan_page_shows_every_metric_with_its_limit(client, analysis):
    response = upload(client, lesion_jpeg(5))
    assert response.status_code == 302
    table = _table(client.get(response.headers["Location"]).get_data(as_text=True))
    assert len(table) == len(LIMITS)
    thresholds = analysis.thresholds
    (reblur,) = [k for k in table if k.startswith("Re-blur")]
    assert table[reblur][1] == f">= {thresholds.min_reblur_loss:g}"
    (colour,) = [k for k in table if k.startswith("Colourfulness")]
    assert table[colour][1] == f">= {thresholds.min_colourfulness:g}"
    assert all(verdict == "pass" for _, _, verdict in table.values()), table
    assert not [k for k in table if "_" in k], table


def test_checks_after_the_first_failing_one_show_as_not_checked(client, analysis):
    # A grey photo is refused for colour; contrast and sharpness were measured, not judged.
    grey = make_phantom(5, size=(450, 600)).image.mean(axis=2, keepdims=True)
    grey = np.repeat(grey, 3, axis=2).astype(np.uint8)
    response = upload(client, encode(grey, ".png"), name="grey.png")
    table = _table(response.get_data(as_text=True))
    verdicts = {label.split(" (")[0]: verdict for label, (_, _, verdict) in table.items()}
    assert verdicts["Colourfulness"] == "fail"
    assert verdicts["Dark pixels"] == verdicts["Bright"] == "pass"
    for later in ("Lesion contrast", "Sharpness", "Re-blur loss"):
        assert verdicts[later] == "not", verdicts
