"""Where the scanner's bundle store is, and which signing keys it trusts, from the config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from device.bundles.keys import load_trusted_keys
from device.bundles.store import STORE_DIR_NAME, BundleStore, trunk_of


def store_root(config: Any) -> Path:
    """``DATA_DIR/bundles``: the store lives in the records' data folder, the one folder
    the service may write (``$SKINSCAN_DATA_DIR``, else ``[records] data_dir``, else the
    platform default; see :mod:`device.records.paths`)."""
    from device.records.paths import resolve_data_dir

    return resolve_data_dir(config.records.data_dir or None) / STORE_DIR_NAME


def trusted_keys(config: Any) -> dict[str, bytes]:
    """The ``[model] trusted_keys`` as key id -> raw public key.

    Raises:
        SigningKeyError: a listed file is missing or is not a public signing key.
    """
    return load_trusted_keys(config.model.trusted_keys)


def open_bundle_store(config: Any, keys: dict[str, bytes] | None = None) -> BundleStore:
    """The configured store, trusting ``keys`` (default: the configured keys).

    The configured ``[model] bundle``'s trunk counts as one this scanner runs, so a
    bundle adapted from it can be installed.
    """
    keys = trusted_keys(config) if keys is None else keys
    configured = config.model.bundle
    extra = {trunk_of(configured)} - {None} if configured else set()
    return BundleStore(store_root(config), keys, known_trunks=extra)  # type: ignore[arg-type]
