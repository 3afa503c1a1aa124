"""`skinscan --help` and `skinscan bench --help` list every command, each with a one-line help."""

from __future__ import annotations

import builtins
import subprocess
import sys

import pytest

from device.bench.cli import LAZY_TARGETS, TARGETS
from device.cli import SUBCOMMANDS, build_parser


def _help(argv: list[str]) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "device.cli", *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _listed(help_text: str, name: str, line: str) -> bool:
    words = " ".join(help_text.split())
    return f" {name} {' '.join(line.split()[:3])}" in words


def test_top_level_help_lists_every_command_with_its_line():
    text = _help(["--help"])
    for name, (_, line) in SUBCOMMANDS.items():
        assert _listed(text, name, line), name
    for name in ("run", "train", "serve", "eval", "records", "bench", "calibrate-quality"):
        assert name in SUBCOMMANDS


def test_top_level_help_says_what_each_folder_option_means():
    text = " ".join(_help(["--help"]).split())
    assert "--data DIR" in text and "--data-dir DIR" in text


def test_bench_help_lists_every_target_with_its_line():
    text = _help(["bench", "--help"])
    for name, (_, line) in {**TARGETS, **LAZY_TARGETS}.items():
        assert _listed(text, name, line), name


def test_a_command_that_cannot_load_here_is_still_listed(monkeypatch, capsys):
    real_import = builtins.__import__

    def no_clinic(name, *args, **kwargs):
        if "clinic" in name or name.startswith("training.cli"):
            raise ImportError(f"No module named {name!r} (simulated device install)")
        return real_import(name, *args, **kwargs)

    for module in [m for m in sys.modules if "clinic" in m or m == "training.cli"]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setattr(builtins, "__import__", no_clinic)
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    text = capsys.readouterr().out
    for name in ("serve", "train"):
        assert _listed(text, name, SUBCOMMANDS[name][1]), name


def test_every_train_option_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    train = sub.choices["train"]
    missing = [a.option_strings for a in train._actions if a.option_strings and not a.help]
    assert missing == []
