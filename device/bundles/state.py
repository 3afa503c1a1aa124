"""The bundle store's pointer file: which installed bundle is current, which is previous.

``state.json`` in the store's root is the single source of truth, replaced as a whole
by an atomic rename (temporary file, fsync, rename, fsync of the folder), so a power cut
leaves the old pointer or the new one, never a mix::

    {"format": 1,
     "current":  {"dir": "v6-3", "bundle_id": "v6", "key_id": "...", ...} | null,
     "previous": {...} | null,
     "trunks":   ["<sha256 of every base trunk installed here>", ...]}
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from device.errors import BundleStoreError

STATE_NAME = "state.json"
STATE_FORMAT = 1
_DIR_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class InstalledBundle:
    """One bundle in the store, as the pointer file records it.

    Attributes:
        dir: its folder's name under ``ROOT/installed``.
        bundle_id: the manifest's bundle id.
        key_id: the signing key that signed it.
        installed_at: ISO-8601 UTC time of the install.
        source: where it was installed from (e.g. the USB stick's folder).
        model_sha256: sha256 of its model.tflite (the trunk).
        manifest_sha256: sha256 of its manifest.json (what the signature covers).
        adaptation: "adapted for <site>, <date>", or None for a base bundle.
    """

    dir: str
    bundle_id: str
    key_id: str
    installed_at: str
    source: str
    model_sha256: str
    manifest_sha256: str
    adaptation: str | None = None

    @property
    def label(self) -> str:
        """The bundle id, with its adaptation when it has one, for screens and logs."""
        return f"{self.bundle_id} ({self.adaptation})" if self.adaptation else self.bundle_id

    @classmethod
    def from_json(cls, data: Any) -> InstalledBundle | None:
        """Parse one entry; None for ``null``.

        Raises:
            BundleStoreError: the entry is malformed.
        """
        if data is None:
            return None
        try:
            entry = cls(**data)
        except TypeError as exc:
            raise BundleStoreError(f"{STATE_NAME}: malformed entry ({exc})") from None
        if not isinstance(entry.dir, str) or not _DIR_NAME.match(entry.dir):
            raise BundleStoreError(f"{STATE_NAME}: bad bundle folder name {entry.dir!r}")
        return entry


@dataclass(frozen=True)
class StoreState:
    """The whole pointer file."""

    current: InstalledBundle | None = None
    previous: InstalledBundle | None = None
    trunks: tuple[str, ...] = field(default_factory=tuple)

    def referenced_dirs(self) -> set[str]:
        """The folder names the pointer keeps (every other one may be removed)."""
        return {e.dir for e in (self.current, self.previous) if e is not None}

    def to_bytes(self) -> bytes:
        """The file's content."""
        data = {
            "format": STATE_FORMAT,
            "current": asdict(self.current) if self.current else None,
            "previous": asdict(self.previous) if self.previous else None,
            "trunks": list(self.trunks),
        }
        return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")


def read_state(root: Path) -> StoreState:
    """Read ``ROOT/state.json``; an absent file is an empty store.

    Raises:
        BundleStoreError: the file cannot be read or is malformed.
    """
    path = root / STATE_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return StoreState()
    except OSError as exc:
        raise BundleStoreError(f"bundle store {path}: cannot be read ({exc})") from exc
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleStoreError(
            f"bundle store {path} is damaged ({exc}); the installed bundles are kept in "
            f"{root / 'bundles'}"
        ) from exc
    if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
        raise BundleStoreError(f"bundle store {path}: unknown format")
    trunks = data.get("trunks", [])
    if not isinstance(trunks, list) or not all(isinstance(t, str) for t in trunks):
        raise BundleStoreError(f"bundle store {path}: malformed trunks")
    return StoreState(
        current=InstalledBundle.from_json(data.get("current")),
        previous=InstalledBundle.from_json(data.get("previous")),
        trunks=tuple(trunks),
    )
