"""``skinscan adapt`` end to end: refusals write nothing; an adapted bundle works in eval."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from adaptation_support import ISIC_DIR
from bundle_factory import make_bundle, write_rows_csv, write_synthetic_jpegs

from device.cli import main
from device.errors import ManifestError
from device.runtime.bundle import DEFAULT_BUNDLE_DIR, load_bundle, sha256_file
from device.runtime.manifest import MANIFEST_NAME


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("tiny") / "base")


def _cases(folder: Path, counts: dict[str, int], seed: int = 0) -> tuple[Path, Path]:
    images = folder / "images"
    rows = []
    for code, n in counts.items():
        for image_id, dx, i in write_synthetic_jpegs(images, (code,), n, seed=seed):
            basis = "histopathology" if dx == "mel" else "follow-up"
            rows.append(
                {"image_id": image_id, "dx": dx, "basis": basis, "date": f"2026-0{1 + i % 9}-15"}
            )
    return write_rows_csv(folder / "cases.csv", rows), images


def _adapt(base: Path, csv_path: Path, images: Path, out: Path, *extra: str) -> int:
    return main(
        ["adapt", "--bundle", str(base), "--metadata", str(csv_path), "--images", str(images),
         "--out", str(out), "--site", "clinic-north", "--workers", "1", *extra]
    )  # fmt: skip


def _nothing_beside(out: Path) -> None:
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]


def test_too_few_cases_refused_and_nothing_written(tiny_base, tmp_path, capsys) -> None:
    csv_path, images = _cases(tmp_path, {"mel": 8, "nv": 30})
    out = tmp_path / "out" / "adapted"
    out.parent.mkdir()
    assert _adapt(tiny_base, csv_path, images, out) == 2
    assert "too few confirmed cases" in capsys.readouterr().err
    _nothing_beside(out)


def test_one_class_refused_and_nothing_written(tiny_base, tmp_path, capsys) -> None:
    csv_path, images = _cases(tmp_path, {"mel": 35})
    out = tmp_path / "adapted"
    assert _adapt(tiny_base, csv_path, images, out) == 2
    assert "one" in capsys.readouterr().err
    _nothing_beside(out)


def test_existing_output_is_refused(tiny_base, tmp_path, capsys) -> None:
    csv_path, images = _cases(tmp_path, {"mel": 12, "nv": 20})
    out = tmp_path / "adapted"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert _adapt(tiny_base, csv_path, images, out) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"


def test_no_gain_refused_unless_forced(tiny_base, tmp_path, capsys, monkeypatch) -> None:
    import clinic.adaptation.adapt as adapt_module

    real = adapt_module.check_evidence
    # The tiny base model separates its synthetic colours perfectly, so no head can beat
    # it; make the comparison strict to see the refusal and the override.
    monkeypatch.setattr(
        adapt_module, "check_evidence", lambda base, adapted, force: real(base + 1, adapted, force)
    )
    csv_path, images = _cases(tmp_path, {"mel": 12, "nv": 14, "vasc": 8})
    out = tmp_path / "adapted"
    assert _adapt(tiny_base, csv_path, images, out) == 2
    assert "--force" in capsys.readouterr().err
    _nothing_beside(out)
    assert _adapt(tiny_base, csv_path, images, out, "--force") == 0
    card = (out / "MODEL_CARD.md").read_text()
    assert "Override" in card and "--force" in card
    assert load_bundle(out).manifest.adaptation.forced


def test_adapted_bundle_is_sealed_identical_trunk_and_evaluates(tiny_base, tmp_path, capsys):
    csv_path, images = _cases(tmp_path, {"mel": 12, "nv": 14, "vasc": 8}, seed=3)
    out = tmp_path / "adapted"
    assert _adapt(tiny_base, csv_path, images, out) == 0
    printed = capsys.readouterr().out
    assert "| malignant_auc |" in printed and "adapted for clinic-north" in printed
    bundle = load_bundle(out)
    spec = bundle.manifest.adaptation
    assert spec.site == "clinic-north" and spec.base_bundle_id == "tiny-test"
    # Synthetic frames now and then fail the quality gate; those are left out.
    assert set(spec.cases_per_class) == {"mel", "nv", "vasc"}
    assert 30 <= spec.n_cases == sum(spec.cases_per_class.values()) <= 34
    for name in ("model.tflite", "gradcam.tflite"):
        assert sha256_file(out / name) == sha256_file(tiny_base / name)
    card = (out / "MODEL_CARD.md").read_text()
    for needed in (
        "tiny-test",
        "clinic-north",
        "histopathology",
        "2026-01-15",
        "Verification bias",
    ):
        assert needed in card
    # A hand edit of the threshold is refused.
    edited = tmp_path / "edited"
    edited.mkdir()
    for f in out.iterdir():
        (edited / f.name).write_bytes(f.read_bytes())
    data = json.loads((edited / MANIFEST_NAME).read_text())
    data["calibration"]["referral_threshold"] = 0.99
    (edited / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="decision"):
        load_bundle(edited)
    # eval accepts the adapted bundle.
    report = tmp_path / "eval.json"
    args = ["--metadata", str(csv_path), "--images", str(images), "--json", str(report)]
    assert main(["eval", "--bundle", str(out), *args, "--workers", "1", "--n-boot", "10"]) == 0
    figures = json.loads(report.read_text())
    assert figures["n_images"] > 20
    assert figures["referral_threshold"] == pytest.approx(
        bundle.manifest.calibration.referral_threshold
    )


def test_adapt_on_real_isic_archive_cases(tmp_path, capsys) -> None:
    labels = ISIC_DIR / "labels.csv"
    if not labels.is_file():
        pytest.skip("isic-archive not present at ../shared/data/isic-archive")
    with labels.open() as handle:
        rows = list(csv.DictReader(handle))
    rng = np.random.default_rng(11)
    mel = [r for r in rows if r["dx"] == "mel"]
    benign = [r for r in rows if r["dx"] != "mel"]
    picked = [mel[i] for i in rng.choice(len(mel), 16, replace=False)]
    picked += [benign[i] for i in rng.choice(len(benign), 30, replace=False)]
    csv_path = write_rows_csv(
        tmp_path / "cases.csv", [{"image_id": r["image_id"], "dx": r["dx"]} for r in picked]
    )
    out = tmp_path / "adapted"
    # The shipped v6 saw the ISIC archive in training: a smoke test, so --force.
    code = main(["adapt", "--metadata", str(csv_path), "--images", str(ISIC_DIR / "images"),
                 "--out", str(out), "--force", "--workers", "2"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    bundle = load_bundle(out)
    assert bundle.manifest.adaptation.base_bundle_id == load_bundle(DEFAULT_BUNDLE_DIR).bundle_id
    assert bundle.head.weights.shape == (1280, 7)
    assert sha256_file(out / "model.tflite") == sha256_file(DEFAULT_BUNDLE_DIR / "model.tflite")
    report = tmp_path / "eval.json"
    args = ["--metadata", str(csv_path), "--images", str(ISIC_DIR / "images")]
    assert main(["eval", "--bundle", str(out), *args, "--json", str(report), "--n-boot", "10"]) == 0
    assert json.loads(report.read_text())["n_images"] == len(picked)


def test_an_adapted_bundle_can_be_adapted_again(tiny_base, tmp_path) -> None:
    from clinic.adaptation.base_head import base_head

    csv_path, images = _cases(tmp_path, {"mel": 12, "nv": 14, "vasc": 8}, seed=5)
    first, second = tmp_path / "first", tmp_path / "second"
    assert _adapt(tiny_base, csv_path, images, first, "--force") == 0
    assert _adapt(first, csv_path, images, second, "--force") == 0
    once, twice = load_bundle(first), load_bundle(second)
    # The anchor of the second fit is the first adapted head, not the int8 Dense layer.
    np.testing.assert_array_equal(base_head(once).weights, once.head.weights)
    assert twice.manifest.adaptation.base_bundle_id == once.bundle_id
    assert twice.manifest.adaptation.base_model_sha256 == once.model_sha256
    assert sorted(p.name for p in second.iterdir()) == sorted(p.name for p in first.iterdir())
