"""Which bundle the device app runs at start-up, and what it tells the user about it.

In order: the bundle store's current bundle (verified again: signature, files, load);
if that fails, the store's previous bundle, with a notice on screen saying so; then the
configured ``[model] bundle``; then the bundle shipped with the software. A store that
cannot be read, or a trust list that cannot be loaded, also falls through with a notice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from device.errors import BundleError, SigningKeyError, StorageError

log = logging.getLogger(__name__)

ORIGINS = ("installed", "previous", "configured", "shipped")


@dataclass(frozen=True)
class ActiveBundle:
    """The bundle chosen at start-up.

    Attributes:
        bundle: the loaded :class:`device.runtime.bundle.Bundle`.
        origin: "installed", "previous", "configured" or "shipped".
        notices: what went wrong on the way, one sentence each, for the screen.
    """

    bundle: Any
    origin: str
    notices: tuple[str, ...] = ()


def load_active_bundle(
    config: Any,
    *,
    runtime: str | None = None,
    open_store: Callable[[Any], Any] | None = None,
) -> ActiveBundle:
    """Load the bundle the app should run (see the module docstring).

    Args:
        config: the device configuration.
        runtime: force a TFLite runtime.
        open_store: builds the store from the config (tests replace it).

    Returns:
        The loaded bundle, where it came from, and the notices to show.

    Raises:
        BundleError: neither an installed bundle nor the configured or shipped one loads.
    """
    from device.bundles.settings import open_bundle_store
    from device.runtime.bundle import load_bundle

    notices: list[str] = []
    try:
        store = (open_store or open_bundle_store)(config)
        installed = store.state()
    except (BundleError, SigningKeyError, StorageError, OSError) as exc:
        log.error("bundle store not usable: %s", exc)
        notices.append(f"Installed bundles cannot be checked: {exc}.")
        store, installed = None, None
    if store is not None and installed is not None and installed.current is not None:
        try:
            return ActiveBundle(store.load_current(runtime=runtime), "installed")
        except BundleError as exc:
            log.error("installed bundle %s does not load: %s", installed.current.label, exc)
            notices.append(f"The installed bundle {installed.current.label} failed: {exc}.")
        previous = store.previous()
        if previous is not None and installed.previous is not None:
            from device.bundles.verify import load_signed_bundle

            try:
                bundle, _ = load_signed_bundle(previous, store.trusted_keys, runtime=runtime)
            except BundleError as exc:
                log.error("previous bundle %s does not load: %s", installed.previous.label, exc)
                notices.append(f"The previous bundle {installed.previous.label} failed: {exc}.")
            else:
                notices.append(f"Running the previous bundle, {installed.previous.label}.")
                return ActiveBundle(bundle, "previous", tuple(notices))
    configured = config.model.bundle or None
    bundle = load_bundle(configured, runtime=runtime)
    origin = "configured" if configured else "shipped"
    if notices:
        notices.append(
            f"Running the {'configured' if configured else 'built-in'} bundle, {bundle.bundle_id}."
        )
    return ActiveBundle(bundle, origin, tuple(notices))


class ActiveAnalyzerLoader:
    """The app's ``load_analyzer``: loads :func:`load_active_bundle` as an ``Analyzer``.

    After each call, :meth:`take_notices` returns what the user must be told (e.g. that
    the previous bundle runs because the installed one failed), once.
    """

    def __init__(self, config: Any, *, open_store: Callable[[Any], Any] | None = None) -> None:
        self.config = config
        self.open_store = open_store
        self.active: ActiveBundle | None = None
        self._notices: list[str] = []

    def __call__(self) -> Any:
        """Load and return the analyzer of the active bundle."""
        from device.runtime.analyzer import Analyzer

        self.active = load_active_bundle(self.config, open_store=self.open_store)
        self._notices = list(self.active.notices)
        return Analyzer(self.active.bundle)

    def take_notices(self) -> list[str]:
        """The notices of the last load, each returned once."""
        notices, self._notices = self._notices, []
        return notices
