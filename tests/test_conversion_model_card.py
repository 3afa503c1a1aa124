"""The model card of a bundle: per-source training data, held-out sources, subgroups."""

from __future__ import annotations

from pathlib import Path

from bundle_factory import make_bundle

from conversion.model_card import render_model_card
from device.runtime.bundle import load_bundle


def _manifest(tmp_path: Path):
    return load_bundle(make_bundle(tmp_path / "bundle")).manifest


def test_card_lists_images_per_source_when_the_run_had_several(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    assert "Images per acquisition source" not in render_model_card(manifest)
    sources = {"rosendahl": {"mel": 3, "nv": 5}, "isic-archive": {"bkl": 2, "mel": 4}}
    manifest.provenance.extra["sources"] = sources
    card = render_model_card(manifest)
    assert "| source | images | bkl | mel | nv |" in card
    assert "| rosendahl | 8 | 0 | 3 | 5 |" in card
    assert "| isic-archive | 6 | 2 | 4 | 0 |" in card


def test_card_shows_figures_on_sources_it_was_not_trained_on(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    assert "not trained on" not in render_model_card(manifest)
    manifest.metrics["held_out_sources"] = {
        "vidir_modern": {
            "n_images": 3363,
            "malignant_auc": 0.871,
            "melanoma_sensitivity": 0.9,
            "ci95": {"malignant_auc": [0.85, 0.89]},
        }
    }
    card = render_model_card(manifest)
    assert "### On sources it was not trained on" in card
    assert "| vidir_modern | 3363 | 0.871 [0.850 – 0.890] | n/a | n/a | n/a | 0.900 |" in card


def test_card_has_a_table_per_subgroup_including_source_and_skin_tone(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    group = {"n": 4, "n_malignant": 1, "balanced_accuracy": 0.5, "malignant_auc": 0.7}
    manifest.metrics["subgroups_int8_test"] = {
        "dataset": {"rosendahl": group},
        "skin_tone": {"very light": group, "brown": {**group, "n": 1}},
    }
    card = render_model_card(manifest)
    assert "**By dataset**" in card and "**By skin tone**" in card
    assert "| brown | 1 | 1 |" in card


def test_card_says_how_few_test_images_show_darker_skin(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    assert "show brown or dark skin" not in render_model_card(manifest)
    group = {"n_malignant": 0, "balanced_accuracy": 0.5, "malignant_auc": 0.7}
    manifest.metrics["subgroups_int8_test"] = {
        "skin_tone": {
            "very light": {**group, "n": 180, "n_malignant": 30},
            "brown": {**group, "n": 3, "n_malignant": 1},
            "dark": {**group, "n": 1},
            "tan": {**group, "n": 16},
        }
    }
    card = render_model_card(manifest)
    assert "4 of the 200 test images (2.0%) show brown or dark skin, 1 of them malignant" in card


def test_card_says_plainly_when_parity_gates_failed(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    assert "Parity gates failed" not in render_model_card(manifest)
    manifest.metrics.setdefault("parity", {})["failures"] = ["int8/float agreement 0.963 < 0.97"]
    card = render_model_card(manifest)
    assert "**Parity gates failed; written with `--force`:** int8/float agreement 0.963" in card


def test_card_limitation_names_the_held_out_threshold_and_its_price(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    assert "same sources as the test data" in render_model_card(manifest)
    manifest.metrics["held_out_threshold"] = {"cap": 0.1, "validation_specificity_at_cap": 0.497}
    card = render_model_card(manifest)
    assert "refer 90% of the melanomas of sources they never saw" in card and "0.497" in card


def test_an_isic_archive_is_cited_as_such() -> None:
    from training.train_config import archive_citation

    assert "Codella" in archive_citation("plain", Path("/data/isic-archive"))
    assert "Tschandl" in archive_citation("ham10000", Path("/data/ham"))
    assert (
        archive_citation("plain", Path("/x/clinic-z")) == "plain archive clinic-z (cite its source)"
    )


def test_calibration_line_points_on_when_the_threshold_was_lowered(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    manifest.metrics.setdefault("parity", {}).setdefault("calibration", {})["int8_fitted"] = {
        "temperature": 1.0
    }
    assert "the shipped one is lower" not in render_model_card(manifest)
    manifest.metrics["shift_threshold"] = {"lowered": True, "threshold": 0.1}
    assert "the shipped one is lower, see below" in render_model_card(manifest)


def test_per_source_table_has_a_skin_tone_column(tmp_path: Path) -> None:
    import numpy as np

    from training.report import subgroup_metrics

    rows = [{"dataset": d} for d in ("a", "a", "a", "b")]
    labels = np.array([4, 5, 5, 5])  # mel, nv, nv, nv
    probs = np.eye(7)[labels]
    groups = subgroup_metrics(rows, labels, probs, 0.5, ["very light", "very light", "dark", "tan"])
    assert groups["dataset"]["a"]["skin_tone_counts"] == {"dark": 1, "very light": 2}
    manifest = _manifest(tmp_path)
    manifest.metrics["subgroups_int8_test"] = {"dataset": groups["dataset"]}
    card = render_model_card(manifest)
    assert "| skin tone (ITA): very light | brown or dark |" in card
    assert card.count("| 67% | 1 |") == 1 and "| 0% | 0 |" in card


def test_card_shows_sealed_outside_clinic_figures_and_their_notes(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    assert "Outside clinics" not in render_model_card(manifest)
    manifest.metrics["outside_clinics"] = {
        "source": "Sealed sets.",
        "rows": [{"set": "clinic A", "images": 200, "malignant_auc": 0.713, "specificity": 0.2}],
        "notes": ["Class-wise guard failed: bcc."],
    }
    card = render_model_card(manifest)
    assert "### Outside clinics (sealed sets)" in card
    assert "| clinic A | 200 | 0.713 | n/a | n/a | 0.200 |" in card
    assert "- Class-wise guard failed: bcc." in card
