"""USB sticks through udisks2: ``lsblk`` finds them, ``udisksctl`` mounts and releases.

Why udisks2: the scanner's service may not mount anything itself (its sandbox
filters the mount system calls and hides block devices). udisks2 mounts a
removable file system for the user who asks, over D-Bus, under
``/media/<user>/<label>``, with that user as the owner of a FAT or exFAT stick.
On the Pi a polkit rule (``systemd/50-skinscan-usb.rules``) lets the service
user mount, unmount and power off removable drives without a desktop session,
and nothing else: internal disks need a right it does not have.

Only disks on the USB bus (or hot-pluggable ones) are offered, and never a disk
that holds a file system mounted outside ``/media``, ``/run/media`` or ``/mnt``
(a Pi that boots from a USB SSD must not offer its own system disk).
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from device.hw.usb import Stick, UsbError, check_writable

log = logging.getLogger(__name__)

LSBLK = (
    "lsblk", "--json", "--bytes", "--paths",
    "--output", "NAME,TYPE,TRAN,RM,HOTPLUG,FSTYPE,LABEL,MODEL,MOUNTPOINT,SIZE",
)  # fmt: skip
# File systems a stick can carry that the service user can be given write access to.
STICK_FILESYSTEMS = ("vfat", "exfat", "ntfs", "ntfs3", "ext4", "ext3", "ext2", "btrfs", "f2fs")
REMOVABLE_ROOTS = ("/media/", "/run/media/", "/mnt/")
TIMEOUT_S = 60


def _flag(value: Any) -> bool:
    """lsblk's booleans: true/false in current versions, "1"/"0" in old ones."""
    return value is True or value in ("1", 1, "true")


def _walk(device: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield device
    for child in device.get("children") or ():
        yield from _walk(child)


def sticks_from_lsblk(
    data: dict[str, Any], removable_roots: tuple[str, ...] = REMOVABLE_ROOTS
) -> list[Stick]:
    """The USB file systems in ``lsblk --json`` output that are safe to offer: on a disk
    none of whose file systems is mounted outside ``removable_roots``."""
    sticks: list[Stick] = []
    for disk in data.get("blockdevices") or ():
        if disk.get("type") != "disk":
            continue
        if disk.get("tran") != "usb" and not (_flag(disk.get("hotplug")) and _flag(disk.get("rm"))):
            continue
        parts = list(_walk(disk))
        mounted = [p.get("mountpoint") for p in parts if p.get("mountpoint")]
        if any(not str(m).startswith(removable_roots) for m in mounted):
            continue  # a system disk (a Pi booted from USB): never offered
        model = str(disk.get("model") or "").strip()
        for part in parts:
            if part.get("fstype") not in STICK_FILESYSTEMS:
                continue
            label = str(part.get("label") or "").strip()
            mount = part.get("mountpoint")
            sticks.append(
                Stick(
                    name=label or model or "USB stick",
                    device=str(part["name"]),
                    disk=str(disk["name"]),
                    mount_point=Path(mount) if mount else None,
                    size_bytes=int(part.get("size") or 0),
                )
            )
    return sticks


class UdisksSticks:
    """USB sticks found by ``lsblk``, mounted and released by ``udisksctl``.

    Args:
        run_command: runs a command line and returns a ``CompletedProcess`` (tests
            replace it with canned answers).
        removable_roots: where a stick's file system may be mounted; a disk with one
            mounted anywhere else is a system disk and never offered.
    """

    name = "udisks"

    def __init__(
        self,
        run_command: Callable[..., Any] = subprocess.run,
        removable_roots: tuple[str, ...] = REMOVABLE_ROOTS,
    ) -> None:
        self.run_command = run_command
        self.removable_roots = tuple(removable_roots)

    def _run(self, args: list[str] | tuple[str, ...]) -> Any:
        try:
            return self.run_command(
                list(args), capture_output=True, text=True, timeout=TIMEOUT_S, check=False
            )
        except FileNotFoundError:
            raise UsbError(
                f"{args[0]} is not installed: the USB stick cannot be used "
                "(apt install udisks2; setup.sh installs it)"
            ) from None
        except (OSError, subprocess.SubprocessError) as exc:
            raise UsbError(f"{args[0]} failed: {exc}") from exc

    def _lsblk(self) -> dict[str, Any] | None:
        """lsblk's answer, or None (and a log line) when it cannot tell."""
        try:
            done = self._run(LSBLK)
        except UsbError as exc:
            log.warning("%s", exc)
            return None
        if done.returncode != 0:
            log.warning("lsblk failed: %s", (done.stderr or "").strip())
            return None
        try:
            data = json.loads(done.stdout or "{}")
        except ValueError as exc:
            log.warning("lsblk output not understood: %s", exc)
            return None
        return data if isinstance(data, dict) else None

    def find(self) -> list[Stick]:
        """The sticks plugged in now; nothing when lsblk cannot tell."""
        data = self._lsblk()
        try:
            return sticks_from_lsblk(data, self.removable_roots) if data is not None else []
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("lsblk output not understood: %s", exc)
            return []

    def _current(self, stick: Stick) -> Stick | None:
        return next((s for s in self.find() if s.device == stick.device), None)

    def _mounted_at(self, device: str) -> str | None:
        """Where ``device`` is mounted now, wherever that is (None: not mounted, or gone)."""
        data = self._lsblk() or {}
        for top in data.get("blockdevices") or ():
            for entry in _walk(top):
                if entry.get("name") == device:
                    return entry.get("mountpoint") or None
        return None

    def mount(self, stick: Stick) -> Path:
        """Mount ``stick`` through udisks (or use it where it is already mounted)."""
        current = self._current(stick)
        if current is None:
            raise UsbError(f"the USB stick {stick.name} ({stick.device}) is gone")
        if current.mount_point is None:
            done = self._run(
                ["udisksctl", "mount", "--block-device", stick.device, "--no-user-interaction"]
            )
            if done.returncode != 0:
                raise UsbError(
                    f"the USB stick {stick.name} cannot be mounted: "
                    f"{_first_line(done.stderr or done.stdout)}"
                )
            found = re.search(r" at (/.+?)\.?\s*$", (done.stdout or "").strip())
            current = self._current(stick)
            point = current.mount_point if current is not None else None
            if point is None and found:
                point = Path(found.group(1))
            if point is None:
                raise UsbError(f"the USB stick {stick.name} was mounted, but not found where")
        else:
            point = current.mount_point
        log.info("USB stick %s (%s) at %s", stick.name, stick.device, point)
        check_writable(point)
        return point

    def release(self, stick: Stick) -> None:
        """Unmount (which flushes every write) and power off the stick.

        Raises:
            UsbError: it could not be unmounted (still busy): it must stay in.
        """
        if self._mounted_at(stick.device) is not None:
            done = self._run(
                ["udisksctl", "unmount", "--block-device", stick.device, "--no-user-interaction"]
            )
            if done.returncode != 0:
                raise UsbError(
                    f"the USB stick {stick.name} could not be unmounted: "
                    f"{_first_line(done.stderr or done.stdout)}"
                )
        if stick.disk:
            done = self._run(
                ["udisksctl", "power-off", "--block-device", stick.disk, "--no-user-interaction"]
            )
            if done.returncode != 0:  # unmounted is enough to pull it out safely
                log.info("USB stick not powered off: %s", _first_line(done.stderr or ""))
        log.info("USB stick %s released", stick.name)


def _first_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[0] if lines else "no reason given"
