"""Restart backoff, and sd_notify datagrams received by a real unix datagram socket."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from zoo_node.control.backoff import Backoff
from zoo_node.control.sd_notify import SystemdNotifier


def test_backoff_doubles_caps_and_resets_after_a_stable_run() -> None:
    backoff = Backoff(initial_s=1, max_s=8, stable_after_s=30)
    assert [backoff.next_delay(ran_for_s=0.5) for _ in range(6)] == [1, 2, 4, 8, 8, 8]
    assert backoff.next_delay(ran_for_s=31) == 1  # it ran long enough: start over
    assert backoff.next_delay(ran_for_s=1) == 2
    with pytest.raises(ValueError):
        Backoff(initial_s=5, max_s=1)


@pytest.fixture
def notify_socket(tmp_path: Path):
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    yield path, sock
    sock.close()


def _fields(datagram: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in datagram.decode().splitlines())


def test_ready_status_watchdog_reloading_stopping(notify_socket) -> None:
    path, sock = notify_socket
    notifier = SystemdNotifier(
        {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())}
    )
    assert notifier.enabled and notifier.watchdog_interval_s == 2.0
    assert notifier.ready("up: 2 peers")
    assert _fields(sock.recv(4096)) == {"READY": "1", "STATUS": "up: 2 peers"}
    assert notifier.watchdog()
    assert _fields(sock.recv(4096)) == {"WATCHDOG": "1"}
    assert notifier.reloading()
    fields = _fields(sock.recv(4096))
    assert fields["RELOADING"] == "1" and int(fields["MONOTONIC_USEC"]) > 0
    assert notifier.stopping("bye")
    assert _fields(sock.recv(4096)) == {"STOPPING": "1", "STATUS": "bye"}
    notifier.close()


def test_a_reader_that_does_not_read_never_blocks_the_sender_for_long(notify_socket) -> None:
    path, sock = notify_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(path)}, state_timeout_s=0.2)
    sent = [notifier.status(f"line {i}") for i in range(500)]  # far beyond the socket's queue
    assert sent[0] and not all(sent)  # the first went out; once the queue was full, the rest were dropped
    assert not notifier.ready("up")  # a state change waits a little for room, then gives up
    assert _fields(sock.recv(4096)) == {"STATUS": "line 0"}
    assert notifier.ready("up")  # there is room again


def test_abstract_socket_and_no_socket() -> None:
    name = f"@zoo-notify-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name[1:])
    sock.settimeout(5)
    try:
        assert SystemdNotifier({"NOTIFY_SOCKET": name}).ready("x")
        assert _fields(sock.recv(4096))["READY"] == "1"
    finally:
        sock.close()
    silent = SystemdNotifier({})
    assert not silent.enabled and not silent.ready("x") and silent.watchdog_interval_s is None
    # A watchdog meant for another process is not ours to pet.
    assert (
        SystemdNotifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}).watchdog_interval_s
        is None
    )
    # A socket that went away does not raise.
    assert not SystemdNotifier({"NOTIFY_SOCKET": "/nonexistent/notify"}).ready("x")
