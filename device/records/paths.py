"""Where the scan records live.

Order of precedence for the data folder:

1. the environment variable ``SKINSCAN_DATA_DIR``;
2. the configured value (``records.data_dir`` in the device config), passed in;
3. ``/var/lib/skinscan`` on a Raspberry Pi (detected from ``/proc/device-tree/model``);
4. ``$XDG_DATA_HOME/skinscan``, by default ``~/.local/share/skinscan``, elsewhere.

Inside it::

    scans.db            SQLite database (WAL mode: also scans.db-wal, scans.db-shm)
    images/             one encrypted file per image or heatmap: <scan id>.image / .heatmap
    device.key          the 256-bit device key, mode 0600 (unless SKINSCAN_KEY_FILE says otherwise)
    clinic.pub          the clinic's X25519 public key for exports, set at provisioning
    corrupt-<time>/     a damaged database moved aside, with its images; never deleted
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

ENV_DATA_DIR = "SKINSCAN_DATA_DIR"
ENV_KEY_FILE = "SKINSCAN_KEY_FILE"
ENV_CLINIC_KEY = "SKINSCAN_CLINIC_PUBLIC_KEY"
PI_DATA_DIR = Path("/var/lib/skinscan")
DB_NAME = "scans.db"
IMAGES_DIR = "images"
KEY_NAME = "device.key"
CLINIC_PUBLIC_KEY_NAME = "clinic.pub"
_PI_MODEL = Path("/proc/device-tree/model")


def is_raspberry_pi(model_file: str | os.PathLike[str] = _PI_MODEL) -> bool:
    """Whether this machine is a Raspberry Pi, from the device-tree model string."""
    try:
        model = Path(model_file).read_bytes()
    except OSError:
        return False
    return b"Raspberry Pi" in model


def resolve_data_dir(
    configured: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    model_file: str | os.PathLike[str] = _PI_MODEL,
) -> Path:
    """Return the data folder (it is not created here).

    Args:
        configured: the data folder from the device config, if set.
        env: environment to read (default ``os.environ``).
        model_file: the device-tree model file used to detect a Pi.
    """
    env = os.environ if env is None else env
    if env.get(ENV_DATA_DIR):
        return Path(env[ENV_DATA_DIR]).expanduser()
    if configured:
        return Path(configured).expanduser()
    if is_raspberry_pi(model_file):
        return PI_DATA_DIR
    xdg = env.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "skinscan"


def resolve_key_file(
    data_dir: str | os.PathLike[str], env: Mapping[str, str] | None = None
) -> Path:
    """The device key file: ``SKINSCAN_KEY_FILE``, else ``<data_dir>/device.key``."""
    env = os.environ if env is None else env
    if env.get(ENV_KEY_FILE):
        return Path(env[ENV_KEY_FILE]).expanduser()
    return Path(data_dir) / KEY_NAME


def resolve_clinic_public_key(
    data_dir: str | os.PathLike[str], env: Mapping[str, str] | None = None
) -> Path:
    """The clinic key file: ``SKINSCAN_CLINIC_PUBLIC_KEY``, else ``<data_dir>/clinic.pub``."""
    env = os.environ if env is None else env
    if env.get(ENV_CLINIC_KEY):
        return Path(env[ENV_CLINIC_KEY]).expanduser()
    return Path(data_dir) / CLINIC_PUBLIC_KEY_NAME
