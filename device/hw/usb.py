"""The USB-stick seam: notice a stick, mount it for the app to write, and release it.

The app never touches a block device itself (the service has no right to mount:
see ``systemd/README.md``). A backend finds the sticks that are plugged in,
mounts one read-write for the service user when asked, and unmounts it (and
powers it off where it can) before the screen says it may be removed.

Backends:

- :class:`device.hw.usb_udisks.UdisksSticks`: a Pi or a desktop; ``lsblk`` lists
  the sticks and ``udisksctl`` (udisks2 over D-Bus, allowed by a polkit rule on
  the Pi) mounts, unmounts and powers them off. A stick someone already mounted
  (under ``/media``) is used where it is.
- :class:`device.hw.usb_folder.FolderStick`: the simulator's ``--usb DIR``, a
  folder that stands for a plugged-in stick.
- :class:`NoSticks`: nothing is ever plugged in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from device.errors import SkinScanError


class UsbError(SkinScanError, OSError):
    """A stick cannot be found, mounted, written or released."""


class UsbReadOnlyError(UsbError):
    """The stick is mounted but cannot be written (a write-protect switch, a full-disk
    error turned read-only, a file system the service user cannot write)."""


@dataclass(frozen=True)
class Stick:
    """A plugged-in USB stick (one file system on it).

    Attributes:
        name: what the screen calls it: its label, else its model, else "USB stick".
        device: the block device (``/dev/sda1``), or the folder standing for it.
        disk: the whole disk to power off after unmounting (``/dev/sda``), or "".
        mount_point: where it is mounted now, or None.
        size_bytes: its size, 0 when unknown.
    """

    name: str
    device: str
    disk: str = ""
    mount_point: Path | None = None
    size_bytes: int = 0


@runtime_checkable
class UsbSticks(Protocol):
    """A source of USB sticks."""

    name: str

    def find(self) -> list[Stick]:
        """The sticks plugged in now (an empty list when none). Never raises."""
        ...

    def mount(self, stick: Stick) -> Path:
        """Mount ``stick`` read-write for this user; returns the mount point.

        Raises:
            UsbError: it is gone or cannot be mounted.
            UsbReadOnlyError: it is mounted but not writable.
        """
        ...

    def release(self, stick: Stick) -> None:
        """Flush, unmount and (where possible) power off ``stick``; after this it may be
        pulled out.

        Raises:
            UsbError: it is still mounted (busy): it must not be pulled out yet.
        """
        ...


class NoSticks:
    """No stick is ever plugged in (a simulator run without ``--usb``)."""

    name = "none"

    def find(self) -> list[Stick]:
        """Always nothing."""
        return []

    def mount(self, stick: Stick) -> Path:
        """Never possible."""
        raise UsbError("no USB stick is plugged in")

    def release(self, stick: Stick) -> None:
        """Nothing to release."""


def check_writable(folder: Path) -> None:
    """Raise :class:`UsbReadOnlyError` unless this user can create files in ``folder``.

    A write test, not ``os.access``: a stick mounted read-only by the kernel after an
    error still shows write permission bits.
    """
    probe = folder / f".skinscan-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsbReadOnlyError(f"the USB stick at {folder} cannot be written: {exc}") from exc
