"""Signed model bundles on the scanner: signing, verification, install with rollback.

Public API (the device's USB screen and ``skinscan bundle`` use it; keep it stable):

* :func:`generate_signing_keypair`, :func:`sign_bundle` (clinic side);
* :func:`load_trusted_keys`, :func:`verify_signed_bundle`, :func:`load_signed_bundle`;
* :class:`BundleStore` with ``install(src, trusted_keys) -> InstallResult``,
  ``rollback() -> InstallResult``, ``status() -> StoreStatus``, ``current()``,
  ``previous()`` and ``load_current()``;
* :func:`find_bundles_on` and :func:`describe_candidate` for a USB stick;
* :func:`open_bundle_store` and :func:`load_active_bundle` from the device config.

See docs/security.md for the threat model and what is verified.
"""

from device.bundles.active import ActiveAnalyzerLoader, ActiveBundle, load_active_bundle
from device.bundles.keys import generate_signing_keypair, key_id, load_trusted_keys
from device.bundles.settings import open_bundle_store, store_root, trusted_keys
from device.bundles.signing import SIGNATURE_NAME, sign_bundle
from device.bundles.state import InstalledBundle
from device.bundles.store import STEPS, BundleStore, InstallResult, StoreStatus
from device.bundles.usb import describe_candidate, find_bundles_on
from device.bundles.verify import load_signed_bundle, verify_signed_bundle

__all__ = [
    "SIGNATURE_NAME",
    "STEPS",
    "ActiveAnalyzerLoader",
    "ActiveBundle",
    "BundleStore",
    "InstallResult",
    "InstalledBundle",
    "StoreStatus",
    "describe_candidate",
    "find_bundles_on",
    "generate_signing_keypair",
    "key_id",
    "load_active_bundle",
    "load_signed_bundle",
    "load_trusted_keys",
    "open_bundle_store",
    "sign_bundle",
    "store_root",
    "trusted_keys",
    "verify_signed_bundle",
]
