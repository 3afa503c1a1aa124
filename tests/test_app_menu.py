"""The menu (a long hold of NEXT): the controller's flow, and the App exporting to a stick,
freeing space with the clinic's receipt and installing a signed model, on real SQLite
records and a folder standing for the stick."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from app_fakes import make_app
from bundle_factory import make_bundle

from device.app.controller import initial_state, step, view
from device.app.events import (
    Analyzed,
    Button,
    CheckUsb,
    Failed,
    Frame,
    RunUsbTask,
    UsbChecked,
    UsbDone,
    UsbProgress,
)
from device.app.menu_state import MENU_ITEMS, MENU_TASKS, UsbOutcome
from device.app.systemd import Notifier
from device.errors import DiskFullError
from device.hw.buttons import BUTTON_EVENTS, HOLD_EVENTS, MENU_SHORTCUTS
from device.hw.usb import NoSticks, Stick, UsbReadOnlyError
from device.hw.usb_folder import FolderStick
from device.records.archive import write_receipt
from device.records.export import generate_clinic_keypair, load_private_key, open_export
from device.records.sqlite_store import SqliteScanStore
from device.records.testing import make_record
from device.ui.screens import (
    ErrorScreen,
    MenuScreen,
    PreviewScreen,
    ResultScreen,
    UsbBusyScreen,
    UsbResultScreen,
)

# ---- the controller ---------------------------------------------------------------------------


def run(state, *events):
    screen = None
    for event in events:
        state, screen = step(state, event)
    return state, screen


def frame() -> Frame:
    return Frame(np.zeros((48, 64, 3), np.uint8), (10, 10, 30, 30), True, None, 30)


def live():
    return run(initial_state(), frame())[0]


def test_the_menu_is_a_long_hold_of_next_and_the_live_view_says_so():
    assert HOLD_EVENTS["next"] == "menu"
    hints = view(live()).hints
    assert ("menu", "Menu") in [(h.button, h.action) for h in hints]
    state, screen = step(live(), Button("menu"))
    assert isinstance(screen, MenuScreen) and state.commands == (CheckUsb(),)
    assert screen.items == tuple(label for _, label in MENU_ITEMS)
    assert screen.items == ("Export to USB", "Free space", "Update model", "Roll back model")
    assert screen.stick.startswith("Looking") and not screen.stick_found
    _state, screen = step(state, UsbChecked(("KINGSTON",)))
    assert screen.stick == "USB stick: KINGSTON" and screen.stick_found
    _state, screen = step(state, UsbChecked(()))
    assert "No USB stick" in screen.stick and not screen.stick_found


def test_the_menu_is_walked_with_next_and_toggle_and_chosen_with_capture():
    state, screen = run(live(), Button("menu"))
    for expected in (1, 2, 3, 0):
        state, screen = step(state, Button("next"))
        assert screen.index == expected
    state, screen = step(state, Button("toggle"))
    assert screen.index == 3 and "before" in screen.help
    state, screen = run(state, Button("toggle"), Button("toggle"), Button("toggle"))
    assert screen.index == 0
    state, screen = step(state, Button("capture"))
    assert state.mode == "usb_busy" and state.commands == (RunUsbTask("export"),)
    assert isinstance(screen, UsbBusyScreen) and screen.title == "Export to USB"
    # Buttons wait while the task runs; progress shows.
    state, screen = run(state, Button("back"), Button("next"))
    assert state.mode == "usb_busy"
    state, screen = step(state, UsbProgress("Exporting scan 3 of 12…", 2, 12))
    assert (screen.text, screen.done, screen.total) == ("Exporting scan 3 of 12…", 2, 12)
    files = ("skinscan-x-p001.sealed",)
    outcome = UsbOutcome("export", True, "Exported 12 scans", ("Sealed.",), files, "Next.", True)
    state, screen = step(state, UsbDone(outcome))
    assert isinstance(screen, UsbResultScreen)
    assert (screen.title, screen.files, screen.removable) == (
        "Exported 12 scans", ("skinscan-x-p001.sealed",), True)  # fmt: skip
    state, screen = step(state, Button("capture"))
    assert isinstance(screen, MenuScreen) and state.commands == (CheckUsb(),)
    state, screen = step(state, Button("back"))
    assert isinstance(screen, PreviewScreen)


def test_closing_the_menu_goes_back_where_it_was_opened():
    from app_fakes import sample_result

    result_state, _ = run(live(), Button("capture"), Analyzed(sample_result()))
    _state, screen = run(result_state, Button("menu"), Button("back"))
    assert isinstance(screen, ResultScreen)
    saving, _ = step(result_state, Button("save"))
    if saving.mode != "result":  # a scan without a patient asks once: "Save anyway"
        saving, _ = step(saving, Button("save"))
    full, screen = step(saving, Failed("disk_full", "1 MiB free"))
    assert isinstance(screen, ErrorScreen)
    assert "menu" in [h.button for h in screen.hints]
    _state, screen = run(full, Button("menu"), Button("back"))
    assert isinstance(screen, ErrorScreen) and screen.problem == "disk_full"


def test_the_menu_does_not_open_while_a_scan_is_analysed():
    state, _ = run(live(), Button("capture"))
    assert state.mode == "analyzing"
    state, _ = step(state, Button("menu"))
    assert state.mode == "analyzing"


@pytest.mark.parametrize("task", MENU_TASKS)
def test_each_script_verb_runs_its_menu_entry_from_the_live_view(task):
    assert task in MENU_SHORTCUTS
    state, screen = step(live(), Button(task))
    assert state.mode == "usb_busy" and state.commands == (RunUsbTask(task),)
    assert screen.title == dict(MENU_ITEMS)[task]


def test_the_storage_full_steps_point_to_the_menu_not_a_shell():
    from device.app.error_flow import FREE_SPACE_STEPS

    text = " ".join(FREE_SPACE_STEPS)
    assert "skinscan" not in text and "/media" not in text
    marks = [text.find(s) for s in ("Menu", "Export to USB", "clinic", "receipt", "Free space")]
    assert -1 not in marks and marks == sorted(marks), text


def test_menu_screens_name_only_real_buttons():
    state, _ = run(live(), Button("menu"))
    screens = [view(state)]
    state, _ = step(state, Button("capture"))
    state, _ = step(state, UsbDone(UsbOutcome("export", False, "No USB stick found")))
    screens.append(view(state))
    for screen in screens:
        assert screen.hints
        assert {h.button for h in screen.hints} <= set(BUTTON_EVENTS)


# ---- the App on real records ------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundle") / "bundle")


class CountingNotifier(Notifier):
    """Counts watchdog pings (always due)."""

    def __init__(self) -> None:
        super().__init__(environ={})
        self.pings = 0

    def watchdog(self) -> bool:
        self.pings += 1
        return False


class StayingOpen(SqliteScanStore):
    """The App closes its store when it stops; the test reads it afterwards."""

    def close(self) -> None:
        pass


@pytest.fixture
def records(tmp_path, monkeypatch):
    """Three saved scans in a real store, the clinic's key pair, and the stick folder."""
    monkeypatch.delenv("SKINSCAN_CLINIC_PUBLIC_KEY", raising=False)
    data = tmp_path / "data"
    store = StayingOpen(data)
    ids = [store.save(make_record(seed, device_id=store.device_id)) for seed in range(3)]
    private, public = generate_clinic_keypair(tmp_path / "clinic")
    (data / "clinic.pub").write_bytes(public.read_bytes())
    stick = tmp_path / "STICK"
    stick.mkdir()
    yield store, ids, private, stick
    SqliteScanStore.close(store)


def menu_app(tmp_path, script, bundle_dir, store, usb, **kw):
    app = make_app(tmp_path, script, bundle_dir=bundle_dir, store=store, **kw)
    app.usb = usb
    return app


def done_screen(app) -> UsbResultScreen:
    return [s for s in app.screens_shown if isinstance(s, UsbResultScreen)][-1]


def test_export_to_usb_writes_the_sealed_export_the_clinic_opens(tmp_path, bundle_dir, records):
    store, ids, private, stick = records
    usb = FolderStick(stick)
    notifier = CountingNotifier()
    app = menu_app(tmp_path, "menu, wait 0.1, capture, wait 0.1", bundle_dir, store, usb,
                   notifier=notifier)  # fmt: skip
    app.run()
    files = sorted(stick.glob("*.sealed"))
    assert len(files) == 1
    opened = open_export(files[0], load_private_key(private))
    assert sorted(r.scan_id for r in opened.records) == sorted(ids)
    assert opened.receipt_proof  # the clinic's receipt can free space later
    done = done_screen(app)
    assert done.ok and done.title == "Exported 3 scans" and done.files == (files[0].name,)
    assert "bring back its receipt" in done.next_step and done.removable
    assert usb.released == 1
    busy = [s for s in app.screens_shown if isinstance(s, UsbBusyScreen)]
    assert busy and busy[0].title == "Export to USB"
    assert notifier.pings >= len(ids)  # fed while each scan is written
    assert len(store) == 3  # an export removes nothing


def test_free_space_uses_the_clinic_receipt_on_the_stick(tmp_path, bundle_dir, records):
    store, ids, private, stick = records
    app = menu_app(tmp_path / "a", "export, wait 0.1", bundle_dir, store, FolderStick(stick))
    app.run()
    (export,) = stick.glob("skinscan-2*.sealed")
    opened = open_export(export, load_private_key(private))
    write_receipt(opened, stick / "skinscan-receipt-abc.json")
    store.save(make_record(99, device_id=store.device_id))  # made after the export
    app = menu_app(tmp_path / "b", "free-space, wait 0.1", bundle_dir, store, FolderStick(stick))
    app.run()
    done = done_screen(app)
    assert done.ok and done.title == "Freed the space of 3 scans", done
    assert any("not confirmed yet" in line for line in done.lines)
    (archive,) = stick.glob("skinscan-archive-*.sealed")
    assert done.files == (archive.name,) and done.removable
    archived = open_export(archive, load_private_key(private))
    assert sorted(r.scan_id for r in archived.records) == sorted(ids)
    assert len(store) == 1  # only the scan the clinic has not seen stays


def test_free_space_without_a_receipt_says_what_to_bring(tmp_path, bundle_dir, records):
    store, _ids, _private, stick = records
    app = menu_app(tmp_path, "free-space, wait 0.1", bundle_dir, store, FolderStick(stick))
    app.run()
    done = done_screen(app)
    assert not done.ok and done.title == "No receipt from the clinic on this stick"
    assert "receipt" in done.next_step and len(store) == 3


def test_no_stick_no_key_a_full_and_a_read_only_stick_are_said_and_lose_nothing(
    tmp_path, bundle_dir, records, monkeypatch
):
    store, _ids, _private, stick = records
    app = menu_app(tmp_path / "a", "export, wait 0.1", bundle_dir, store, NoSticks())
    app.run()
    assert done_screen(app).title == "No USB stick found"
    assert "Plug a USB stick" in done_screen(app).next_step

    class ReadOnlyStick(FolderStick):
        def mount(self, stick: Stick) -> Path:
            raise UsbReadOnlyError("the USB stick cannot be written: [Errno 30] Read-only")

    app = menu_app(tmp_path / "b", "export, wait 0.1", bundle_dir, store, ReadOnlyStick(stick))
    app.run()
    assert done_screen(app).title == "The USB stick cannot be written"
    assert "write-protect" in done_screen(app).next_step

    def full(*args, **kwargs):
        raise DiskFullError(f"the export medium is full: {stick}")

    monkeypatch.setattr("device.records.export.export_records", full)
    usb = FolderStick(stick)
    app = menu_app(tmp_path / "c", "export, wait 0.1", bundle_dir, store, usb)
    app.run()
    done = done_screen(app)
    assert done.title == "The USB stick is full" and not done.ok
    assert any("Nothing was lost" in line for line in done.lines)
    assert usb.released == 1 and done.removable  # released even when the export failed
    monkeypatch.undo()

    (store.data_dir / "clinic.pub").unlink()
    app = menu_app(tmp_path / "d", "export, wait 0.1", bundle_dir, store, FolderStick(stick))
    app.run()
    assert done_screen(app).title == "No clinic key on this scanner"
    assert "--clinic-key" in done_screen(app).next_step
    assert list(stick.iterdir()) == [] and len(store) == 3


# ---- update model -----------------------------------------------------------------------------


@pytest.fixture
def model_setup(tmp_path, bundle_dir, monkeypatch):
    """A scanner config trusting one signing key, running the tiny bundle, and a stick."""
    from device.bundles.keys import generate_signing_keypair
    from device.config import load_config

    monkeypatch.delenv("SKINSCAN_DATA_DIR", raising=False)
    private, public = generate_signing_keypair(tmp_path / "signing")
    data = tmp_path / "data"
    config_file = tmp_path / "config.toml"
    config_file.write_text(
        f'[model]\nbundle = "{bundle_dir}"\ntrusted_keys = ["{public}"]\n'
        f'[records]\ndata_dir = "{data}"\n'
    )
    stick = tmp_path / "STICK"
    stick.mkdir()
    store = StayingOpen(data)
    yield load_config(config_file), private, stick, store
    SqliteScanStore.close(store)


def signed_copy(dest: Path, key: Path, bundle_id: str) -> Path:
    from device.bundles.signing import sign_bundle

    make_bundle(dest, bundle_id=bundle_id)
    sign_bundle(dest, key)
    return dest


def model_app(tmp_path, script, config, store, stick):
    from device.bundles.active import ActiveAnalyzerLoader
    from device.bundles.settings import open_bundle_store

    app = make_app(tmp_path, script, bundle_dir=None, store=store,
                   load_analyzer=ActiveAnalyzerLoader(config))  # fmt: skip
    app.usb = FolderStick(stick)
    app.open_bundle_store = lambda: open_bundle_store(config)
    return app


def test_update_model_installs_the_signed_bundle_on_the_stick(tmp_path, model_setup):
    config, key, stick, store = model_setup
    signed_copy(stick / "site-bundle", key, "tiny-site")
    app = model_app(tmp_path / "a", "update-model, wait 0.1", config, store, stick)
    app.run()
    done = done_screen(app)
    assert done.ok and done.title == "New model installed", done
    assert app.analyzer.bundle.bundle_id == "tiny-site"  # running now
    # Roll back: the bundle that ran before returns (the configured one: nothing installed
    # before, so the store has no previous and says so).
    app = model_app(tmp_path / "b", "rollback-model, wait 0.1", config, store, stick)
    app.run()
    assert app.analyzer.bundle.bundle_id == "tiny-site"
    assert done_screen(app).title == "No earlier model to go back to"


def test_a_bad_bundle_is_refused_on_screen_and_the_running_one_kept(tmp_path, model_setup):
    config, key, stick, store = model_setup
    bundle = signed_copy(stick / "site-bundle", key, "tiny-site")
    model = bundle / "model.tflite"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    app = model_app(tmp_path / "a", "update-model, wait 0.1", config, store, stick)
    app.run()
    done = done_screen(app)
    assert not done.ok and done.title.startswith("Model refused"), done
    assert any("running model is kept: tiny-test" in line for line in done.lines), done.lines
    assert app.analyzer.bundle.bundle_id == "tiny-test"
    (bundle / "manifest.sig").unlink()
    app = model_app(tmp_path / "b", "update-model, wait 0.1", config, store, stick)
    app.run()
    assert done_screen(app).title == "Model refused: not signed"


def test_two_installs_then_roll_back_restores_the_first(tmp_path, model_setup):
    import shutil

    config, key, stick, store = model_setup
    signed_copy(stick / "b1", key, "tiny-one")
    app = model_app(tmp_path / "a", "update-model, wait 0.1", config, store, stick)
    app.run()
    shutil.rmtree(stick / "b1")
    signed_copy(stick / "b2", key, "tiny-two")
    app = model_app(tmp_path / "b", "update-model, wait 0.1", config, store, stick)
    app.run()
    assert app.analyzer.bundle.bundle_id == "tiny-two"
    app = model_app(tmp_path / "c", "menu, toggle, capture, wait 0.1", config, store, stick)
    app.run()
    assert done_screen(app).title == "Back to the previous model"
    assert app.analyzer.bundle.bundle_id == "tiny-one"


def test_outcomes_keep_every_field_when_released():
    outcome = UsbOutcome("export", True, "Exported 1 scan", ("a",), ("f",), "next", False, "S")
    assert replace(outcome, removable=True).files == ("f",)


def test_the_open_menu_notices_a_stick_plugged_in_and_pulled_out(tmp_path, bundle_dir):
    stick = tmp_path / "STICK"
    app = make_app(tmp_path, "wait 0", bundle_dir=bundle_dir)
    app.usb = FolderStick(stick)
    app.dispatch(Button("menu"))
    assert app.state.mode == "menu" and app.state.menu.sticks == ()
    stick.mkdir()
    app.poll_usb()  # polled just now: not yet
    assert app.state.menu.sticks == ()
    app._usb_polled = 0.0
    app.poll_usb()
    assert app.state.menu.sticks == ("STICK",) and app.screen.stick == "USB stick: STICK"
    stick.rmdir()
    app._usb_polled = 0.0
    app.poll_usb()
    assert app.state.menu.sticks == () and "No USB stick" in app.screen.stick


def flip_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_export_costs_a_damaged_scan_only_what_is_damaged(tmp_path, bundle_dir, records):
    store, ids, private, stick = records
    flip_byte(store.images_dir / f"{ids[0]}.heatmap")  # the photo and result are intact
    flip_byte(store.images_dir / f"{ids[1]}.image")  # the photo itself is damaged
    app = menu_app(tmp_path, "export, wait 0.1", bundle_dir, store, FolderStick(stick))
    app.run()
    (export,) = stick.glob("*.sealed")
    opened = {r.scan_id: r for r in open_export(export, load_private_key(private)).records}
    assert sorted(opened) == sorted([ids[0], ids[2]])
    assert opened[ids[0]].heatmap is None and opened[ids[2]].heatmap is not None
    done = done_screen(app)
    assert done.ok and done.title == "Exported 2 scans"
    assert any("1 scan went without" in line for line in done.lines), done.lines
    assert any("1 scan could not be read" in line for line in done.lines), done.lines
    assert len(store) == 3


def test_presses_made_while_a_task_runs_do_not_dismiss_its_outcome(tmp_path, bundle_dir, records):
    from device.hw.buttons import MultiButtons
    from device.hw.buttons_script import ScriptButtons, parse_script

    store, _ids, _private, stick = records

    class Impatient:
        """GPIO-like: CAPTURE pressed twice while the export runs."""

        labels: dict[str, str] = {}  # noqa: RUF012

        def __init__(self) -> None:
            self.queue: list[str] = []

        def poll(self) -> list[str]:
            events, self.queue = self.queue, []
            return events

        def close(self) -> None:
            pass

    impatient = Impatient()

    class Stick(FolderStick):
        def mount(self, stick_: Stick) -> Path:
            impatient.queue += ["capture", "capture"]
            return super().mount(stick_)

    app = menu_app(tmp_path, "wait 0", bundle_dir, store, Stick(stick))
    app.buttons = MultiButtons([ScriptButtons(parse_script("export, wait 0.3")), impatient])
    app.run()
    assert app.state.mode == "usb_done" and isinstance(app.screen, UsbResultScreen)
    assert impatient.queue == []


def test_the_watchdog_is_fed_while_a_task_works_without_progress(
    tmp_path, bundle_dir, records, monkeypatch
):
    import threading
    import time

    store, _ids, _private, stick = records
    monkeypatch.setattr("device.app.usb_flow_actions.TASK_WATCHDOG_EVERY_S", 0.05)
    threads: list[str] = []

    class Recording(Notifier):
        def __init__(self) -> None:
            super().__init__(environ={})

        def watchdog(self) -> bool:
            threads.append(threading.current_thread().name)
            return False

    class SlowStick(FolderStick):
        def mount(self, stick_: Stick) -> Path:
            time.sleep(0.6)  # e.g. udisks taking its time; no progress meanwhile
            return super().mount(stick_)

    app = menu_app(tmp_path, "export, wait 0.1", bundle_dir, store, SlowStick(stick),
                   notifier=Recording())  # fmt: skip
    app.run()
    assert done_screen(app).ok
    assert threads.count("usb-task-watchdog") >= 5
    assert not any(t.name == "usb-task-watchdog" for t in threading.enumerate())  # stopped


def test_a_large_export_in_many_parts_names_the_first_and_last_and_how_many():
    names = tuple(f"skinscan-20261207T121616-a0601a74-p{i:03d}.sealed" for i in range(1, 17))
    state, _ = run(live(), Button("export"))
    _state, screen = step(state, UsbDone(UsbOutcome("export", True, "Exported 500 scans",
                                                    files=names, removable=True)))  # fmt: skip
    assert screen.files == (names[0], names[-1])
    assert any(line.startswith("16 files on the stick") for line in screen.lines)
    _state, screen = step(state, UsbDone(UsbOutcome("export", True, "x", files=names[:3])))
    assert screen.files == names[:3]
