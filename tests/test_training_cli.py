"""`skinscan train` command line: ablation flags change the recorded preprocessing spec."""

import argparse

import pytest

from device.errors import ConfigError
from device.imaging.pipeline import PreprocessSpec
from training.cli import _preprocessing, configure


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    configure(parser)
    return parser.parse_args(["--data", "x", *argv])


def test_defaults_keep_the_shipped_spec():
    base = PreprocessSpec().to_dict()
    assert _preprocessing(base, _args()) == base


def test_ablation_flags_reach_the_spec():
    spec = _preprocessing(
        PreprocessSpec().to_dict(), _args("--no-hair-removal", "--crop-min-fraction", "1.0")
    )
    assert spec["hair_removal"] is False
    assert spec["crop"]["min_fraction"] == 1.0
    assert PreprocessSpec.from_dict(spec).digest() != PreprocessSpec().digest()


@pytest.mark.parametrize("fraction", ["0", "1.5", "-0.2"])
def test_impossible_crop_is_a_config_error(fraction):
    with pytest.raises(ConfigError, match="min_fraction"):
        _preprocessing(PreprocessSpec().to_dict(), _args("--crop-min-fraction", fraction))


def test_split_seed_defaults_to_the_seed_and_can_be_held_fixed():
    from dataclasses import asdict

    from training.data import split_seed_of
    from training.train import TrainConfig

    assert _args("--seed", "3").split_seed is None
    assert split_seed_of(asdict(TrainConfig(data_dir="x", run_dir="r", seed=3))) == 3
    member = TrainConfig(data_dir="x", run_dir="r", seed=1, split_seed=0)
    assert split_seed_of(asdict(member)) == 0
    assert split_seed_of({"seed": 2}) == 2  # configs written before split_seed existed
    assert _args("--seed", "1", "--split-seed", "0").split_seed == 0


def test_backbone_is_chosen_from_the_registry(capsys):
    from training.backbones import BACKBONES

    assert _args().backbone is None  # TrainConfig's default stays efficientnet_lite0
    assert _args("--backbone", "mobilenet_v2").backbone == "mobilenet_v2"
    assert "mobilenet_v2" in BACKBONES
    with pytest.raises(SystemExit):
        _args("--backbone", "resnet9000")
    assert "invalid choice" in capsys.readouterr().err


def test_the_v3_recipe_is_spec_3_without_acquisition_augmentation():
    import json
    from pathlib import Path

    from training.augment import AugmentConfig
    from training.cli import recipe_overrides

    assert recipe_overrides("current") == {}
    v3 = recipe_overrides("v3")
    spec = PreprocessSpec.from_dict(v3["preprocessing"])
    assert spec.version == 3 and spec.colour.method == "none" and spec.crop.min_fraction == 1.0
    augment = AugmentConfig.from_dict(v3["augment"])
    assert augment.channel_gain == 0 and augment.blur_probability == 0
    assert augment.jpeg_probability == 0 and tuple(augment.gamma) == (1.0, 1.0)
    # The shipped run's recorded augmentation, for every field it had.
    recorded = json.loads(
        (Path(__file__).parents[1] / "training/reports/ham10000-v3/config.json").read_text()
    )
    for key, value in recorded["augment"].items():
        assert json.loads(json.dumps(v3["augment"][key])) == value, key
    assert v3["deep_epochs"] == recorded["deep_epochs"] == 16
    assert _args("--recipe", "v3").recipe == "v3"
    with pytest.raises(ValueError):
        recipe_overrides("v9")


@pytest.mark.parametrize("kind", ["missing", "empty", "no-images"])
def test_bad_data_leaves_no_run_folder_behind(tmp_path, kind, capsys):
    from device.cli import main

    data = tmp_path / "data"
    if kind != "missing":
        data.mkdir()
    if kind == "no-images":
        (data / "HAM10000_metadata.csv").write_text("lesion_id,image_id,dx\nL1,ISIC_1,nv\n")
    run = tmp_path / "runs" / "X"
    assert main(["train", "--data", str(data), "--run", str(run)]) == 2
    assert "skinscan train: error:" in capsys.readouterr().err
    assert not run.exists() and not run.parent.exists()


def test_an_existing_run_folder_is_kept_when_the_data_is_bad(tmp_path):
    from device.cli import main

    run = tmp_path / "X"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    assert main(["train", "--data", str(tmp_path / "nope"), "--run", str(run)]) == 2
    assert (run / "notes.txt").read_text() == "mine"
