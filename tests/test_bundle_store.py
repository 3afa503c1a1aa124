"""The scanner's bundle store: install, every refusal keeping the running bundle, rollback,
crash points, start-up choice, and ``skinscan bundle``."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from signed_bundles import adapted_bundle, make_keys, rewrite_manifest, signed_bundle

from device.bundles import BundleStore, load_active_bundle, sign_bundle
from device.bundles.active import ActiveAnalyzerLoader
from device.bundles.store import STEPS
from device.errors import (
    BundleBaseMismatchError,
    BundleChecksumError,
    BundleError,
    BundlePreprocessingError,
    BundleSignatureError,
    BundleStoreError,
    BundleUnsignedError,
    BundleUntrustedKeyError,
    DiskFullError,
)
from device.runtime.manifest import MANIFEST_NAME


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path, dict[str, bytes]]:
    return make_keys(tmp_path / "keys")


@pytest.fixture
def store(tmp_path: Path, keys) -> BundleStore:
    return BundleStore(tmp_path / "store", keys[2])


def snapshot(store: BundleStore) -> tuple[bytes, list[str]]:
    """The pointer file's bytes and the store's folder listing."""
    names = sorted(p.name for p in (store.root / "installed").iterdir())
    return (store.root / "state.json").read_bytes(), names


# ---- install and rollback --------------------------------------------------------------------


def test_install_copies_verifies_and_switches_keeping_the_previous(tmp_path, keys, store):
    first = signed_bundle(tmp_path / "first", keys[0], bundle_id="site-v1")
    second = signed_bundle(
        tmp_path / "second", keys[0], bundle_id="site-v2", calibration={"referral_threshold": 0.3}
    )
    assert store.current() is None and store.status().current is None
    steps: list[str] = []
    result = store.install(first, progress=steps.append)
    assert steps == list(STEPS)
    assert result.changed and result.previous is None
    assert result.message == "Installed site-v1."
    assert store.current() == store.root / "installed" / result.current.dir
    assert store.load_current().bundle_id == "site-v1"

    result = store.install(second)
    assert result.message == "Installed site-v2. Kept site-v1 for rollback."
    assert store.load_current().bundle_id == "site-v2"
    assert store.previous() is not None
    status = store.status()
    assert (status.current.bundle_id, status.previous.bundle_id) == ("site-v2", "site-v1")
    assert status.current.key_id == next(iter(keys[2]))
    assert status.lines()[0] == "Running: site-v2"
    assert status.lines()[-1] == "Previous (for rollback): site-v1"
    # The copy is the store's own: removing the stick's folder changes nothing.
    shutil.rmtree(second)
    assert store.load_current().bundle_id == "site-v2"


def test_a_third_install_drops_the_oldest_and_only_two_copies_stay(tmp_path, keys, store):
    for n in range(3):
        b = signed_bundle(tmp_path / f"b{n}", keys[0], bundle_id=f"v{n}", metrics={"n": n})
        store.install(b)
    status = store.status()
    assert (status.current.bundle_id, status.previous.bundle_id) == ("v2", "v1")
    assert sorted(p.name for p in (store.root / "installed").iterdir()) == sorted(
        [status.current.dir, status.previous.dir]
    )


def test_installing_the_running_bundle_again_changes_nothing(tmp_path, keys, store):
    b = signed_bundle(tmp_path / "b", keys[0])
    store.install(b)
    before = snapshot(store)
    result = store.install(b)
    assert not result.changed and "already the running bundle" in result.message
    assert snapshot(store) == before


def test_rollback_restores_the_previous_bundle_and_can_be_undone(tmp_path, keys, store):
    with pytest.raises(BundleStoreError, match="none to go back to"):
        store.rollback()
    store.install(signed_bundle(tmp_path / "a", keys[0], bundle_id="a"))
    with pytest.raises(BundleStoreError, match="No previous bundle"):
        store.rollback()
    store.install(signed_bundle(tmp_path / "b", keys[0], bundle_id="b"))
    result = store.rollback()
    assert result.message == "Restored a. b is kept as previous."
    assert BundleStore(store.root, store.trusted_keys).load_current().bundle_id == "a"
    store.rollback()
    assert store.load_current().bundle_id == "b"


def test_rollback_refuses_a_previous_bundle_that_no_longer_verifies(tmp_path, keys, store):
    store.install(signed_bundle(tmp_path / "a", keys[0], bundle_id="a"))
    store.install(signed_bundle(tmp_path / "b", keys[0], bundle_id="b"))
    model = store.previous() / "model.tflite"
    data = bytearray(model.read_bytes())
    data[10] ^= 1
    model.write_bytes(bytes(data))
    before = snapshot(store)
    with pytest.raises(BundleChecksumError):
        store.rollback()
    assert snapshot(store) == before
    assert store.load_current().bundle_id == "b"


# ---- refusals keep the running bundle ---------------------------------------------------------


def _flip(path: Path, where: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[where % len(data)] ^= 0x01
    path.write_bytes(bytes(data))


def _unsigned(tmp, keys):
    return signed_bundle(tmp / "x", None)


def _wrong_key(tmp, keys):
    other, _, _ = make_keys(tmp / "other-keys")
    return signed_bundle(tmp / "x", other)


def _manifest_byte(tmp, keys):
    b = signed_bundle(tmp / "x", keys[0])
    text = (b / MANIFEST_NAME).read_bytes()
    (b / MANIFEST_NAME).write_bytes(text.replace(b'"tiny-test"', b'"tiny-tesu"', 1))
    return b


def _file_byte(name):
    def build(tmp, keys):
        b = adapted_bundle(tmp / "x", keys[0], base=_installed_base(tmp, keys))
        _flip(b / name)
        return b

    return build


def _truncated(tmp, keys):
    b = signed_bundle(tmp / "x", keys[0])
    data = (b / "model.tflite").read_bytes()
    (b / "model.tflite").write_bytes(data[:-1000])
    return b


def _other_trunk(tmp, keys):
    return adapted_bundle(
        tmp / "x", keys[0], base=_installed_base(tmp, keys),
        adaptation={"base_model_sha256": "ab" * 32},
    )  # fmt: skip


def _other_spec(tmp, keys):
    b = signed_bundle(tmp / "x", None)
    preprocessing = json.loads((b / MANIFEST_NAME).read_text())["preprocessing"]
    rewrite_manifest(b, {"preprocessing": {**preprocessing, "version": 5}})
    from device.bundles.keys import load_signing_key
    from device.bundles.signing import signature_document

    sig = signature_document((b / MANIFEST_NAME).read_bytes(), load_signing_key(keys[0]))
    (b / "manifest.sig").write_text(json.dumps(sig))
    return b


def _adapted_other_spec(tmp, keys):
    return adapted_bundle(
        tmp / "x", keys[0], base=_installed_base(tmp, keys),
        adaptation={"base_preprocessing_sha256": "cd" * 32},
    )  # fmt: skip


def _installed_base(tmp, keys):
    # The running bundle's own folder on the "stick": adapted bundles are made from it.
    return tmp / "running"


REFUSALS = {
    "unsigned": (_unsigned, BundleUnsignedError),
    "wrong key": (_wrong_key, BundleUntrustedKeyError),
    "one byte changed in manifest.json": (_manifest_byte, BundleSignatureError),
    "one byte changed in model.tflite": (_file_byte("model.tflite"), BundleChecksumError),
    "one byte changed in gradcam.tflite": (_file_byte("gradcam.tflite"), BundleChecksumError),
    "one byte changed in head.npz": (_file_byte("head.npz"), BundleChecksumError),
    "truncated": (_truncated, BundleChecksumError),
    "manifest from another base trunk": (_other_trunk, BundleBaseMismatchError),
    "another preprocessing spec": (_other_spec, BundlePreprocessingError),
    "adapted for another preprocessing spec": (_adapted_other_spec, BundlePreprocessingError),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_every_bad_bundle_is_refused_and_the_running_bundle_is_kept(tmp_path, keys, store, case):
    running = signed_bundle(tmp_path / "running", keys[0])
    store.install(running)
    before = snapshot(store)
    build, error = REFUSALS[case]
    bad = build(tmp_path, keys)
    with pytest.raises(error) as refused:
        store.install(bad)
    assert str(refused.value), "a refusal must say why"
    assert snapshot(store) == before  # no pointer change, no copy left behind
    assert store.load_current().bundle_id == "tiny-test"
    assert BundleStore(store.root, keys[2]).load_current().bundle_id == "tiny-test"


def test_the_copy_is_verified_not_the_source(tmp_path, keys, store, monkeypatch):
    # A stick whose file changes between copy and check (or a bad copy): the copy decides.
    import device.bundles.store as store_module

    store.install(signed_bundle(tmp_path / "running", keys[0], bundle_id="running"))
    good = signed_bundle(tmp_path / "good", keys[0], bundle_id="good")
    real_copy = store_module.copy_bundle

    def copy_then_damage(source: Path, staging: Path) -> None:
        real_copy(source, staging)
        _flip(staging / "gradcam.tflite")

    monkeypatch.setattr(store_module, "copy_bundle", copy_then_damage)
    with pytest.raises(BundleChecksumError, match=r"gradcam\.tflite"):
        store.install(good)
    assert store.load_current().bundle_id == "running"


def test_a_disk_that_fills_up_during_the_copy_changes_nothing(tmp_path, keys, store, monkeypatch):
    import errno

    import device.bundles.staging as staging

    store.install(signed_bundle(tmp_path / "running", keys[0], bundle_id="running"))
    before = snapshot(store)
    new = signed_bundle(tmp_path / "new", keys[0], bundle_id="new")
    real_write = os.write
    written = [0]

    def write_until_full(fd: int, data) -> int:
        written[0] += len(data)
        if written[0] > 20_000:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(staging.os, "write", write_until_full)
    with pytest.raises(DiskFullError, match="Storage full while copying"):
        store.install(new)
    monkeypatch.undo()
    assert snapshot(store) == before
    assert store.load_current().bundle_id == "running"
    assert store.install(new).current.bundle_id == "new"


def test_an_adapted_bundle_must_come_from_a_trunk_this_scanner_runs(tmp_path, keys, store):
    base = signed_bundle(tmp_path / "base", keys[0], bundle_id="base")
    adapted = adapted_bundle(tmp_path / "adapted", keys[0], base=base)
    with pytest.raises(BundleBaseMismatchError, match="never run"):
        store.install(adapted)  # the tiny trunk is not the shipped one
    store.install(base)
    result = store.install(adapted)
    assert result.current.adaptation == "adapted for clinic-north, 2026-12-07"
    assert result.current.label == "base-clinic-north (adapted for clinic-north, 2026-12-07)"
    assert store.status().lines()[0] == f"Running: {result.current.label}"
    # Known once installed: after rolling back to the base, the adapted one may come back.
    store.rollback()
    assert store.load_current().bundle_id == "base"


def test_an_install_while_another_runs_is_refused(tmp_path, keys, store):
    store.install(signed_bundle(tmp_path / "a", keys[0], bundle_id="a"))
    with store._locked(), pytest.raises(BundleStoreError, match="Another bundle install"):
        BundleStore(store.root, keys[2]).install(signed_bundle(tmp_path / "b", keys[0]))
    assert store.load_current().bundle_id == "a"


def test_leftovers_of_a_cut_install_are_removed_by_the_next_store(tmp_path, keys, store):
    store.install(signed_bundle(tmp_path / "a", keys[0], bundle_id="a"))
    installed = store.root / "installed"
    (installed / ".tmp-install-1-dead").mkdir()
    (installed / ".tmp-install-1-dead" / "model.tflite").write_bytes(b"partial")
    (installed / "b-9").mkdir()  # renamed into place, but the pointer never switched
    (store.root / ".tmp-state.json-1-dead").write_bytes(b"{")
    BundleStore(store.root, keys[2])
    assert sorted(p.name for p in installed.iterdir()) == [store.status().current.dir]
    assert not list(store.root.glob(".tmp-*"))
    assert store.load_current().bundle_id == "a"


@pytest.mark.parametrize("step", STEPS)
def test_a_process_killed_at_each_step_leaves_a_loadable_bundle(tmp_path, keys, store, step):
    store.install(signed_bundle(tmp_path / "a", keys[0], bundle_id="a"))
    new = signed_bundle(tmp_path / "b", keys[0], bundle_id="b")

    def die_at(name: str) -> None:
        if name == step:
            os._exit(0)  # no clean-up, no finally: as close to a power cut as a process gets

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            BundleStore(store.root, keys[2]).install(new, progress=die_at)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0, "the child did not reach the step"
    fresh = BundleStore(store.root, keys[2])
    expected = "b" if step == "cleaning" else "a"
    assert fresh.load_current().bundle_id == expected
    left = sorted(p.name for p in (store.root / "installed").iterdir())
    assert left == sorted(fresh.state().referenced_dirs())


# ---- start-up --------------------------------------------------------------------------------


def _config(tmp_path: Path, bundle: str = "") -> object:
    from device.config import load_config

    toml = tmp_path / "config.toml"
    toml.write_text(f'[model]\nbundle = "{bundle}"\n')
    return load_config(toml)


def test_startup_runs_the_installed_bundle_else_the_previous_with_a_notice(tmp_path, keys, store):
    config = _config(tmp_path)
    opener = lambda _config: BundleStore(store.root, keys[2])  # noqa: E731
    active = load_active_bundle(config, open_store=opener)
    assert (active.origin, active.notices) == ("shipped", ())

    store.install(signed_bundle(tmp_path / "a", keys[0], bundle_id="a"))
    store.install(signed_bundle(tmp_path / "b", keys[0], bundle_id="b"))
    active = load_active_bundle(config, open_store=opener)
    assert (active.origin, active.bundle.bundle_id, active.notices) == ("installed", "b", ())

    _flip(store.current() / "model.tflite")
    active = load_active_bundle(config, open_store=opener)
    assert (active.origin, active.bundle.bundle_id) == ("previous", "a")
    assert "The installed bundle b failed" in active.notices[0]
    assert active.notices[-1] == "Running the previous bundle, a."

    _flip(store.previous() / "gradcam.tflite")
    active = load_active_bundle(config, open_store=opener)
    assert active.origin == "shipped"
    assert "The previous bundle a failed" in active.notices[1]
    assert active.notices[-1].startswith("Running the built-in bundle")


def test_startup_refuses_installed_bundles_once_their_key_is_no_longer_trusted(
    tmp_path, keys, store
):
    store.install(signed_bundle(tmp_path / "a", keys[0], bundle_id="a"))
    configured = signed_bundle(tmp_path / "configured", None, bundle_id="configured")
    config = _config(tmp_path, str(configured))
    active = load_active_bundle(config, open_store=lambda _c: BundleStore(store.root, {}))
    assert (active.origin, active.bundle.bundle_id) == ("configured", "configured")
    assert "No signing key is trusted" in active.notices[0]


def test_the_app_says_on_screen_when_it_fell_back_to_the_previous_bundle(tmp_path, keys, store):
    from app_fakes import make_app

    from device.ui.screens import ErrorScreen

    store.install(signed_bundle(tmp_path / "a", keys[0], bundle_id="a"))
    store.install(signed_bundle(tmp_path / "b", keys[0], bundle_id="b"))
    _flip(store.current() / "model.tflite")
    loader = ActiveAnalyzerLoader(
        _config(tmp_path), open_store=lambda _c: BundleStore(store.root, keys[2])
    )
    app = make_app(tmp_path, "wait 0.3", bundle_dir=None, load_analyzer=loader)
    assert app.run() == 0
    assert app.analyzer.bundle.bundle_id == "a"
    notices = [s for s in app.screens_shown if isinstance(s, ErrorScreen)]
    assert notices and notices[0].cause == "bundle_fallback"
    assert notices[0].title == "Model: running an earlier bundle"
    assert "Running the previous bundle, a." in notices[0].detail


# ---- the command line ------------------------------------------------------------------------


def test_the_bundle_command_signs_verifies_installs_and_rolls_back(tmp_path, capsys):
    from device.cli import main

    keys_dir, store_dir = tmp_path / "k", tmp_path / "store"
    assert main(["bundle", "keygen", "--out", str(keys_dir)]) == 0
    a = signed_bundle(tmp_path / "a", None, bundle_id="a")
    b = signed_bundle(tmp_path / "b", None, bundle_id="b")
    pub = str(keys_dir / "signing.pub")
    assert main(["bundle", "verify", str(a), "--trusted", pub]) == 2
    assert "not signed" in capsys.readouterr().err
    for bundle in (a, b):
        assert main(["bundle", "sign", str(bundle), "--key", str(keys_dir / "signing.key")]) == 0
    assert main(["bundle", "verify", str(a), "--trusted", pub]) == 0
    assert "OK: a, signed by key" in capsys.readouterr().out
    common = ["--trusted", pub, "--store", str(store_dir)]
    assert main(["bundle", "install", str(a), *common]) == 0
    assert main(["bundle", "install", str(b), *common]) == 0
    assert "Installed b. Kept a for rollback." in capsys.readouterr().out
    assert main(["bundle", "status", "--store", str(store_dir)]) == 0
    out = capsys.readouterr().out
    assert "current: b" in out and "previous: a" in out
    assert main(["bundle", "rollback", *common]) == 0
    assert "Restored a." in capsys.readouterr().out
    _flip(b / "model.tflite")
    assert main(["bundle", "install", str(b), *common]) == 2
    assert "model.tflite" in capsys.readouterr().err
    assert BundleStore(store_dir, {}).status().current.bundle_id == "a"


def test_the_bundle_command_refuses_an_export_key(tmp_path, capsys):
    from device.cli import main
    from device.records.export import generate_clinic_keypair

    private, public = generate_clinic_keypair(tmp_path / "export")
    bundle = signed_bundle(tmp_path / "a", None)
    assert main(["bundle", "sign", str(bundle), "--key", str(private)]) == 2
    assert "EXPORT key" in capsys.readouterr().err
    assert main(["bundle", "verify", str(bundle), "--trusted", str(public)]) == 2
    assert "EXPORT key" in capsys.readouterr().err


def test_signing_after_an_edit_makes_a_bundle_installable_again(tmp_path, keys, store):
    # The clinic's workflow: edit (here: re-seal a new threshold), sign again, install.
    b = signed_bundle(tmp_path / "b", keys[0])
    rewrite_manifest(b, {"bundle_id": "b-resigned"})
    with pytest.raises(BundleError):
        store.install(b)
    sign_bundle(b, keys[0])
    assert store.install(b).current.bundle_id == "b-resigned"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own files as another user")
def test_root_reading_the_status_leaves_nothing_the_service_user_cannot_open(tmp_path, keys):
    root = tmp_path / "store"
    BundleStore(root, keys[2]).install(signed_bundle(tmp_path / "a", keys[0]))
    (root / ".lock").unlink()
    (root / "installed" / ".tmp-install-1-dead").mkdir()
    for path in [root, *root.rglob("*")]:
        os.chown(path, 65534, 65534)
    status = BundleStore(root, keys[2]).status()  # as root, e.g. `sudo skinscan bundle status`
    assert status.current.bundle_id == "tiny-test"
    assert not (root / ".lock").exists()
    assert (root / "installed" / ".tmp-install-1-dead").exists()  # left for the owner
