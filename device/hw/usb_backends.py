"""Choosing the USB-stick backend (:mod:`device.hw.usb`) by name."""

from __future__ import annotations

import os
from pathlib import Path

from device.hw.usb import NoSticks, UsbError, UsbSticks

USB_BACKENDS = ("udisks", "folder", "none")


def make_usb(backend: str, folder: str | os.PathLike[str] | None = None) -> UsbSticks:
    """The USB backend: "udisks" (Pi, desktop), "folder" (``folder`` stands for a stick)
    or "none".

    Raises:
        UsbError: an unknown backend, or "folder" without a folder.
    """
    if backend == "folder":
        if folder is None:
            raise UsbError("the folder USB backend needs a folder (--usb DIR)")
        from device.hw.usb_folder import FolderStick

        return FolderStick(Path(folder))
    if backend == "udisks":
        from device.hw.usb_udisks import UdisksSticks

        return UdisksSticks()
    if backend == "none":
        return NoSticks()
    raise UsbError(f"unknown USB backend {backend!r}; choose one of {', '.join(USB_BACKENDS)}")
