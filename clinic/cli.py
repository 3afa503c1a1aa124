"""``skinscan serve``: the clinic web app, served by waitress; ``adduser`` and ``unlock``.

At the clinic::

    skinscan records keygen --out ~/clinic-keys
    skinscan serve adduser --data-dir ~/clinic-data alice
    skinscan serve --clinic-key ~/clinic-keys/clinic.key --data-dir ~/clinic-data
    skinscan serve unlock --data-dir ~/clinic-data alice     # lift a login lock-out

It listens on 127.0.0.1:8080 by default. ``--host 0.0.0.0`` (or an address)
exposes it to the network: do that only behind a TLS reverse proxy, with
``--secure-cookies`` (and ``--trusted-proxies 1`` so that the log names the
client's address, not the proxy's). Flask, waitress and argon2 are imported inside
:func:`main`, so ``skinscan --help`` works without the clinic extra.
"""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import logging
import sys
from pathlib import Path

from device.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``serve`` options and the ``adduser`` action to ``parser``."""
    parser.add_argument(
        "--clinic-key", type=Path, metavar="KEY", help="the clinic private key (records keygen)"
    )
    _data_dir_option(parser, "data")
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to listen on (default {DEFAULT_HOST}; anything else needs a TLS proxy)",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default 8080)")
    parser.add_argument("--bundle", type=Path, metavar="DIR", help="model bundle for uploads")
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help="device config (quality thresholds, bundle)"
    )
    parser.add_argument("--threads", type=int, default=4, help="waitress worker threads")
    parser.add_argument(
        "--max-upload-mb", type=int, default=32, help="largest upload in MB (default 32)"
    )
    parser.add_argument(
        "--secure-cookies",
        action="store_true",
        help="mark the session cookie Secure (when served over HTTPS by a reverse proxy)",
    )
    parser.add_argument(
        "--trusted-proxies",
        type=int,
        default=0,
        metavar="N",
        help="believe X-Forwarded-For from N reverse proxies in front of the app "
        "(default 0: the header is ignored)",
    )
    actions = parser.add_subparsers(dest="serve_action", metavar="ACTION")
    p = actions.add_parser("adduser", help="create a clinician account")
    p.add_argument("username", help="2-32 characters: a-z, 0-9, '.', '_', '-'")
    _data_dir_option(p, "user_data")
    p.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin (scripts)"
    )
    p = actions.add_parser("unlock", help="lift an account's login lock-out")
    p.add_argument("username", help="the locked account")
    _data_dir_option(p, "user_data")


def _data_dir_option(parser: argparse.ArgumentParser, dest: str) -> None:
    """``--data-dir DIR``, the clinic data folder; ``--data`` stays as a hidden alias.

    ``--data-dir`` names a SkinScan data folder everywhere (``records`` too), and
    ``--data`` a dataset (``train``, ``bench sources``); the old spelling is kept for
    one release.
    """
    parser.add_argument(
        "--data-dir", dest=dest, type=Path, metavar="DIR", help="the clinic data folder"
    )
    parser.add_argument("--data", dest=dest, type=Path, help=argparse.SUPPRESS)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise ConfigError("the two passwords differ")
    return first


def _adduser(args: argparse.Namespace) -> int:
    from clinic.auth import add_user
    from clinic.store import ClinicStore

    data = args.user_data or args.data
    if data is None:
        raise ConfigError("adduser needs --data DIR (the clinic data folder)")
    password = _read_password(args.password_stdin)
    with ClinicStore(data, clear_tmp=False) as store:  # the app may be running
        add_user(store, args.username, password)
    print(f"created user {args.username} in {data}")
    return 0


def _unlock(args: argparse.Namespace) -> int:
    from clinic.store import ClinicStore

    data = args.user_data or args.data
    if data is None:
        raise ConfigError("unlock needs --data DIR (the clinic data folder)")
    with ClinicStore(data, clear_tmp=False) as store:  # the app may be running
        forgotten = store.clear_login_failures(args.username.strip().lower())
    print(f"unlocked {args.username}: {forgotten} failed login(s) forgotten")
    return 0


def _check_bind(host: str, port: int) -> None:
    if not 0 < port < 65536:
        raise ConfigError(f"--port {port}: not a port number")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        log.warning(
            "listening on %s: reachable from the network; serve it only behind a TLS reverse "
            "proxy (and use --secure-cookies)",
            host,
        )


def build_app(args: argparse.Namespace):  # -> flask.Flask
    """The Flask app for ``skinscan serve``'s options."""
    from clinic.app import ClinicSettings, create_app

    if args.clinic_key is None or args.data is None:
        raise ConfigError("serve needs --clinic-key KEY and --data-dir DIR")
    settings = ClinicSettings(
        data_dir=args.data,
        clinic_key=args.clinic_key,
        bundle_dir=args.bundle,
        config_file=args.config,
        max_upload_bytes=int(args.max_upload_mb) * 1024 * 1024,
        secure_cookies=bool(args.secure_cookies),
        trusted_proxies=int(args.trusted_proxies),
    )
    return create_app(settings)


def main(args: argparse.Namespace) -> int:
    """Run ``skinscan serve`` (or its ``adduser`` action) and return the exit code."""
    if args.serve_action == "adduser":
        return _adduser(args)
    if args.serve_action == "unlock":
        return _unlock(args)
    try:
        import waitress
    except ImportError:
        raise ConfigError(
            "the clinic app needs the clinic extra: pip install -e '.[clinic]'"
        ) from None
    from clinic.server import waitress_options

    _check_bind(args.host, args.port)
    app = build_app(args)
    if not app.extensions["skinscan_clinic"].store.usernames():
        print(
            "skinscan serve: no accounts yet; create one with 'skinscan serve adduser "
            f"--data {args.data} NAME'",
            file=sys.stderr,
        )
    print(f"skinscan serve: http://{args.host}:{args.port}/ (Ctrl-C stops)")
    waitress.serve(
        app,
        host=args.host,
        port=args.port,
        threads=args.threads,
        ident="skinscan",
        **waitress_options(int(args.trusted_proxies)),
    )
    return 0
