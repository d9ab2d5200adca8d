"""The vQPU client's wire against a hostile peer on a real loopback socket."""

from __future__ import annotations

import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator

import pytest

from snakemake_executor_plugin_quantum.backends.wire import (
    CertificateMismatch,
    JSONConnection,
    ProtocolError,
    WireError,
)


class Peer:
    """A one-connection server that reads a request and answers with ``reply`` bytes."""

    def __init__(self, reply: bytes, trickle: float = 0.0):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.reply, self.trickle = reply, trickle
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            conn.recv(65536)
            try:
                conn.sendall(self.reply)
                if self.trickle:
                    for _ in range(int(10 / self.trickle)):  # at most 10 s
                        conn.sendall(b"x")
                        time.sleep(self.trickle)
                else:
                    conn.settimeout(10)
                    conn.recv(1)  # until the client hangs up
            except OSError:
                pass  # the client gave up, as it should

    def close(self) -> None:
        self.sock.close()
        self.thread.join(12)


@pytest.fixture
def peer(request: pytest.FixtureRequest) -> Iterator[Peer]:
    server = Peer(*request.param)
    yield server
    server.close()


@pytest.mark.parametrize("peer", [(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n{",)], indirect=True)
def test_client_refuses_a_reply_larger_than_its_limit_without_allocating_it(peer: Peer) -> None:
    connection = JSONConnection("127.0.0.1", peer.port, timeout=5, max_reply_bytes=1 << 20)
    tracemalloc.start()
    with pytest.raises(ProtocolError, match="exceeds the client's limit"):
        connection.request("GET", "/v1/health", None, {})
    connection.close()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 4 << 20, "nothing near the claimed length was allocated"


@pytest.mark.parametrize("peer", [(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", 0.05)], indirect=True)
def test_client_gives_up_on_a_peer_that_trickles_its_reply(peer: Peer) -> None:
    connection = JSONConnection("127.0.0.1", peer.port, timeout=5)
    started = time.monotonic()
    with pytest.raises(WireError):
        connection.request("GET", "/v1/health", None, {}, seconds=1.0)
    connection.close()
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("peer", [(b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 200 + b"Content-Length: 2\r\n\r\n{}",)], indirect=True)
def test_client_refuses_a_reply_with_endless_headers(peer: Peer) -> None:
    connection = JSONConnection("127.0.0.1", peer.port, timeout=5)
    with pytest.raises(ProtocolError, match="more than 100 headers"):
        connection.request("GET", "/v1/health", None, {})
    connection.close()


class TLSPeer:
    """A TLS server with its own certificate that records every byte a client sends."""

    def __init__(self) -> None:
        from snakemake_executor_plugin_quantum.service.tls import self_signed

        self.certificate = self_signed("peer", ["localhost"])
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.received = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        conn.settimeout(10)
        try:
            with self.certificate.context.wrap_socket(conn, server_side=True) as tls:
                while chunk := tls.recv(65536):
                    self.received += chunk
                    if b"\r\n\r\n" in self.received:
                        tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()
        self.thread.join(10)


def test_client_sends_nothing_to_a_server_whose_certificate_is_not_pinned() -> None:
    peer = TLSPeer()
    connection = JSONConnection("127.0.0.1", peer.port, timeout=5, tls_sha256="ab" * 32)
    with pytest.raises(CertificateMismatch):
        connection.request("GET", "/v1/health", None, {"Authorization": "Bearer secret-token"})
    peer.close()
    assert peer.received == b"", "not a byte (least of all the token) reached the impostor"


def test_client_talks_to_the_server_whose_certificate_is_pinned() -> None:
    peer = TLSPeer()
    connection = JSONConnection("127.0.0.1", peer.port, timeout=5, tls_sha256=peer.certificate.sha256)
    assert connection.request("GET", "/v1/health", None, {}) == (200, b"{}")
    connection.close()
    peer.close()
    assert peer.received.startswith(b"GET /v1/health HTTP/1.1")


def test_a_refused_connection_waits_briefly_for_an_exiting_vqpu_but_a_timeout_does_not(tmp_path) -> None:
    """A killed vQPU closes its sockets a moment before its process is gone: the client says
    "is gone" once it is. A timeout says nothing of the process: no wait."""
    import subprocess

    from snakemake_executor_plugin_quantum.backends.vqpu_client import VQPUClient
    from snakemake_executor_plugin_quantum.resources.events import VQPUEvent

    def client_of(pid: int) -> VQPUClient:
        client = VQPUClient("v", {"QRMI_VQPU_EVENT_FILE": str(tmp_path / "v.json")})
        client._event = VQPUEvent("v", "127.0.0.1", 9, pid, "t", "aer", None, 0.0)
        return client

    exiting = subprocess.Popen(["sleep", "0.2"])  # gone well within the client's 1 s
    hung = subprocess.Popen(["sleep", "60"])
    try:
        closed = WireError.of(ConnectionResetError("Connection reset by peer"))
        assert closed.closed
        assert "is gone: its process" in client_of(exiting.pid)._diagnose(closed)
        timeout = WireError.of(TimeoutError("timed out"))
        assert not timeout.closed
        started = time.monotonic()
        assert "is not answering: timed out" in client_of(hung.pid)._diagnose(timeout)
        assert time.monotonic() - started < 0.5
    finally:
        hung.kill()
        hung.wait()
        exiting.wait()
