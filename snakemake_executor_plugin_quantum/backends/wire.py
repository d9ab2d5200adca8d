"""The client side of the vQPU wire: a strict, small HTTP/1.1 JSON connection.

The server is ours (``service/http.py``); this client speaks only the subset it needs
(Content-Length bodies, keep-alive). ``http.client`` would do, but it imports ``email``
and ``ssl``, ~40 ms on every job's ``qrun``. ``ssl`` is imported only for a service
that serves TLS (one bound off loopback), whose certificate is pinned by the SHA-256
fingerprint in its event file.

Everything a peer sends is bounded: the status line and each header line (64 KiB), the
number of headers (100), the body (``max_reply_bytes``, read in chunks so a lying
Content-Length allocates nothing up front) and the time the whole reply may take.
"""

from __future__ import annotations

import socket
import time

MAX_LINE = 65536
MAX_HEADERS = 100
CHUNK = 256 * 1024


class WireError(OSError):
    """The connection failed or the peer broke the protocol. ``closed``: the peer refused or
    closed the connection (a process that is gone, or going), not a timeout."""

    closed = False

    @classmethod
    def of(cls, exc: OSError) -> WireError:
        error = cls(str(exc) or type(exc).__name__)
        error.closed = isinstance(exc, ConnectionError)
        return error


class ProtocolError(WireError):
    """The peer answered, but not as the vQPU wire allows (too big, malformed)."""


class CertificateMismatch(WireError):
    """The peer's TLS certificate is not the one its event file names."""


class JSONConnection:
    def __init__(
        self,
        host: str,
        port: int,
        timeout: float,
        max_reply_bytes: int = 256 * 1024 * 1024,
        tls_sha256: str | None = None,
    ):
        self.host = host
        self.port = port
        self.timeout = timeout
        self.max_reply_bytes = max_reply_bytes
        self.tls_sha256 = tls_sha256
        self._sock: socket.socket | None = None
        self._buffer = bytearray()  # received, not yet consumed
        # True while a request awaits its reply. If an exchange was interrupted (a signal
        # while long-polling), the reply may still come: never reuse that connection.
        self._in_flight = False

    def _connect(self, deadline: float) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=max(0.001, deadline - time.monotonic()))
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls_sha256:
                sock = _pinned_tls(sock, self.tls_sha256)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._buffer.clear()

    def close(self) -> None:
        self._in_flight = False
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._buffer.clear()

    def request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str], seconds: float | None = None
    ) -> tuple[int, bytes]:
        """Send one request; returns (status, body). Raises WireError on any failure.

        ``seconds`` bounds the whole exchange (default: the connection's timeout).
        """
        deadline = time.monotonic() + (self.timeout if seconds is None else seconds)
        if self._in_flight:
            self.close()
        reused = self._sock is not None
        try:
            if self._sock is None:
                self._connect(deadline)
            return self._exchange(method, path, body, headers, deadline)
        except CertificateMismatch:
            self.close()
            raise
        except ValueError as exc:
            self.close()
            raise ProtocolError(str(exc)) from None
        except OSError as exc:
            self.close()
            if not (reused and isinstance(exc, (ConnectionResetError, BrokenPipeError, _Closed))):
                raise WireError.of(exc) from None
        try:  # the server closed an idle keep-alive connection: once more, on a new one
            self._connect(deadline)
            return self._exchange(method, path, body, headers, deadline)
        except CertificateMismatch:
            self.close()
            raise
        except ValueError as again:
            self.close()
            raise ProtocolError(str(again)) from None
        except OSError as again:
            self.close()
            raise WireError.of(again) from None

    def _exchange(self, method: str, path: str, body: bytes | None, headers: dict[str, str], deadline: float) -> tuple[int, bytes]:
        assert self._sock is not None
        self._in_flight = True
        self._until(deadline)
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body or b'')}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self._sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))
        status_line = self._line(deadline)
        if not status_line:
            raise _Closed("connection closed by the vQPU")
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise ValueError(f"bad status line {status_line[:80]!r}")
        status = int(parts[1])
        length = None
        close = False
        for _ in range(MAX_HEADERS + 1):
            line = self._line(deadline)
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
        else:
            raise ValueError(f"reply with more than {MAX_HEADERS} headers")
        if length is None or length < 0:
            raise ValueError("reply without a valid Content-Length")
        if length > self.max_reply_bytes:
            raise ValueError(f"reply of {length} bytes exceeds the client's limit of {self.max_reply_bytes}")
        data = self._body(length, deadline)
        self._in_flight = False
        if close:
            self.close()
        return status, data

    def _until(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the vQPU did not answer in time")
        assert self._sock is not None
        self._sock.settimeout(remaining)

    def _fill(self, deadline: float) -> None:
        """One receive, within what is left of the deadline (a trickling peer runs out of it)."""
        self._until(deadline)
        assert self._sock is not None
        chunk = self._sock.recv(CHUNK)
        if not chunk:
            raise _Closed("connection closed by the vQPU")
        self._buffer += chunk

    def _line(self, deadline: float) -> bytes:
        """One line, or b"" if the peer closed before sending any byte of it."""
        while (end := self._buffer.find(b"\n", 0, MAX_LINE + 1)) < 0:
            if len(self._buffer) > MAX_LINE:
                raise ValueError(f"reply line longer than {MAX_LINE} bytes")
            try:
                self._fill(deadline)
            except _Closed:
                if self._buffer:
                    raise
                return b""
        line = bytes(self._buffer[: end + 1])
        del self._buffer[: end + 1]
        return line

    def _body(self, length: int, deadline: float) -> bytes:
        while len(self._buffer) < length:
            try:
                self._fill(deadline)
            except _Closed:
                raise _Closed("reply cut short") from None
        data = bytes(self._buffer[:length])
        del self._buffer[:length]
        return data


def _pinned_tls(sock: socket.socket, fingerprint: str) -> socket.socket:
    """TLS to a service whose certificate is pinned: checked before any byte is sent.

    The certificate is self-signed, so there is no chain to verify: what proves the peer
    is the service is that its certificate's SHA-256 matches the event file's.
    """
    import hashlib
    import hmac
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # replaced by the pin below
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    wrapped = context.wrap_socket(sock)
    der = wrapped.getpeercert(binary_form=True) or b""
    if not hmac.compare_digest(hashlib.sha256(der).hexdigest(), fingerprint.lower()):
        wrapped.close()
        raise CertificateMismatch("its TLS certificate does not match the fingerprint in its event file")
    return wrapped


class _Closed(ConnectionError):
    pass
