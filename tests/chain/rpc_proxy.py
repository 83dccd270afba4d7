"""A small HTTP proxy in front of anvil that a test can cut, or make lose the answer to a chosen JSON-RPC method."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests


class RpcProxy:
    """Listens on 127.0.0.1 (a free port) and forwards JSON-RPC to `upstream`.

    - `cut()`: stop listening and close every open connection (clients get "connection refused"); `restore()`
      listens again on the same port.
    - `lose_answer(method, times)`: forward the next `times` requests calling `method`, then close the connection
      instead of answering (the node did the work; the client never hears of it).
    - `swallow(method)`: close the connection without forwarding requests calling `method`.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.calls: list[str] = []
        self._lose: dict[str, int] = {}
        self._swallow: set[str] = set()
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self.restore()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def lose_answer(self, method: str, times: int = 1) -> None:
        with self._lock:
            self._lose[method] = times

    def swallow(self, method: str) -> None:
        with self._lock:
            self._swallow.add(method)

    def allow(self, method: str) -> None:
        """Undo `swallow(method)`."""
        with self._lock:
            self._swallow.discard(method)

    def count(self, method: str) -> int:
        with self._lock:
            return self.calls.count(method)

    def restore(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with proxy._lock:
                    proxy._conns.add(self.connection)

            def finish(self) -> None:
                with proxy._lock:
                    proxy._conns.discard(self.connection)
                super().finish()

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    method = json.loads(body).get("method", "?")
                except (ValueError, AttributeError):
                    method = "?"
                with proxy._lock:
                    proxy.calls.append(method)
                    swallow = method in proxy._swallow
                    lose = proxy._lose.get(method, 0) > 0
                    if lose:
                        proxy._lose[method] -= 1
                if swallow:
                    self.close_connection = True
                    return
                answer = requests.post(
                    proxy.upstream, data=body, headers={"Content-Type": "application/json"}, timeout=30
                )
                if lose:
                    self.close_connection = True
                    return
                self.send_response(answer.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, name="rpc-proxy", daemon=True).start()

    def cut(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server = None
        with self._lock:
            for conn in list(self._conns):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()

    def close(self) -> None:
        self.cut()
