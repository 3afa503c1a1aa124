"""Several archives as one training set: sources, held-out folds, balanced weights, screening."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from conftest import write_synthetic_ham

from device.cli import main
from device.errors import DatasetError
from training.sources import (
    balanced_weights,
    extend_split,
    held_out_fold,
    load_sources,
    source_counts,
    source_split,
)

ISIC_ARCHIVE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "isic-archive"
SOURCES = ("rosendahl", "vidir_modern", "vidir_molemax")


def _with_sources(root: Path) -> Path:
    """Give a synthetic HAM10000 folder a ``dataset`` column, lesion by lesion."""
    csv_path = root / "HAM10000_metadata.csv"
    rows = list(csv.DictReader(csv_path.open()))
    lesions = sorted({r["lesion_id"] for r in rows})
    source_of = {lesion: SOURCES[i % len(SOURCES)] for i, lesion in enumerate(lesions)}
    for row in rows:
        row["dataset"] = source_of[row["lesion_id"]]
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def _archive_from(ham: Path, root: Path, dxs: tuple[str, ...] = ("mel", "nv", "bkl")) -> Path:
    """A plain-layout archive (labels.csv + images/) built from copies of HAM images."""
    rows = [r for r in csv.DictReader((ham / "HAM10000_metadata.csv").open()) if r["dx"] in dxs]
    (root / "images").mkdir(parents=True)
    out = []
    for number, row in enumerate(rows):
        image_id = f"ARC_{number:05d}"
        shutil.copy(ham / "images" / f"{row['image_id']}.jpg", root / "images" / f"{image_id}.jpg")
        out.append({"image_id": image_id, "dx": row["dx"], "lesion_id": image_id})
    with (root / "labels.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["image_id", "dx", "lesion_id"])
        writer.writeheader()
        writer.writerows(out)
    return root


@pytest.fixture
def two_archives(tmp_path: Path) -> tuple[Path, Path]:
    ham = _with_sources(write_synthetic_ham(tmp_path / "ham", per_class=12))
    return ham, _archive_from(ham, tmp_path / "other-clinic")


def test_each_image_gets_its_source_from_the_metadata_or_the_archive_folder(
    two_archives: tuple[Path, Path],
) -> None:
    ham, other = two_archives
    samples, reports = load_sources([ham, other])
    counts = source_counts(samples)
    assert set(counts) == {*SOURCES, "other-clinic"}
    assert sum(sum(c.values()) for c in counts.values()) == len(samples)
    assert [r.kept for r in reports] == [
        sum(1 for s in samples if s.source != "other-clinic"),
        sum(1 for s in samples if s.source == "other-clinic"),
    ]
    assert set(counts["other-clinic"]) == {"mel", "nv", "bkl"}


def test_an_image_id_in_two_archives_is_read_once_and_the_repeat_reported(
    two_archives: tuple[Path, Path],
) -> None:
    ham, _ = two_archives
    samples, reports = load_sources([ham, ham])
    assert len(samples) == reports[0].kept and reports[1].kept == 0
    assert all("already read from" in s["reason"] for s in reports[1].skipped)


def test_no_data_folder_is_an_error() -> None:
    with pytest.raises(DatasetError, match="no data folder"):
        load_sources([])


def test_split_keeps_lesions_together_and_every_source_in_every_split(
    two_archives: tuple[Path, Path],
) -> None:
    samples, _ = load_sources(two_archives)
    assignment = source_split(samples, seed=3)
    sides: dict[str, set[str]] = defaultdict(set)
    for sample in samples:
        sides[sample.lesion_id].add(assignment[sample.image_id])
    assert all(len(s) == 1 for s in sides.values())
    per_source = Counter((s.source, assignment[s.image_id]) for s in samples)
    for source in {s.source for s in samples}:
        assert per_source[(source, "train")] > per_source[(source, "test")] > 0
    assert source_split(samples, seed=3) == assignment


def test_extended_split_keeps_every_old_image_where_it_was_and_splits_the_new_archive(
    two_archives: tuple[Path, Path],
) -> None:
    ham, _ = two_archives
    old_samples, _ = load_sources([ham])
    old = source_split(old_samples, seed=5)
    samples, _ = load_sources(two_archives)
    assignment = extend_split(samples, old, seed=1)
    assert set(assignment) == {s.image_id for s in samples}
    assert all(assignment[image_id] == split for image_id, split in old.items())
    new = Counter(assignment[s.image_id] for s in samples if s.image_id not in old)
    assert new["train"] > new["test"] > 0 and new["val"] > 0


def test_a_new_image_of_an_old_lesion_follows_that_lesion(two_archives) -> None:
    ham, _ = two_archives
    samples, _ = load_sources([ham])
    test_lesion = next(s.lesion_id for s in samples if s.image_id == samples[0].image_id)
    siblings = [s for s in samples if s.lesion_id == test_lesion]
    kept = {s.image_id: "train" for s in samples if s.lesion_id != test_lesion}
    kept[siblings[0].image_id] = "test"  # the other images of this lesion are "new"
    assignment = extend_split(samples, kept, seed=0)
    assert {assignment[s.image_id] for s in siblings} == {"test"}


def test_a_kept_split_that_divides_a_lesion_is_refused(two_archives) -> None:
    ham, _ = two_archives
    samples, _ = load_sources([ham])
    lesion = Counter(s.lesion_id for s in samples).most_common(1)[0][0]
    pair = [s for s in samples if s.lesion_id == lesion][:2]
    assert len(pair) == 2, "the synthetic archive has a lesion with two images"
    kept = {pair[0].image_id: "train", pair[1].image_id: "test"}
    with pytest.raises(DatasetError, match="not lesion-grouped"):
        extend_split(samples, kept)


def test_held_out_fold_drops_training_views_of_a_held_out_lesion(tmp_path: Path) -> None:
    ham = _with_sources(write_synthetic_ham(tmp_path / "ham", per_class=4))
    csv_path = ham / "HAM10000_metadata.csv"
    rows = list(csv.DictReader(csv_path.open()))
    # One lesion with two images, photographed at two sources (HAM10000 has nine such).
    twin = next(
        r["lesion_id"] for r in rows if sum(x["lesion_id"] == r["lesion_id"] for x in rows) == 2
    )
    twin_rows = [r for r in rows if r["lesion_id"] == twin]
    twin_rows[0]["dataset"], twin_rows[1]["dataset"] = "rosendahl", "vidir_modern"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    samples, _ = load_sources([ham])
    train, held = held_out_fold(samples, "rosendahl")
    assert {s.source for s in held} == {"rosendahl"}
    assert "rosendahl" not in {s.source for s in train}
    assert twin not in {s.lesion_id for s in train}
    assert len(train) + len(held) == len(samples) - 1
    with pytest.raises(DatasetError, match="no image comes from source 'nowhere'"):
        held_out_fold(samples, "nowhere")


def test_balanced_weights_equalise_classes_and_sources(two_archives: tuple[Path, Path]) -> None:
    samples, _ = load_sources(two_archives)
    by_class = balanced_weights(samples, source_power=0.0)
    totals = defaultdict(float)
    for sample, weight in zip(samples, by_class, strict=True):
        totals[sample.dx] += weight
    assert np.ptp(list(totals.values())) == pytest.approx(0.0, abs=1e-9)
    full = balanced_weights(samples, source_power=1.0)
    source_totals = defaultdict(float)
    plain = balanced_weights(samples, source_power=0.0)
    for sample, weight, base in zip(samples, full, plain, strict=True):
        source_totals[sample.source] += weight / base
    # With power 1 the source factor makes each source's share of the images equal.
    shares = {s: source_totals[s] / sum(1 for x in samples if x.source == s) for s in source_totals}
    sizes = Counter(s.source for s in samples)
    products = [shares[s] * sizes[s] for s in sizes]
    assert np.ptp(products) == pytest.approx(0.0, abs=1e-9)
    assert balanced_weights(samples).mean() == pytest.approx(1.0)


@pytest.mark.tf
def test_bench_sources_reports_every_fold_and_candidate(
    two_archives: tuple[Path, Path], tmp_path: Path
) -> None:
    pytest.importorskip("tensorflow")
    ham, other = two_archives
    out = tmp_path / "bench"
    argv = ["bench", "sources", "--data", str(ham), "--data", str(other), "--out", str(out)]
    argv += ["--backbone", "tiny_cnn", "--n-boot", "20", "--workers", "1"]
    argv += ["--fold", "rosendahl", "--fold", "other-clinic"]
    argv += ["--candidate", "ham", "--candidate", "all-srcbal-aug"]
    assert main(argv) == 0
    report = json.loads((out / "sources.json").read_text())
    assert set(report["folds"]) == {"rosendahl", "other-clinic"}
    for fold in report["folds"].values():
        for name in ("ham", "all-srcbal-aug"):
            run = fold[name]
            held = run["held_out_figures"]
            assert held["n_images"] == fold["n_held_out"]
            assert 0 < run["referral_threshold"] < 1
            assert {"malignant_auc", "melanoma_nevus_auc", "sensitivity"} <= set(held)
    # "ham" never trains on the other archive, so both candidates see different data.
    other_fold = report["folds"]["rosendahl"]
    assert other_fold["ham"]["n_train"] < other_fold["all-srcbal-aug"]["n_train"]
    assert set(report["summary"]) == {"ham", "all-srcbal-aug"}
    assert "## Held out: rosendahl" in (out / "sources.md").read_text()


@pytest.mark.dataset
def test_real_archives_have_the_documented_sources(ham_dir: Path) -> None:
    if not (ISIC_ARCHIVE_DIR / "labels.csv").is_file():
        pytest.skip("isic-archive not present")
    samples, _ = load_sources([ham_dir, ISIC_ARCHIVE_DIR])
    sizes = Counter(s.source for s in samples)
    assert sizes == {
        "rosendahl": 2259,
        "vidir_modern": 3363,
        "vidir_molemax": 3954,
        "vienna_dias": 439,
        "isic-archive": 2884,
    }
    assert source_counts(samples)["isic-archive"] == {"bkl": 386, "mel": 546, "nv": 1952}


@pytest.mark.tf
def test_train_on_two_archives_with_a_held_out_source(
    two_archives: tuple[Path, Path], tmp_path: Path
) -> None:
    pytest.importorskip("tensorflow")
    from training.train import TrainConfig, _Data, train_weights

    ham, other = two_archives
    run = tmp_path / "run"
    argv = ["train", "--data", str(ham), "--data", str(other), "--run", str(run)]
    argv += ["--cache", str(tmp_path / "cache"), "--backbone", "tiny_cnn"]
    argv += ["--hold-out-source", "rosendahl", "--source-power", "0.5"]
    argv += ["--steps-per-epoch", "1", "--head-epochs", "1", "--finetune-epochs", "0"]
    argv += ["--deep-epochs", "0", "--batch-size", "4", "--threshold-confidence", "0"]
    assert main(argv) == 0
    with (run / "split.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    sources = Counter(r["dataset"] for r in rows)
    assert "rosendahl" not in sources and sources["other-clinic"] > 0
    assert {"vidir_modern", "vidir_molemax"} <= set(sources)
    provenance = json.loads((run / "provenance.json").read_text())
    assert provenance["held_out_source"] == "rosendahl"
    assert set(provenance["sources"]) == set(sources)
    assert sum(provenance["sources"]["other-clinic"].values()) == sources["other-clinic"]
    assert provenance["data_dirs"] == [str(ham.resolve()), str(other.resolve())]
    # The loss weights of the training split are class and source balanced.
    cfg = TrainConfig(**json.loads((run / "config.json").read_text()))
    data = _Data(cfg, run)
    weights = train_weights(cfg, data)
    chosen = data.by_split["train"][2]
    assert weights is not None and len(weights) == len(chosen)
    assert np.allclose(weights, balanced_weights(chosen, 0.5))
    cfg.source_power = 0.0
    assert train_weights(cfg, data) is None


def test_train_keeps_an_earlier_runs_split_and_adds_the_new_archive(
    two_archives: tuple[Path, Path], tmp_path: Path
) -> None:
    pytest.importorskip("tensorflow")
    ham, other = two_archives
    common = ["--cache", str(tmp_path / "cache"), "--backbone", "tiny_cnn"]
    common += ["--steps-per-epoch", "1", "--head-epochs", "1", "--finetune-epochs", "0"]
    common += ["--deep-epochs", "0", "--batch-size", "4", "--threshold-confidence", "0"]
    first = tmp_path / "ham-only"
    assert main(["train", "--data", str(ham), "--run", str(first), *common]) == 0
    second = tmp_path / "both"
    argv = ["train", "--data", str(ham), "--data", str(other), "--run", str(second)]
    assert main([*argv, "--keep-split", str(first / "split.csv"), *common]) == 0

    def splits(run: Path) -> dict[str, str]:
        with (run / "split.csv").open() as handle:
            return {r["image_id"]: r["split"] for r in csv.DictReader(handle)}

    before, after = splits(first), splits(second)
    assert {k: after[k] for k in before} == before
    assert {after[k] for k in set(after) - set(before)} == {"train", "val", "test"}
    config = json.loads((second / "config.json").read_text())
    assert config["keep_split"] == str((first / "split.csv").resolve())


def test_train_refuses_a_missing_split_to_keep(two_archives, tmp_path: Path, capsys) -> None:
    ham, _ = two_archives
    run = tmp_path / "run"
    code = main(["train", "--data", str(ham), "--run", str(run), "--keep-split", "nope.csv"])
    assert code != 0
    assert "--keep-split nope.csv: no such file" in capsys.readouterr().err
    assert not run.exists()


@pytest.mark.tf
def test_full_fold_trains_converts_and_evaluates_the_held_out_source(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    ham = _with_sources(write_synthetic_ham(tmp_path / "ham", per_class=100))
    out = tmp_path / "full"
    argv = ["bench", "sources", "--full", "--data", str(ham), "--out", str(out)]
    argv += ["--fold", "vidir_molemax", "--candidate", "ham", "--backbone", "tiny_cnn"]
    argv += ["--first-trainable-block", "block2", "--finetune-epochs", "1"]
    argv += ["--steps-per-epoch", "2", "--n-boot", "20", "--workers", "1"]
    argv += ["--threshold-confidence", "0"]
    assert main(argv) == 0
    report = json.loads((out / "full-folds.json").read_text())
    run = report["folds"]["vidir_molemax"]["ham"]
    held = run["held_out_figures"]
    molemax = [
        r
        for r in csv.DictReader((ham / "HAM10000_metadata.csv").open())
        if r["dataset"] == "vidir_molemax"
    ]
    assert held["n_images"] == len(molemax)
    manifest = json.loads((Path(run["bundle"]) / "manifest.json").read_text())
    assert run["referral_threshold"] == manifest["calibration"]["referral_threshold"]
    with (Path(run["run"]) / "split.csv").open() as handle:
        assert "vidir_molemax" not in {r["dataset"] for r in csv.DictReader(handle)}
    # The held-out predictions are kept, and the pooled threshold refers the target share
    # of the pooled melanomas (here one fold: its own melanomas).
    pooled = report["pooled_threshold"]["ham"]
    assert pooled["folds"] == ["vidir_molemax"]
    fold = pooled["per_fold"]["vidir_molemax"]
    assert fold["melanoma_sensitivity"] >= 0.90
    with np.load(out / "predictions" / "ham-vidir_molemax.npz") as data:
        assert len(data["labels"]) == held["n_images"]
        assert data["probabilities"].shape == (held["n_images"], 7)
    # A second call finds every step done and only re-evaluates.
    assert main(argv) == 0
    assert "| vidir_molemax | ham |" in (out / "full-folds.md").read_text()


def test_full_folds_can_use_the_shipped_recipe(tmp_path: Path) -> None:
    """``--deep-epochs N``: a fold trains like the shipped model (no top-block phase)."""
    import argparse

    from training.source_bench import configure
    from training.source_candidates import CANDIDATES
    from training.source_folds import fold_config

    parser = argparse.ArgumentParser()
    configure(parser)

    def config(*extra: str):
        args = parser.parse_args(
            ["--full", "--data", str(tmp_path), "--out", str(tmp_path), *extra]
        )
        return fold_config(args, tmp_path / "run", [tmp_path], "rosendahl", CANDIDATES["all"])

    short, shipped = config(), config("--deep-epochs", "14")
    assert (short.finetune_epochs, short.deep_epochs) == (3, 0)
    assert (shipped.finetune_epochs, shipped.deep_epochs) == (0, 14)
    assert shipped.deep_first_trainable_block == "block5"
    assert shipped.hold_out_source == short.hold_out_source == "rosendahl"
