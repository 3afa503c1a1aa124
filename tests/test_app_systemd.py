"""sd_notify over a plain AF_UNIX datagram socket: READY, STATUS, WATCHDOG pacing, no-op outside."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

from device.app.systemd import Notifier


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def server(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(1)
    yield sock, str(tmp_path / "notify")
    sock.close()


def test_ready_and_status_reach_the_socket(server):
    sock, path = server
    notifier = Notifier(environ={"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready("scanning")
    assert sock.recv(1024) == b"READY=1\nSTATUS=scanning"
    assert notifier.status("camera missing")
    assert sock.recv(1024) == b"STATUS=camera missing"


def test_abstract_socket_address():
    name = f"skinscan-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(1)
    try:
        assert Notifier(environ={"NOTIFY_SOCKET": "@" + name}).notify("READY=1")
        assert sock.recv(64) == b"READY=1"
    finally:
        sock.close()


def test_watchdog_pings_at_half_the_timeout(server):
    sock, path = server
    clock = Clock()
    notifier = Notifier(environ={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"}, clock=clock)
    assert notifier.watchdog_interval == 1.0
    assert notifier.watchdog()
    clock.now = 0.5
    assert not notifier.watchdog()
    clock.now = 1.0
    assert notifier.watchdog()
    assert [sock.recv(64), sock.recv(64)] == [b"WATCHDOG=1", b"WATCHDOG=1"]


def test_watchdog_for_another_pid_is_ignored(server):
    _, path = server
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert Notifier(environ=env).watchdog_interval is None


def test_outside_systemd_everything_is_a_quiet_no_op():
    notifier = Notifier(environ={})
    assert not notifier.enabled
    assert not notifier.ready()
    assert not notifier.watchdog()
    assert notifier.sent == []


def test_a_vanished_socket_is_logged_not_raised(tmp_path):
    notifier = Notifier(environ={"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert not notifier.ready()


def test_a_full_socket_never_blocks_the_app(server):
    _sock, path = server
    notifier = Notifier(environ={"NOTIFY_SOCKET": path})
    # Nobody reads: the queue fills, then sends fail quickly instead of blocking.
    results = [notifier.notify("WATCHDOG=1") for _ in range(5000)]
    assert results[0] and not results[-1]
