"""systemd's notify protocol, written by hand: one datagram to `$NOTIFY_SOCKET` per state change.

`READY=1` once the node is up, `STATUS=...` as a human line for `systemctl status`, `WATCHDOG=1` at half of
`$WATCHDOG_USEC` while the event loop is healthy, `RELOADING=1` (with `MONOTONIC_USEC`) around a SIGHUP reload,
`STOPPING=1` on shutdown. Without `$NOTIFY_SOCKET` every call is a no-op. A socket path starting with `@` is in the
abstract namespace. A datagram socket whose reader lags fills up after a few messages (net.unix.max_dgram_qlen):
STATUS and WATCHDOG are then dropped rather than wait (they must never stall the event loop); the state changes
(READY, RELOADING, STOPPING) wait up to `state_timeout_s` for room, since systemd must not miss them.
"""

from __future__ import annotations

import logging
import os
import socket
import time

logger = logging.getLogger(__name__)


class SystemdNotifier:
    """Sends notify datagrams; never raises (systemd being away must not take the node down)."""

    def __init__(self, environ: dict[str, str] | None = None, *, state_timeout_s: float = 2.0) -> None:
        self.state_timeout_s = state_timeout_s
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if address:
            self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_interval_s: float | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_interval_s = int(usec) / 1e6 / 2
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *, wait_s: float = 0.0, **fields: str | int) -> bool:
        """Send `KEY=value` lines, e.g. `notify(READY=1, STATUS="up")`; True if the datagram went out.

        `wait_s`: how long to wait for room in the receiver's queue (0: drop at once if it is full).
        """
        if self.address is None:
            return False
        payload = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.settimeout(wait_s if wait_s > 0 else 0.0)
            self._sock.sendto(payload, self.address)
            return True
        except OSError as exc:  # including BlockingIOError and TimeoutError: the receiver's queue is full
            logger.debug("sd_notify to %r failed: %s", self.address, exc)
            return False

    def ready(self, status: str) -> bool:
        return self.notify(READY=1, STATUS=status, wait_s=self.state_timeout_s)

    def status(self, status: str) -> bool:
        return self.notify(STATUS=status)

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG=1)

    def reloading(self) -> bool:
        return self.notify(RELOADING=1, MONOTONIC_USEC=time.monotonic_ns() // 1000, wait_s=self.state_timeout_s)

    def stopping(self, status: str) -> bool:
        return self.notify(STOPPING=1, STATUS=status, wait_s=self.state_timeout_s)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
