"""The vQPU's HTTP/1.1 layer: asyncio, bounded in everything a peer controls.

Why not the standard library's ``ThreadingHTTPServer``: it gives every connection a
thread for as long as the connection is open, so idle peers (even ones without the
token) each hold a thread. Here an open connection costs a socket and a coroutine;
request handlers run in a small thread pool, and long-polls wait on futures, not
threads. Limits (``ServerLimits``):

- at most ``max_connections`` open at once: a new one closes the longest-idle
  connection, or, when every connection is busy with a request, gets a 503 and is closed;
- a connection must send a whole request head within ``idle_seconds`` of opening or of
  its previous reply, else it is closed (a long-poll is a request: it is not idle);
- heads up to ``max_head_bytes`` and ``max_headers`` lines, bodies up to
  ``max_body_bytes`` arriving within ``idle_seconds`` plus ``min_body_rate``;
- replies must be taken by the peer within the same kind of deadline.

The wire format is the subset our client speaks (``backends/wire.py``): Content-Length
bodies only (no chunked encoding), keep-alive by default, JSON replies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import ssl
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)

METHODS = frozenset({"GET", "POST", "DELETE", "PUT", "PATCH"})


@dataclass(frozen=True)
class ServerLimits:
    max_connections: int = 512
    idle_seconds: float = 5.0  # for a request head after opening or after the last reply
    max_head_bytes: int = 64 * 1024
    max_headers: int = 100
    max_body_bytes: int = 64 * 1024 * 1024
    min_body_rate: float = 1024 * 1024  # bytes/s a body (or a reply) must at least move at
    max_discard_bytes: int = 64 * 1024  # an unread body up to this is skipped, larger closes


class HTTPError(Exception):
    """A request that gets a 4xx/5xx with this one-line message."""

    def __init__(self, status: HTTPStatus, message: str, close: bool = False, kind: str | None = None):
        super().__init__(message)
        self.status = status
        self.close = close
        self.kind = kind


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    version: str
    content_length: int | None = None
    _reader: asyncio.StreamReader | None = field(default=None, repr=False)
    _limits: ServerLimits | None = field(default=None, repr=False)
    body_read: bool = False
    peer: str = ""  # the client's address, for logs

    async def body(self) -> bytes:
        """The body, read now (so an unauthorised peer never gets it read)."""
        assert self._reader is not None and self._limits is not None
        if self.content_length is None:
            raise HTTPError(HTTPStatus.LENGTH_REQUIRED, "a body needs a Content-Length", close=True)
        if self.content_length > self._limits.max_body_bytes:
            raise HTTPError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"request of {self.content_length} bytes exceeds the limit of {self._limits.max_body_bytes}",
                close=True,
            )
        self.body_read = True
        try:
            async with asyncio.timeout(_transfer_seconds(self.content_length, self._limits)):
                return await self._reader.readexactly(self.content_length)
        except asyncio.IncompleteReadError:
            raise HTTPError(HTTPStatus.BAD_REQUEST, "request body shorter than its Content-Length", close=True) from None
        except TimeoutError:
            raise HTTPError(HTTPStatus.REQUEST_TIMEOUT, "request body did not arrive in time", close=True) from None


@dataclass
class Reply:
    status: HTTPStatus
    body: bytes  # JSON
    close: bool = False

    @classmethod
    def json(cls, status: HTTPStatus, document: Any, close: bool = False) -> Reply:
        return cls(status, json.dumps(document, separators=(",", ":")).encode(), close)


Handler = Callable[[Request], Awaitable[Reply]]


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.busy = False
        peer = writer.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) and peer else ""

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class HTTPServer:
    """Serves ``handler`` on its own event-loop thread until ``close``."""

    def __init__(
        self,
        host: str,
        port: int,
        handler: Handler,
        limits: ServerLimits = ServerLimits(),
        tls: ssl.SSLContext | None = None,
    ):
        self.limits = limits
        self.handler = handler
        self.tls = tls
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(_quiet_exception_handler)
        self._idle: OrderedDict[_Connection, None] = OrderedDict()  # longest idle first
        self._open: set[_Connection] = set()
        self._thread: threading.Thread | None = None
        _raise_fd_limit(limits.max_connections + 256)
        # Bind now, in the caller's thread, so a taken port fails ``vqpu serve`` at once.
        self._socket = _listening_socket(host, port)
        self.port: int = self._socket.getsockname()[1]
        self._server: asyncio.base_events.Server | None = None

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self._server = self.loop.run_until_complete(
                asyncio.start_server(self._accept, sock=self._socket, limit=self.limits.max_head_bytes, backlog=1024)
            )
            ready.set()
            self.loop.run_forever()

        self._thread = threading.Thread(target=run, name="http", daemon=True)
        self._thread.start()
        ready.wait()

    def close(self) -> None:
        """Stop accepting, close every connection, stop the loop."""
        if self._thread is None:
            self._socket.close()
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for connection in list(self._open):
                connection.close()
            await asyncio.sleep(0)

        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback`` on the loop thread (from any thread); a no-op once closed."""
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(callback, *args)

    # ------------------------------------------------------------- connections

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = _Connection(reader, writer)
        if len(self._open) >= self.limits.max_connections and not self._evict_idle():
            await self._refuse(connection)
            return
        self._open.add(connection)
        try:
            _no_delay(writer)
            if self.tls is not None and not await self._start_tls(connection):
                return
            await self._serve(connection)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError, ssl.SSLError, OSError):
            pass  # the peer went away or was too slow: nothing to answer
        finally:
            self._open.discard(connection)
            self._idle.pop(connection, None)
            connection.close()

    def _evict_idle(self) -> bool:
        """Close the connection idle the longest; False if every connection is busy."""
        if not self._idle:
            return False
        victim, _ = self._idle.popitem(last=False)
        self._open.discard(victim)
        victim.close()
        return True

    async def _refuse(self, connection: _Connection) -> None:
        reply = Reply.json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": f"the vQPU has {len(self._open)} busy connections, its limit; retry later"}, close=True)
        with contextlib.suppress(Exception):
            connection.writer.write(_encode(reply))
            async with asyncio.timeout(1.0):
                await connection.writer.drain()
        connection.close()

    async def _start_tls(self, connection: _Connection) -> bool:
        self._idle[connection] = None  # a handshake in progress may be evicted like an idle peer
        try:
            await connection.writer.start_tls(self.tls, ssl_handshake_timeout=self.limits.idle_seconds)
        except (ssl.SSLError, ConnectionError, TimeoutError, OSError):
            return False
        finally:
            self._idle.pop(connection, None)
        return True

    async def _serve(self, connection: _Connection) -> None:
        while True:
            self._idle[connection] = None
            try:
                async with asyncio.timeout(self.limits.idle_seconds):
                    head = await self._read_head(connection.reader)
            except TimeoutError:
                return  # idle (or too slow to send a head): close quietly
            except HTTPError as exc:
                await self._send(connection, Reply.json(exc.status, {"error": str(exc)}, close=True))
                return
            finally:
                self._idle.pop(connection, None)
            if head is None:
                return  # the peer closed
            connection.busy = True
            try:
                reply = await self._handle(connection, head)
            finally:
                connection.busy = False
            if not await self._send(connection, reply) or reply.close:
                return

    async def _handle(self, connection: _Connection, head: bytes) -> Reply:
        try:
            request = self._parse(head, connection.reader)
            request.peer = connection.peer
        except HTTPError as exc:
            return Reply.json(exc.status, {"error": str(exc)}, close=True)
        try:
            reply = await self.handler(request)
        except HTTPError as exc:
            document = {"error": str(exc)}
            if exc.kind:
                document["kind"] = exc.kind
            reply = Reply.json(exc.status, document, close=exc.close)
        if not reply.close and _wants_close(request):
            reply.close = True
        if not request.body_read and request.content_length and not reply.close:
            reply.close = not await self._discard(request)
        return reply

    async def _discard(self, request: Request) -> bool:
        """Skip a body nobody read, so the next request starts where it should."""
        length = request.content_length or 0
        if length > self.limits.max_discard_bytes:
            return False
        assert request._reader is not None
        try:
            async with asyncio.timeout(self.limits.idle_seconds):
                await request._reader.readexactly(length)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            return False
        request.body_read = True
        return True

    async def _read_head(self, reader: asyncio.StreamReader) -> bytes | None:
        """Request line and headers, or None at a clean end of stream."""
        lines: list[bytes] = []
        size = 0
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                if not lines and not exc.partial:
                    return None
                raise HTTPError(HTTPStatus.BAD_REQUEST, "request head cut short") from None
            except asyncio.LimitOverrunError:
                raise HTTPError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"a request line or header exceeds {self.limits.max_head_bytes} bytes") from None
            size += len(line)
            if not lines and line in (b"\r\n", b"\n"):
                continue  # tolerated blank lines before a request (RFC 9112 2.2)
            if line in (b"\r\n", b"\n"):
                return b"".join(lines)
            lines.append(line)
            if size > self.limits.max_head_bytes or len(lines) > self.limits.max_headers + 1:
                raise HTTPError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"request head exceeds {self.limits.max_head_bytes} bytes or {self.limits.max_headers} headers")

    def _parse(self, head: bytes, reader: asyncio.StreamReader) -> Request:
        text = head.decode("latin-1")
        first, _, rest = text.partition("\n")
        parts = first.rstrip("\r").split(" ")
        if len(parts) != 3 or not parts[0] or not parts[1]:
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"bad request line {first.strip()[:80]!r}")
        method, target, version = parts
        if version not in ("HTTP/1.1", "HTTP/1.0"):
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"unsupported protocol {version[:20]!r}; speak HTTP/1.1")
        if method not in METHODS:
            raise HTTPError(HTTPStatus.NOT_IMPLEMENTED, f"Unsupported method ({method[:20]!r})")
        if len(target) > 8192:
            raise HTTPError(HTTPStatus.REQUEST_URI_TOO_LONG, "request target longer than 8192 characters")
        headers: dict[str, str] = {}
        for line in rest.split("\n"):
            line = line.rstrip("\r")
            if not line:
                continue
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip() or line[0] in " \t":
                raise HTTPError(HTTPStatus.BAD_REQUEST, f"malformed header line {line[:40]!r}")
            name = name.lower()
            value = value.strip()
            if name in headers and name in ("content-length", "authorization", "host", "transfer-encoding"):
                raise HTTPError(HTTPStatus.BAD_REQUEST, f"duplicate {name} header")
            headers[name] = value
        if "transfer-encoding" in headers:
            raise HTTPError(HTTPStatus.NOT_IMPLEMENTED, "Transfer-Encoding is not supported; send a Content-Length")
        length = None
        if "content-length" in headers:
            raw = headers["content-length"]
            if not raw.isdigit() or len(raw) > 18:
                raise HTTPError(HTTPStatus.BAD_REQUEST, "Content-Length is not a number")
            length = int(raw)
        url = urlsplit(target)
        return Request(method, url.path, parse_qs(url.query), headers, version, length, reader, self.limits)

    async def _send(self, connection: _Connection, reply: Reply) -> bool:
        writer = connection.writer
        if writer.is_closing():
            return False
        try:
            writer.write(_encode(reply))
            async with asyncio.timeout(_transfer_seconds(len(reply.body), self.limits)):
                await writer.drain()
        except (ConnectionError, TimeoutError, OSError):
            return False
        return True


def _transfer_seconds(size: int, limits: ServerLimits) -> float:
    return limits.idle_seconds + size / limits.min_body_rate


def _wants_close(request: Request) -> bool:
    connection = request.headers.get("connection", "").lower()
    if request.version == "HTTP/1.0":
        return connection != "keep-alive"
    return connection == "close"


def _encode(reply: Reply) -> bytes:
    head = [f"HTTP/1.1 {reply.status.value} {reply.status.phrase}", "Content-Type: application/json", f"Content-Length: {len(reply.body)}"]
    if reply.status == HTTPStatus.SERVICE_UNAVAILABLE:
        head.append("Retry-After: 1")
    if reply.close:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + reply.body


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _raise_fd_limit(wanted: int) -> None:
    """Room for ``max_connections`` sockets besides the files a service needs."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _no_delay(writer: asyncio.StreamWriter) -> None:
    # A reply's head and body leave in one write, but a peer's delayed ACK would still
    # hold the next reply ~40 ms with Nagle on.
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _quiet_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Peers that misbehave (bad TLS, resets) are normal on a network: debug, not error."""
    exc = context.get("exception")
    if isinstance(exc, (ConnectionError, ssl.SSLError, TimeoutError, OSError)):
        log.debug("connection: %s", context.get("message"))
        return
    loop.default_exception_handler(context)
