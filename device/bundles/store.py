"""The scanner's bundle store: signed bundles installed atomically, the previous one kept.

Layout under the store's root (by default ``DATA_DIR/bundles``)::

    state.json              which bundle is current and which previous (device.bundles.state)
    installed/<id>-<n>/     installed copies; only the two state.json names are kept
    installed/.tmp-install-*  a copy being made (removed when a cut install left it)
    .lock                   held (flock) during an install, a rollback or a clean-up

An install copies the bundle into ``installed/.tmp-install-*``, fsyncs every file and the
folder, verifies **the copy** (signature, every file's size and sha256, adaptation, and a
full load), renames it to ``installed/<id>-<n>`` (fsync of ``installed/``), and only then
replaces ``state.json`` in one atomic rename with current = the new bundle and previous
= the old current. A power cut before that rename leaves the old pointer; after it, the
new one; either names a complete, verified copy. Leftovers are removed by the next
:class:`BundleStore` (or install) that gets the lock: staging folders, temporary pointer
files, and installed folders that neither pointer names.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import secrets
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from device.bundles.staging import copy_bundle, remove_tree
from device.bundles.state import STATE_NAME, InstalledBundle, StoreState, read_state
from device.bundles.verify import load_signed_bundle
from device.errors import BundleStoreError, StorageError
from device.records.crypto import fsync_dir
from device.records.durable import TMP_PREFIX, write_durable
from device.runtime.manifest import MANIFEST_NAME

log = logging.getLogger(__name__)

BUNDLES_DIR = "installed"
LOCK_NAME = ".lock"
STAGING_PREFIX = f"{TMP_PREFIX}install-"
STORE_DIR_NAME = "bundles"  # the store root under the data folder
# Install steps reported to ``progress`` (the USB screen shows them).
STEPS = ("copying", "verifying", "placing", "switching", "cleaning")

Progress = Callable[[str], None]


def _no_progress(_step: str) -> None:
    return None


@dataclass(frozen=True)
class InstallResult:
    """What :meth:`BundleStore.install` or :meth:`BundleStore.rollback` did.

    Attributes:
        current: the bundle now current.
        previous: the bundle kept for rollback (None when there was none).
        changed: False when the bundle was already the current one (nothing was done).
        message: one or two plain sentences for the screen.
    """

    current: InstalledBundle
    previous: InstalledBundle | None
    changed: bool
    message: str


@dataclass(frozen=True)
class StoreStatus:
    """What the store holds, for ``skinscan bundle status`` and the bundle screen.

    Attributes:
        root: the store's folder.
        current: the installed current bundle, or None (the configured or shipped
            bundle runs).
        previous: the bundle a rollback would restore, or None.
    """

    root: Path
    current: InstalledBundle | None
    previous: InstalledBundle | None

    def lines(self) -> list[str]:
        """Short lines for a small screen."""
        if self.current is None:
            return ["No bundle installed from USB: the built-in model runs."]
        lines = [f"Running: {self.current.label}", f"Installed {self.current.installed_at[:16]}"]
        if self.previous is not None:
            lines.append(f"Previous (for rollback): {self.previous.label}")
        else:
            lines.append("No previous bundle to roll back to.")
        return lines


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def _safe_id(bundle_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", bundle_id).lstrip("._-")
    return (safe or "bundle")[:60]


def shipped_trunks() -> set[str]:
    """sha256 of the trunk shipped with this software (device/models/default)."""
    from device.runtime.bundle import DEFAULT_BUNDLE_DIR

    trunk = trunk_of(DEFAULT_BUNDLE_DIR)
    return {trunk} if trunk else set()


def trunk_of(bundle_dir: str | os.PathLike[str]) -> str | None:
    """The model.tflite sha256 a bundle's manifest lists, or None if it cannot be read."""
    from device.runtime.bundle import read_manifest

    try:
        manifest = read_manifest(bundle_dir)
    except Exception:  # a broken configured bundle only adds no known trunk
        return None
    return manifest.files[manifest.classifier.file].sha256


class BundleStore:
    """Installed model bundles on a scanner: current, previous, atomic swaps.

    Constructing one reads nothing but removes the leftovers of a cut install (when the
    process owns the store and no other process holds its lock). Public API, used by
    ``skinscan bundle`` and the device's USB screen: :meth:`install`, :meth:`rollback`,
    :meth:`status`, :meth:`current`, :meth:`previous`, :meth:`load_current`.

    Args:
        root: the store's folder (created at the first install).
        trusted_keys: key id -> raw public key; the default for :meth:`install` and
            :meth:`rollback`.
        known_trunks: trunk sha256s this scanner runs besides the shipped one and those
            installed here (e.g. the configured ``[model] bundle``'s); an adapted bundle
            must be adapted from one of them.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        trusted_keys: Mapping[str, bytes] | None = None,
        *,
        known_trunks: Collection[str] = (),
    ) -> None:
        self.root = Path(root)
        self.bundles_dir = self.root / BUNDLES_DIR
        self.trusted_keys = dict(trusted_keys or {})
        self.known_trunks = set(known_trunks)
        # Only the store's owner tidies up: root reading the status must not leave a lock
        # file or anything else the service user could no longer open.
        if self.root.is_dir() and self.root.stat().st_uid == os.geteuid():
            with contextlib.suppress(BundleStoreError, OSError), self._locked():
                self._clean(read_state(self.root))

    # ---- reading --------------------------------------------------------------------------

    def state(self) -> StoreState:
        """The pointer file (an empty state when nothing was ever installed).

        Raises:
            BundleStoreError: ``state.json`` is damaged.
        """
        return read_state(self.root)

    def current(self) -> Path | None:
        """The current installed bundle's folder, or None when nothing is installed."""
        entry = self.state().current
        return self.bundles_dir / entry.dir if entry else None

    def previous(self) -> Path | None:
        """The folder a rollback would restore, or None."""
        entry = self.state().previous
        return self.bundles_dir / entry.dir if entry else None

    def status(self) -> StoreStatus:
        """Current and previous bundles, with lines for the screen."""
        state = self.state()
        return StoreStatus(self.root, state.current, state.previous)

    def load_current(
        self, trusted_keys: Mapping[str, bytes] | None = None, *, runtime: str | None = None
    ) -> Any:
        """Verify and load the current bundle (signature again, files, models).

        Returns:
            The loaded :class:`device.runtime.bundle.Bundle`.

        Raises:
            BundleStoreError: nothing is installed.
            BundleError: it no longer verifies (the caller falls back to the previous one).
        """
        path = self.current()
        if path is None:
            raise BundleStoreError("no bundle is installed")
        keys = self.trusted_keys if trusted_keys is None else trusted_keys
        return load_signed_bundle(path, keys, runtime=runtime)[0]

    # ---- changing ---------------------------------------------------------------------------

    def install(
        self,
        source: str | os.PathLike[str],
        trusted_keys: Mapping[str, bytes] | None = None,
        *,
        progress: Progress = _no_progress,
    ) -> InstallResult:
        """Install the signed bundle at ``source``; the current one becomes previous.

        Nothing changes unless the copy verifies; see the module docstring for the order
        that makes a power cut harmless.

        Args:
            source: a bundle folder (e.g. on a USB stick).
            trusted_keys: key id -> raw public key (default: the store's).
            progress: called with each step name in :data:`STEPS` as it starts.

        Returns:
            What was done.

        Raises:
            BundleError: the bundle was refused (a subclass names why); nothing changed.
            BundleStoreError: another install is running, or the store is damaged.
            DiskFullError, StorageError: the copy could not be written; nothing changed.
        """
        keys = self.trusted_keys if trusted_keys is None else trusted_keys
        self.root.mkdir(parents=True, exist_ok=True)
        with self._locked():
            state = read_state(self.root)
            self._clean(state)
            self.bundles_dir.mkdir(exist_ok=True)
            staging = self.bundles_dir / f"{STAGING_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
            try:
                progress("copying")
                copy_bundle(Path(source), staging)
                progress("verifying")
                bundle, signer = load_signed_bundle(
                    staging, keys, known_trunks=self._known_trunks(state)
                )
            except BaseException:
                remove_tree([staging])
                raise
            manifest_sha = hashlib.sha256((staging / MANIFEST_NAME).read_bytes()).hexdigest()
            if state.current is not None and state.current.manifest_sha256 == manifest_sha:
                remove_tree([staging])
                return InstallResult(
                    state.current,
                    state.previous,
                    changed=False,
                    message=f"{state.current.label} is already the running bundle.",
                )
            progress("placing")
            name = self._new_dir_name(bundle.bundle_id)
            os.rename(staging, self.bundles_dir / name)
            fsync_dir(self.bundles_dir)
            adaptation = getattr(bundle.manifest, "adaptation", None)
            entry = InstalledBundle(
                dir=name,
                bundle_id=bundle.bundle_id,
                key_id=signer,
                installed_at=_now(),
                source=str(Path(source).resolve()),
                model_sha256=bundle.model_sha256,
                manifest_sha256=manifest_sha,
                adaptation=getattr(bundle.manifest, "adaptation_label", None),
            )
            trunks = state.trunks
            if adaptation is None and entry.model_sha256 not in trunks:
                trunks = (*trunks, entry.model_sha256)
            progress("switching")
            new_state = StoreState(current=entry, previous=state.current, trunks=trunks)
            self._write_state(new_state)
            progress("cleaning")
            self._clean(new_state)
        log.info("installed bundle %s from %s (key %s)", entry.label, source, signer)
        kept = f" Kept {state.current.label} for rollback." if state.current else ""
        return InstallResult(entry, state.current, True, f"Installed {entry.label}.{kept}")

    def rollback(self, trusted_keys: Mapping[str, bytes] | None = None) -> InstallResult:
        """Make the previous bundle current again (and the current one previous).

        The previous bundle is verified again first (signature, files, load).

        Raises:
            BundleStoreError: there is no previous bundle, or another install is running.
            BundleError: the previous bundle no longer verifies; nothing changed.
        """
        keys = self.trusted_keys if trusted_keys is None else trusted_keys
        if not self.root.is_dir():
            raise BundleStoreError("No bundle has been installed, so there is none to go back to")
        with self._locked():
            state = read_state(self.root)
            if state.previous is None or state.current is None:
                raise BundleStoreError("No previous bundle to roll back to")
            load_signed_bundle(self.bundles_dir / state.previous.dir, keys)
            new_state = replace(state, current=state.previous, previous=state.current)
            self._write_state(new_state)
        log.info("rolled back from %s to %s", state.current.label, state.previous.label)
        return InstallResult(
            state.previous,
            state.current,
            True,
            f"Restored {state.previous.label}. {state.current.label} is kept as previous.",
        )

    # ---- internals --------------------------------------------------------------------------

    def _known_trunks(self, state: StoreState) -> set[str]:
        installed = {e.model_sha256 for e in (state.current, state.previous) if e is not None}
        return shipped_trunks() | self.known_trunks | set(state.trunks) | installed

    def _new_dir_name(self, bundle_id: str) -> str:
        numbers = [0]
        for path in self.bundles_dir.iterdir():
            tail = path.name.rsplit("-", 1)[-1]
            if tail.isdigit():
                numbers.append(int(tail))
        return f"{_safe_id(bundle_id)}-{max(numbers) + 1}"

    def _write_state(self, state: StoreState) -> None:
        try:
            write_durable(self.root / STATE_NAME, state.to_bytes())
            fsync_dir(self.root)
        except OSError as exc:
            raise StorageError(f"bundle store {self.root}: cannot be written ({exc})") from exc

    def _clean(self, state: StoreState) -> None:
        """Remove staging folders, temporary pointer files and unreferenced bundles."""
        leftovers = [p for p in self.root.glob(f"{TMP_PREFIX}*")] if self.root.is_dir() else []
        if self.bundles_dir.is_dir():
            keep = state.referenced_dirs()
            leftovers += [p for p in self.bundles_dir.iterdir() if p.name not in keep]
        if leftovers:
            log.info("bundle store: removing %s", ", ".join(p.name for p in leftovers))
            remove_tree(leftovers)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the store's lock, or refuse at once; the kernel releases it if we die."""
        fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise BundleStoreError(
                    "Another bundle install or rollback is running; try again when it ends"
                ) from None
            yield
        finally:
            os.close(fd)
