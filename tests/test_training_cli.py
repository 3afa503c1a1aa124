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
