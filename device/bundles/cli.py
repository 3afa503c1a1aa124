"""``skinscan bundle``: signing keys, signing, verifying, installing and rolling back bundles.

Clinic side (a desktop)::

    skinscan bundle keygen --out ~/clinic-signing         # signing.key (0600) + signing.pub
    skinscan bundle sign ADAPTED_BUNDLE --key ~/clinic-signing/signing.key
    skinscan bundle verify ADAPTED_BUNDLE --trusted ~/clinic-signing/signing.pub

Scanner side (as the service user, e.g. ``sudo -u skinscan skinscan bundle install ...``)::

    skinscan bundle install /media/usb/ADAPTED_BUNDLE     # verify, copy, swap; keeps previous
    skinscan bundle rollback                              # the previous bundle back
    skinscan bundle status
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from device.errors import BundleStoreError


def configure(parser: argparse.ArgumentParser) -> None:
    """Register ``skinscan bundle``'s actions."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "Signing keys are not export keys: `skinscan records keygen` makes the clinic's\n"
        "export key (clinic.pub, for sealed records); `skinscan bundle keygen` makes the\n"
        "signing key a scanner trusts for bundles (setup.sh --bundle-key signing.pub)."
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = actions.add_parser("keygen", help="create a bundle signing key pair (clinic side)")
    p.add_argument("--out", type=Path, required=True, help="folder for signing.key and .pub")

    p = actions.add_parser("sign", help="sign a bundle folder: writes manifest.sig")
    p.add_argument("bundle", type=Path, metavar="BUNDLE")
    p.add_argument("--key", type=Path, required=True, help="the private signing.key")

    p = actions.add_parser(
        "verify", help="check a signed bundle as a scanner would, without installing it"
    )
    p.add_argument("bundle", type=Path, metavar="BUNDLE")
    _trust_options(p)

    p = actions.add_parser("install", help="verify and install a signed bundle on this scanner")
    p.add_argument("path", type=Path, metavar="PATH", help="a bundle folder (e.g. on USB)")
    _trust_options(p)
    _store_options(p)

    p = actions.add_parser("rollback", help="go back to the previously installed bundle")
    _trust_options(p)
    _store_options(p)

    p = actions.add_parser("status", help="the installed bundle, and the one kept for rollback")
    p.add_argument("--config", metavar="FILE", help="config file (default /etc/skinscan)")
    _store_options(p)


def _trust_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--trusted",
        action="append",
        metavar="KEY",
        help="a trusted signing.pub or a folder of them (repeatable); default: the config's "
        "[model] trusted_keys",
    )
    p.add_argument("--config", metavar="FILE", help="config file (default /etc/skinscan)")


def _store_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store", type=Path, metavar="DIR", help="bundle store (default: DATA_DIR/bundles)"
    )


def _config(args: argparse.Namespace) -> Any:
    from device.config import load_config

    return load_config(getattr(args, "config", None))


def _keys(args: argparse.Namespace, config: Any) -> dict[str, bytes]:
    from device.bundles.keys import load_trusted_keys

    if args.trusted:
        return load_trusted_keys(args.trusted)
    return load_trusted_keys(config.model.trusted_keys)


def _store(args: argparse.Namespace, config: Any, keys: dict[str, bytes]) -> Any:
    from device.bundles.settings import open_bundle_store
    from device.bundles.store import BundleStore

    if args.store is not None:
        return BundleStore(args.store, keys)
    return open_bundle_store(config, keys)


def _check_owner(root: Path) -> None:
    # Root writing into the service user's store would leave files the app cannot clean.
    if os.geteuid() != 0:
        return
    probe = root if root.exists() else root.parent
    if probe.exists() and probe.stat().st_uid != 0:
        raise BundleStoreError(
            f"{root} belongs to another user: run this as that user, e.g. "
            "sudo -u skinscan skinscan bundle ..."
        )


def _keygen(args: argparse.Namespace) -> int:
    from device.bundles.keys import generate_signing_keypair, key_id, load_verify_key

    private, public = generate_signing_keypair(args.out)
    print(f"private signing key (keep it at the clinic, apart from the export key): {private}")
    print(f"public signing key (install on each scanner: setup.sh --bundle-key): {public}")
    print(f"key id: {key_id(load_verify_key(public))}")
    return 0


def _sign(args: argparse.Namespace) -> int:
    from device.bundles.signing import sign_bundle

    signer = sign_bundle(args.bundle, args.key)
    print(f"signed {args.bundle} with key {signer}: wrote {args.bundle / 'manifest.sig'}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from device.bundles.verify import load_signed_bundle

    config = None if args.trusted else _config(args)
    bundle, signer = load_signed_bundle(args.bundle, _keys(args, config))
    label = getattr(bundle.manifest, "adaptation_label", None)
    print(f"OK: {bundle.bundle_id}{f' ({label})' if label else ''}, signed by key {signer}")
    print("    signature, every file's size and sha256, preprocessing spec and loading checked")
    return 0


def _install(args: argparse.Namespace) -> int:
    config = _config(args)
    store = _store(args, config, _keys(args, config))
    _check_owner(store.root)
    result = store.install(args.path, progress=lambda step: print(f"  {step}…", flush=True))
    print(result.message)
    if result.changed:
        print("Restart the scanner app to use it: sudo systemctl restart skinscan")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    config = _config(args)
    store = _store(args, config, _keys(args, config))
    _check_owner(store.root)
    print(store.rollback().message)
    print("Restart the scanner app to use it: sudo systemctl restart skinscan")
    return 0


def _status(args: argparse.Namespace) -> int:
    config = _config(args)
    store = _store(args, config, {})
    status = store.status()
    print(f"bundle store: {status.root}")
    for entry, role in ((status.current, "current"), (status.previous, "previous")):
        if entry is None:
            continue
        print(
            f"{role}: {entry.label}\n  installed {entry.installed_at} from {entry.source}\n"
            f"  signed by key {entry.key_id}; model sha256 {entry.model_sha256[:16]}…"
        )
    if status.current is None:
        default = config.model.bundle or "the shipped bundle"
        print(f"no bundle installed: the app runs {default}")
    elif status.previous is None:
        print("previous: none (nothing to roll back to)")
    return 0


def main(args: argparse.Namespace) -> int:
    """Run one ``skinscan bundle`` action."""
    actions = {
        "keygen": _keygen,
        "sign": _sign,
        "verify": _verify,
        "install": _install,
        "rollback": _rollback,
        "status": _status,
    }
    if args.action not in actions:  # pragma: no cover - argparse requires an action
        print("skinscan bundle: choose an action (see --help)", file=sys.stderr)
        return 2
    return actions[args.action](args)
