"""The vQPU service: a warm simulator serving the resource contract over HTTP/JSON.

Routes (all need ``Authorization: Bearer <token>``; the token is in the event file):

    GET    /v1/health                      liveness and identity
    GET    /v1/target | /v1/metadata       what it runs, counters
    POST   /v1/acquire | /v1/release       QRMI acquisition tokens
    POST   /v1/tasks?wait=S                start a task (body: QRMI payload) -> {task_id};
                                           with wait, the result itself if done by then
    GET    /v1/tasks/<id>?wait=S           status, optionally long-polling until finished
    GET    /v1/tasks/<id>/result?wait=S    the result document once Completed
    GET    /v1/tasks/<id>/logs             task log lines
    DELETE /v1/tasks/<id>                  stop the task
    POST   /v1/shutdown                    stop the service (for services on other nodes)

The server is the standard library's threading HTTP server; every request is bounded
(size, JSON depth, long-poll time) and a bad request is a 4xx with a one-line message.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import secrets
import signal
import socket
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..backends.local import LocalResource, UnknownTaskError
from ..errors import PayloadError, QuantumError, ResourceUnavailableError, TaskFailedError
from ..payloads.inputs import decode_json
from ..procs import pid_alive
from ..resources.events import VQPUEvent, clear_event, write_event

log = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 60.0
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServiceOptions:
    name: str
    host: str = "127.0.0.1"
    port: int = 0
    token: str | None = None  # generated when None
    allow_no_token: bool = False  # loopback only: for local debugging
    event_file: str | None = None
    idle_timeout: float = 0.0  # 0: never
    walltime: float = 0.0  # 0: unlimited
    parent_pid: int | None = None
    max_request_bytes: int = 64 * 1024 * 1024
    slurm_job_id: str | None = None


class VQPUService:
    def __init__(self, resource: LocalResource, options: ServiceOptions):
        if options.host not in LOOPBACK and (options.allow_no_token or options.token == ""):
            raise QuantumError(f"refusing to serve on {options.host} without a token; only loopback may run without one")
        self.resource = resource
        self.options = options
        self.token = "" if options.allow_no_token else (options.token or secrets.token_urlsafe(32))
        self.started = time.time()
        self._last_activity = time.monotonic()
        self._in_flight = 0
        self._activity_lock = threading.Lock()
        self._stop = threading.Event()
        self.stop_reason = ""
        self.httpd = _Server((options.host, options.port), _Handler)
        self.httpd.service = self
        self.port = self.httpd.server_address[1]

    # ----------------------------------------------------------- lifecycle

    def serve(self) -> str:
        """Serve until stopped (signal, idle, walltime, parent gone, shutdown request)."""
        server = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="http", daemon=True)
        server.start()
        keeper = threading.Thread(target=self._housekeeping, name="housekeeping", daemon=True)
        keeper.start()
        if self.options.event_file:
            write_event(self.options.event_file, self.event())
        log.info("vQPU %s serving %s on %s:%s", self.options.name, self.resource.engine.engine, self.options.host, self.port)
        try:
            while not self._stop.wait(0.5):
                pass
        finally:
            self._shutdown()
        return self.stop_reason

    def stop(self, reason: str) -> None:
        if not self._stop.is_set():
            self.stop_reason = reason
            self._stop.set()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda signum, _frame: self.stop(f"signal {signal.Signals(signum).name}"))

    def _shutdown(self) -> None:
        # The event goes first, so no client finds a service that is going away.
        if self.options.event_file:
            clear_event(self.options.event_file, pid=os.getpid())
        self.httpd.shutdown()
        self.httpd.server_close()
        self.resource.close()
        log.info("vQPU %s stopped: %s", self.options.name, self.stop_reason)

    def event(self) -> VQPUEvent:
        target = self.resource.target()
        host = self.options.host
        if host in ("0.0.0.0", "::", ""):
            host = socket.getfqdn()  # reachable from other nodes
        return VQPUEvent(
            name=self.options.name,
            host=host,
            port=self.port,
            pid=os.getpid(),
            token=self.token,
            engine=self.resource.engine.engine,
            qubits=target.get("num_qubits") or target.get("max_atoms"),
            started=self.started,
            node=socket.gethostname(),
            slurm_job_id=self.options.slurm_job_id,
        )

    def _housekeeping(self) -> None:
        deadline = self.started + self.options.walltime if self.options.walltime else None
        while not self._stop.wait(0.5):
            if self.options.parent_pid and not pid_alive(self.options.parent_pid):
                self.stop(f"parent process {self.options.parent_pid} exited")
            elif deadline and time.time() >= deadline:
                self.stop(f"walltime of {self.options.walltime:g} s reached")
            elif self.options.idle_timeout and self._idle_for() >= self.options.idle_timeout:
                self.stop(f"idle for {self.options.idle_timeout:g} s")

    def _idle_for(self) -> float:
        with self._activity_lock:
            busy = self._in_flight or self.resource.metadata()["queued"]
            return 0.0 if busy else time.monotonic() - self._last_activity

    def touch(self, delta: int = 0) -> None:
        with self._activity_lock:
            self._in_flight += delta
            self._last_activity = time.monotonic()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    service: VQPUService


class _HTTPError(Exception):
    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


_TASK = re.compile(r"^/v1/tasks/([0-9a-f]{32})(/result|/logs)?$")
_TASK_ID = re.compile(r"^[0-9a-f]{32}$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "vqpu/1"
    timeout = 120  # idle keep-alive connections do not hold a thread forever
    # Headers and body go out in separate writes; with Nagle on, each reply waits for
    # the client's delayed ACK (~40 ms).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def do_PUT(self) -> None:  # noqa: N802
        self._discard_body()
        self._reply(HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"PUT not allowed on {self.path}"})

    do_PATCH = do_PUT

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors the standard library raises itself (bad request line, unknown method) as JSON too."""
        self.close_connection = True
        self._reply(HTTPStatus(code), {"error": message or explain or HTTPStatus(code).phrase})

    def _dispatch(self, method: str) -> None:
        service = self.server.service
        service.touch(+1)
        try:
            self._authorize(service)
            url = urlsplit(self.path)
            status, body = self._route(service, method, url.path, parse_qs(url.query))
        except _HTTPError as exc:
            status, body = exc.status, {"error": str(exc)}
        except UnknownTaskError as exc:
            status, body = HTTPStatus.NOT_FOUND, {"error": str(exc)}
        except TaskFailedError as exc:
            status, body = HTTPStatus.CONFLICT, {"error": str(exc)}
        except ResourceUnavailableError as exc:
            status, body = HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc)}
        except PayloadError as exc:  # ResourceLimitError too: the kind lets clients tell them apart
            status, body = HTTPStatus.BAD_REQUEST, {"error": str(exc), "kind": type(exc).__name__}
        except QuantumError as exc:
            status, body = HTTPStatus.BAD_REQUEST, {"error": str(exc)}
        except Exception as exc:  # a request must never take the service down
            log.exception("request %s %s failed", method, self.path)
            status, body = HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"internal error: {type(exc).__name__}"}
        finally:
            service.touch(-1)
        self._reply(status, body)

    def _authorize(self, service: VQPUService) -> None:
        if not service.token:
            return
        header = self.headers.get("Authorization", "")
        given = header[7:] if header.startswith("Bearer ") else ""
        if not hmac.compare_digest(given.encode(), service.token.encode()):
            self._discard_body()
            raise _HTTPError(HTTPStatus.UNAUTHORIZED, "missing or wrong token (see the vQPU's event file)")

    def _route(self, service: VQPUService, method: str, path: str, query: dict[str, list[str]]) -> tuple[HTTPStatus, Any]:
        resource = service.resource
        if method == "GET" and path == "/v1/health":
            return HTTPStatus.OK, {"ok": True, "name": service.options.name, "engine": resource.engine.engine, "pid": os.getpid(), "uptime": round(time.time() - service.started, 3)}
        if method == "GET" and path == "/v1/target":
            return HTTPStatus.OK, resource.target()
        if method == "GET" and path == "/v1/metadata":
            return HTTPStatus.OK, resource.metadata()
        if method == "POST" and path == "/v1/tasks":
            wanted = self.headers.get("X-Task-Id")
            if wanted is not None and not _TASK_ID.match(wanted):
                raise _HTTPError(HTTPStatus.BAD_REQUEST, "X-Task-Id must be 32 lowercase hex digits")
            task_id = resource.task_start(self._json_body(service), task_id=wanted)
            if "wait" in query:  # one round trip for quick tasks: start, wait, return the result
                self._long_poll(resource, task_id, query)
                if resource.task_status(task_id).finished:
                    return HTTPStatus.OK, resource.task_result(task_id)
            return HTTPStatus.CREATED, {"task_id": task_id}
        if method == "POST" and path == "/v1/acquire":
            self._discard_body()
            return HTTPStatus.OK, {"token": resource.acquire()}
        if method == "POST" and path == "/v1/release":
            body = self._json_body(service)
            if not isinstance(body, dict) or not isinstance(body.get("token"), str):
                raise _HTTPError(HTTPStatus.BAD_REQUEST, "release needs {\"token\": \"...\"}")
            resource.release(body["token"])
            return HTTPStatus.OK, {"released": True}
        if method == "POST" and path == "/v1/shutdown":
            self._discard_body()
            service.stop("shutdown requested over HTTP")
            return HTTPStatus.OK, {"stopping": True}
        match = _TASK.match(path)
        if match is None:
            raise _HTTPError(HTTPStatus.NOT_FOUND, f"no route {method} {path}")
        task_id, sub = match.group(1), match.group(2)
        if method == "DELETE" and not sub:
            resource.task_stop(task_id)
            return HTTPStatus.OK, {"task_id": task_id, "status": resource.task_status(task_id).value}
        if method != "GET":
            raise _HTTPError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} not allowed on {path}")
        if sub == "/logs":
            return HTTPStatus.OK, {"task_id": task_id, "logs": resource.task_logs(task_id)}
        self._long_poll(resource, task_id, query)
        status = resource.task_status(task_id)
        if sub == "/result":
            if not status.finished:
                return HTTPStatus.ACCEPTED, {"task_id": task_id, "status": status.value}
            return HTTPStatus.OK, resource.task_result(task_id)
        return HTTPStatus.OK, {"task_id": task_id, "status": status.value}

    def _long_poll(self, resource: LocalResource, task_id: str, query: dict[str, list[str]]) -> None:
        raw = query.get("wait", ["0"])[0]
        try:
            wait = min(max(float(raw), 0.0), MAX_WAIT_SECONDS)
        except ValueError:
            raise _HTTPError(HTTPStatus.BAD_REQUEST, f"wait={raw!r} is not a number of seconds") from None
        if wait:
            try:
                resource.wait(task_id, timeout=wait)
            except QuantumError as exc:
                if isinstance(exc, UnknownTaskError):
                    raise
                # Timed out: the caller sees the current status and polls again.

    def _json_body(self, service: VQPUService) -> Any:
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            self.close_connection = True
            raise _HTTPError(HTTPStatus.LENGTH_REQUIRED, "a body needs a Content-Length")
        try:
            length = int(length_header)
        except ValueError:
            self.close_connection = True
            raise _HTTPError(HTTPStatus.BAD_REQUEST, "Content-Length is not a number") from None
        if length < 0 or length > service.options.max_request_bytes:
            self.close_connection = True  # the unread body must not be parsed as a request
            raise _HTTPError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request of {length} bytes exceeds the limit of {service.options.max_request_bytes}")
        data = self.rfile.read(length)
        if len(data) != length:
            self.close_connection = True
            raise _HTTPError(HTTPStatus.BAD_REQUEST, "request body shorter than its Content-Length")
        if not data.strip():
            raise _HTTPError(HTTPStatus.BAD_REQUEST, "request body is empty")
        return decode_json(data, what="request body")

    def _discard_body(self) -> None:
        length = self.headers.get("Content-Length")
        try:
            remaining = int(length) if length else 0
        except ValueError:
            remaining = -1
        if remaining < 0 or remaining > 1 << 20:
            self.close_connection = True
            return
        if remaining:
            self.rfile.read(remaining)

    def _reply(self, status: HTTPStatus, body: Any) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == HTTPStatus.SERVICE_UNAVAILABLE:
                self.send_header("Retry-After", "1")
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
