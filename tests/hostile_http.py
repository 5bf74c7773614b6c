"""A real HTTP server on 127.0.0.1 that behaves like slow or hostile webhook receivers.

The answer depends on the path:

* ``/ok`` answers 200 at once;
* ``/status/N`` answers N at once;
* ``/redirect/N/<URL-escaped target>`` answers N with that Location;
* ``/trickle`` sends a 200 status line, then one header byte every ``trickle_s`` seconds for
  ``trickle_for_s`` seconds (each byte arrives well within any per-read timeout);
* ``/endless`` sends a 200 and a body without end (until the client goes away, or
  ``endless_cap`` bytes, so a client that reads it all still ends).

Every connection is handled in its own daemon thread and records a :class:`Hit`; the server
stops accepting after ``lifetime_s`` even if nobody closes it, so nothing outlives a test.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

STATUS_TEXT = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
               404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
               410: "Gone", 413: "Content Too Large", 422: "Unprocessable Content",
               425: "Too Early", 429: "Too Many Requests", 500: "Internal Server Error"}


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    arrived: float
    finished: float | None = None
    sent_bytes: int = 0
    client_gone: bool = False


@dataclass
class HostileServer:
    trickle_s: float = 0.25
    trickle_for_s: float = 30.0
    endless_cap: int = 512 * 1024 * 1024
    lifetime_s: float = 120.0
    hits: list[Hit] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self.arrived = threading.Condition(self._lock)
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def hits_for(self, path: str) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if h.path == path]

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)
        self._sock.close()

    def __enter__(self) -> HostileServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- serving --------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        end = time.monotonic() + self.lifetime_s
        while not self._closed.is_set() and time.monotonic() < end:
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        hit: Hit | None = None
        try:
            conn.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            headers = {k.strip().lower(): v.strip() for k, _, v in
                       (line.partition(":") for line in lines[1:])}
            need = int(headers.get("content-length", "0"))
            while len(body) < need:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                body += chunk
            hit = Hit(path, headers, time.monotonic())
            with self._lock:
                self.hits.append(hit)
                self.arrived.notify_all()
            if path == "/trickle":
                self._trickle(conn, hit)
            elif path == "/endless":
                self._endless(conn, hit)
            elif path.startswith("/redirect/"):  # /redirect/<code>/<where, URL-escaped>
                _, _, code_text, where = path.split("/", 3)
                conn.sendall(f"HTTP/1.1 {code_text} Moved\r\nLocation: "
                             f"{urllib.parse.unquote(where)}\r\nContent-Length: 0\r\n"
                             "Connection: close\r\n\r\n".encode())
            else:
                code = int(path.rsplit("/", 1)[-1]) if path.startswith("/status/") else 200
                conn.sendall(f"HTTP/1.1 {code} {STATUS_TEXT.get(code, 'X')}\r\n"
                             "Content-Length: 0\r\nConnection: close\r\n\r\n".encode())
        except OSError:
            if hit is not None:
                hit.client_gone = True
        finally:
            if hit is not None:
                hit.finished = time.monotonic()
            conn.close()

    def _trickle(self, conn: socket.socket, hit: Hit) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        end = time.monotonic() + self.trickle_for_s
        while time.monotonic() < end and not self._closed.is_set():
            conn.sendall(b"a")
            hit.sent_bytes += 1
            if self._closed.wait(self.trickle_s):
                break
        conn.sendall(b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    def _endless(self, conn: socket.socket, hit: Hit) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     b"Connection: close\r\n\r\n")
        block = b"x" * 65536
        while hit.sent_bytes < self.endless_cap and not self._closed.is_set():
            conn.sendall(block)
            hit.sent_bytes += len(block)
