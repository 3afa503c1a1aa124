"""A folder standing for a plugged-in USB stick (``skinscan run --usb DIR``).

The stick is "plugged in" while the folder exists and "pulled out" when it does
not, so a tester can try both. Mounting and releasing change nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path

from device.hw.usb import Stick, UsbError, check_writable

log = logging.getLogger(__name__)


class FolderStick:
    """A folder as a USB stick.

    Args:
        folder: the folder; it stands for a plugged-in stick while it exists.
    """

    name = "folder"

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.released = 0

    def find(self) -> list[Stick]:
        """The folder, while it exists."""
        if not self.folder.is_dir():
            return []
        return [Stick(name=self.folder.name or "USB stick", device=str(self.folder),
                      mount_point=self.folder)]  # fmt: skip

    def mount(self, stick: Stick) -> Path:
        """The folder itself, once checked writable."""
        if not self.folder.is_dir():
            raise UsbError(f"the USB stick ({self.folder}) is gone")
        check_writable(self.folder)
        return self.folder

    def release(self, stick: Stick) -> None:
        """Nothing to unmount; counted so that tests see the app released it."""
        self.released += 1
        log.info("simulated stick %s released", self.folder)
