"""Scripted buttons: parsing, waits, faults, files."""

from __future__ import annotations

import pytest

from device.errors import ConfigError
from device.hw.buttons import MultiButtons
from device.hw.buttons_script import ScriptButtons, Step, load_script, parse_script


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_parse_the_example_from_the_issue():
    steps = parse_script("capture, wait 1.5, toggle, next, save")
    assert steps == (
        Step("capture"),
        Step(seconds=1.5),
        Step("toggle"),
        Step("next"),
        Step("save"),
    )


def test_newlines_semicolons_comments_and_case():
    steps = parse_script("# a session\nCapture; fault blur\n\n  history  # browse\n")
    assert [s.event for s in steps] == ["capture", "fault:blur", "history"]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("capture, captur", r"step 2 'captur' is unknown"),
        ("wait", "wait SECONDS"),
        ("wait soon", "not a number"),
        ("wait -1", "0 to 3600"),
        ("fault smoke", "fault KIND"),
    ],
)
def test_bad_steps_are_named(text, match):
    with pytest.raises(ConfigError, match=match):
        parse_script(text)


def test_one_event_per_poll_and_waits_hold_back():
    clock = FakeClock()
    buttons = ScriptButtons(parse_script("capture, wait 1.5, toggle, save"), clock=clock)
    assert buttons.poll() == ["capture"]
    assert buttons.poll() == []  # the wait starts
    clock.advance(1.0)
    assert buttons.poll() == []
    clock.advance(0.6)
    assert buttons.poll() == ["toggle"]
    assert not buttons.finished
    assert buttons.poll() == ["save"]
    assert buttons.finished
    assert buttons.poll() == []


def test_a_trailing_wait_keeps_the_script_running():
    clock = FakeClock()
    buttons = ScriptButtons(parse_script("capture, wait 2"), clock=clock)
    buttons.poll()
    buttons.poll()
    assert not buttons.finished
    clock.advance(2.1)
    buttons.poll()
    assert buttons.finished


def test_script_from_a_file(tmp_path):
    path = tmp_path / "session.txt"
    path.write_text("capture\nwait 0.5\nsave\n")
    assert [s.event for s in load_script(str(path))] == ["capture", None, "save"]
    assert [s.event for s in load_script("capture, save")] == ["capture", "save"]


def test_multi_buttons_merges_sources_and_finishes_with_the_script():
    script = ScriptButtons(parse_script("save"))
    other = ScriptButtons(parse_script("capture, wait 100"))
    both = MultiButtons([script, other])
    assert both.poll() == ["save", "capture"]
    assert both.finished


@pytest.mark.parametrize("spec", ["session.txt", "scripts/visit-1", "./missing.script"])
def test_a_missing_script_file_is_reported_as_such(tmp_path, monkeypatch, spec):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=f"script file not found: {spec}"):
        load_script(spec)


def test_a_single_step_is_still_a_script(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert [s.event for s in load_script("patient")] == ["patient"]
    assert [s.seconds for s in load_script("wait 2.5")] == [2.5]


@pytest.mark.parametrize("spec", ["", "   ", "# only a comment\n", ", ;"])
def test_an_empty_script_is_refused(spec):
    with pytest.raises(ConfigError, match="script is empty"):
        load_script(spec)


def test_an_empty_script_file_is_refused(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match="script is empty"):
        load_script(str(path))


def test_patient_is_a_script_verb_and_every_verb_is_documented():
    from device.hw.buttons import BUTTON_EVENTS
    from device.hw.buttons_script import SCRIPT_HELP

    assert [s.event for s in parse_script("patient, capture")] == ["patient", "capture"]
    for verb in BUTTON_EVENTS:
        assert f"\n  {verb} " in SCRIPT_HELP, verb
    for needed in ("wait SECONDS", "fault KIND", "powers off", "Hold POWER", "Hold BACK"):
        assert needed in SCRIPT_HELP, needed
