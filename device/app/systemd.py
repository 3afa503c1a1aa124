"""systemd's notify protocol over a plain AF_UNIX datagram socket (no extra dependency).

With ``Type=notify`` the service manager waits for ``READY=1``; with
``WatchdogSec=`` it expects ``WATCHDOG=1`` at least every ``WATCHDOG_USEC``
microseconds and restarts a hung app. Outside systemd ($NOTIFY_SOCKET unset)
every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends notifications to systemd and paces watchdog pings.

    Args:
        environ: where to read NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID.
        clock: monotonic clock in seconds.
    """

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        environ = os.environ if environ is None else environ
        self._clock = clock
        address = environ.get("NOTIFY_SOCKET", "")
        # An abstract socket is written with a leading "@" and addressed with a NUL byte.
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_interval: float | None = None
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            # Ping at half the timeout, as sd_watchdog_enabled(3) advises.
            self.watchdog_interval = int(usec) / 1e6 / 2
        self._last_ping: float | None = None
        self.sent: list[str] = []

    @property
    def enabled(self) -> bool:
        """True under systemd with a notify socket."""
        return bool(self.address)

    def notify(self, message: str) -> bool:
        """Send one notification (e.g. "READY=1"); False when not under systemd or on error."""
        if not self.address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # Never block: a stalled service manager must not freeze the screen.
                sock.sendto(message.encode(), socket.MSG_DONTWAIT, self.address)
        except OSError as exc:
            log.warning("sd_notify %r failed: %s", message, exc)
            return False
        self.sent.append(message)
        return True

    def ready(self, status: str = "") -> bool:
        """Tell systemd the service is up."""
        return self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def status(self, status: str) -> bool:
        """Update the status line shown by ``systemctl status``."""
        return self.notify(f"STATUS={status}")

    def stopping(self) -> bool:
        """Tell systemd the service is shutting down."""
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        """Ping the watchdog if one is configured and a ping is due."""
        if self.watchdog_interval is None:
            return False
        now = self._clock()
        if self._last_ping is not None and now - self._last_ping < self.watchdog_interval:
            return False
        self._last_ping = now
        return self.notify("WATCHDOG=1")
