"""The client side of the vQPU wire: a strict, small HTTP/1.1 JSON connection.

The server is the standard library's HTTP server; this client speaks only the subset
it needs (Content-Length bodies, keep-alive) to that server. ``http.client`` would
do, but it imports ``email`` and ``ssl``, ~40 ms on every job's ``qrun``.
"""

from __future__ import annotations

import socket


class WireError(OSError):
    """The connection failed or the peer broke the protocol."""


class JSONConnection:
    def __init__(self, host: str, port: int, timeout: float):
        self.host = host
        self.port = port
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._reader = None
        # True while a request awaits its reply. If an exchange was interrupted (a signal
        # while long-polling), the reply may still come: never reuse that connection.
        self._in_flight = False

    def _connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._reader = sock.makefile("rb")

    def close(self) -> None:
        self._in_flight = False
        if self._reader is not None:
            self._reader.close()
        if self._sock is not None:
            self._sock.close()
        self._sock = self._reader = None

    def request(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]:
        """Send one request; returns (status, body). Raises WireError on any failure."""
        if self._in_flight:
            self.close()
        reused = self._sock is not None
        try:
            if self._sock is None:
                self._connect()
            return self._exchange(method, path, body, headers)
        except (OSError, ValueError) as exc:
            self.close()
            if not (reused and isinstance(exc, (ConnectionResetError, BrokenPipeError, _Closed))):
                raise WireError(str(exc) or type(exc).__name__) from None
        try:  # the server closed an idle keep-alive connection: once more, on a new one
            self._connect()
            return self._exchange(method, path, body, headers)
        except (OSError, ValueError) as again:
            self.close()
            raise WireError(str(again) or type(again).__name__) from None

    def _exchange(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]:
        assert self._sock is not None and self._reader is not None
        self._in_flight = True
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body or b'')}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self._sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))
        status_line = self._reader.readline(65537)
        if not status_line:
            raise _Closed("connection closed by the vQPU")
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ValueError(f"bad status line {status_line[:80]!r}")
        status = int(parts[1])
        length = None
        close = False
        while True:
            line = self._reader.readline(65537)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "connection" and value.strip().lower() == "close":
                close = True
            elif name == "transfer-encoding":
                raise ValueError("chunked replies are not part of the vQPU wire")
        if length is None:
            raise ValueError("reply without Content-Length")
        data = self._reader.read(length)
        if len(data) != length:
            raise _Closed("reply cut short")
        self._in_flight = False
        if close:
            self.close()
        return status, data


class _Closed(ConnectionError):
    pass
