"""The vQPU service: a warm simulator serving the resource contract over HTTP/JSON.

Routes (all need ``Authorization: Bearer <token>``; the token is in the event file; a
task also needs ``X-Acquisition-Token``, a token from ``/v1/acquire`` not yet released,
and may say ``X-Task-Timeout: S``, its deadline, else the service's default, and
``X-Rule: NAME``, the Snakemake rule it runs for, which the logs name):

    GET    /v1/health                      liveness and identity
    GET    /v1/target | /v1/metadata       what it runs, counters
    POST   /v1/acquire | /v1/release       QRMI acquisition tokens
    POST   /v1/tasks?wait=S                start a task (body: QRMI payload) -> {task_id};
                                           with wait, the result itself if done by then
    POST   /v1/tasks/batch?wait=S          start many (body: [{task_id, payload, timeout}]);
                                           -> {tasks: [result, error or status per task]}
                                           once all are done or the wait is over
    GET    /v1/tasks/<id>?wait=S           status, optionally long-polling until finished
    GET    /v1/tasks/<id>/result?wait=S    the result document once Completed
    GET    /v1/tasks/<id>/logs             task log lines
    DELETE /v1/tasks/<id>                  stop the task
    POST   /v1/shutdown                    stop the service (for services on other nodes)

Connections, request sizes and time are bounded by the HTTP layer (``http.py``); a bad
request is a 4xx with a one-line message. Handlers run in a small thread pool (parsing
and preparing a circuit can take a while); long-polls wait on the event loop, so a
thousand clients waiting for their tasks hold no thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import os
import re
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from ..backends.local import LocalResource, UnknownTaskError
from ..errors import (
    PayloadError,
    QuantumError,
    ResourceUnavailableError,
    TaskFailedError,
    TaskTimeoutError,
)
from ..payloads.inputs import decode_json
from ..procs import pid_alive
from ..resources.events import VQPUEvent, clear_event, write_event
from .http import HTTPError, HTTPServer, Reply, Request, ServerLimits

log = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 60.0
QUICK_BODY_BYTES = 64 * 1024  # a request this small may run on the event loop if its task is quick
LOOPBACK = ("127.0.0.1", "localhost", "::1")
HANDLER_THREADS = 8


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
    max_connections: int = 512
    connection_idle_seconds: float = 5.0


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


class VQPUService:
    """Off loopback it serves TLS with a certificate made at start (``tls.py``)."""

    def __init__(self, resource: LocalResource, options: ServiceOptions):
        if not is_loopback(options.host) and (options.allow_no_token or options.token == ""):
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
        limits = ServerLimits(
            max_connections=options.max_connections,
            idle_seconds=options.connection_idle_seconds,
            max_body_bytes=options.max_request_bytes,
        )
        self.certificate = None
        if not is_loopback(options.host):
            from .tls import node_names, self_signed

            self.certificate = self_signed(options.name, node_names())
        self.http = HTTPServer(options.host, options.port, self._handle, limits, self.certificate and self.certificate.context)
        self.port = self.http.port
        self._pool = ThreadPoolExecutor(HANDLER_THREADS, thread_name_prefix="request")
        self._waiters = _Waiters()
        resource.on_finish = lambda task_id: self.http.call_soon(self._waiters.wake, task_id)

    # ----------------------------------------------------------- lifecycle

    def serve(self) -> str:
        """Serve until stopped (signal, idle, walltime, parent gone, shutdown request)."""
        self.http.start()
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
        self.http.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
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
            tls_sha256=self.certificate.sha256 if self.certificate else None,
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

    # ------------------------------------------------------------- requests

    async def _handle(self, request: Request) -> Reply:
        self.touch(+1)
        try:
            self._authorize(request)
            return await self._route(request)
        finally:
            self.touch(-1)

    def _authorize(self, request: Request) -> None:
        if not self.token:
            return
        header = request.headers.get("authorization", "")
        given = header[7:] if header.startswith("Bearer ") else ""
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            raise HTTPError(HTTPStatus.UNAUTHORIZED, "missing or wrong token (see the vQPU's event file)")

    def _here(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run quick work in this (the loop's) thread; errors as ``_call`` maps them."""
        try:
            return function(*args)
        except QuantumError as exc:
            raise _http_error(exc) from None
        except HTTPError:
            raise
        except Exception as exc:
            log.exception("request failed")
            raise HTTPError(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {type(exc).__name__}") from None

    async def _call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run blocking work in the handler pool; our errors become HTTP errors."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, function, *args)
        except QuantumError as exc:
            raise _http_error(exc) from None
        except HTTPError:
            raise
        except Exception as exc:  # a request must never take the service down
            log.exception("request failed")
            raise HTTPError(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {type(exc).__name__}") from None

    async def _route(self, request: Request) -> Reply:
        resource = self.resource
        method, path = request.method, request.path
        if method == "GET" and path == "/v1/health":
            return Reply.json(HTTPStatus.OK, {"ok": True, "name": self.options.name, "engine": resource.engine.engine, "pid": os.getpid(), "uptime": round(time.time() - self.started, 3)})
        if method == "GET" and path == "/v1/target":
            return await self._call(_ok, resource.target)
        if method == "GET" and path == "/v1/metadata":
            return await self._call(_ok, resource.metadata)
        if method == "POST" and path == "/v1/tasks":
            return await self._start_task(request)
        if method == "POST" and path == "/v1/tasks/batch":
            return await self._start_batch(request)
        if method == "POST" and path == "/v1/acquire":
            return await self._call(lambda: Reply.json(HTTPStatus.OK, {"token": resource.acquire()}))
        if method == "POST" and path == "/v1/release":
            body = await self._call(_decode, await request.body())
            if not isinstance(body, dict) or not isinstance(body.get("token"), str):
                raise HTTPError(HTTPStatus.BAD_REQUEST, "release needs {\"token\": \"...\"}")
            resource.release(body["token"])
            return Reply.json(HTTPStatus.OK, {"released": True})
        if method == "POST" and path == "/v1/shutdown":
            self.stop("shutdown requested over HTTP")
            return Reply.json(HTTPStatus.OK, {"stopping": True})
        if method in ("PUT", "PATCH"):
            raise HTTPError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} not allowed on {path}")
        match = _TASK.match(path)
        if match is None:
            raise HTTPError(HTTPStatus.NOT_FOUND, f"no route {method} {path}")
        task_id, sub = match.group(1), match.group(2)
        if method == "DELETE" and not sub:
            return await self._call(self._stop_task, task_id)
        if method != "GET":
            raise HTTPError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} not allowed on {path}")
        if sub == "/logs":
            return await self._call(lambda: Reply.json(HTTPStatus.OK, {"task_id": task_id, "logs": resource.task_logs(task_id)}))
        await self._long_poll(task_id, request)
        if sub == "/result":
            return await self._call(self._result_reply, task_id)
        status = self._status(task_id)
        return Reply.json(HTTPStatus.OK, {"task_id": task_id, "status": status.value})

    def _check_acquisition(self, request: Request) -> None:
        if not self.resource.holds(request.headers.get("x-acquisition-token")):
            raise HTTPError(
                HTTPStatus.FORBIDDEN,
                "the task's acquisition token is unknown or released: acquire the vQPU first "
                "(the run or job that acquired it may have ended)",
            )

    async def _start_task(self, request: Request) -> Reply:
        wanted = request.headers.get("x-task-id")
        if wanted is not None and not _TASK_ID.match(wanted):
            raise HTTPError(HTTPStatus.BAD_REQUEST, "X-Task-Id must be 32 lowercase hex digits")
        self._check_acquisition(request)
        timeout = _task_timeout(request)
        rule = _rule(request)
        wait = _wait_seconds(request) if "wait" in request.query else None
        body = await request.body()

        def start(quick_only: bool) -> tuple[str | None, Reply | None]:
            task_id = self.resource.task_start(_decode(body), task_id=wanted, timeout=timeout, rule=rule, quick_only=quick_only, client=request.peer)
            if task_id is not None and wait is not None and self.resource.task_status(task_id).finished:
                return task_id, self._result_reply(task_id)  # one request for quick tasks
            return task_id, None

        task_id = reply = None
        if len(body) <= QUICK_BODY_BYTES:
            # A tiny task with its circuits prepared already runs here, on the event loop:
            # it takes about as long as a hand-off to the pool and back (measured: 0.4 ms
            # less per GHZ-5 round trip), and holds the GIL no longer than a pool thread would.
            task_id, reply = self._here(start, True)
        if task_id is None:
            task_id, reply = await self._call(start, False)
        assert task_id is not None
        if reply is not None:
            return reply
        if wait is None:
            return Reply.json(HTTPStatus.CREATED, {"task_id": task_id})
        await self._waiters.wait(lambda: self._status(task_id).finished, task_id, wait)
        if not self._status(task_id).finished:
            return Reply.json(HTTPStatus.CREATED, {"task_id": task_id})
        return await self._call(self._result_reply, task_id)

    async def _start_batch(self, request: Request) -> Reply:
        """Many tasks in one request, each exactly as it would run alone (own id, timeout,
        validation, lane); the reply lists each one's result, error or status in order."""
        self._check_acquisition(request)
        rule = _rule(request)
        wait = _wait_seconds(request)
        started = time.monotonic()
        body = await request.body()

        def start_all() -> list[dict[str, Any]]:
            entries = _batch_entries(_decode(body))
            out = []
            for entry in entries:
                try:
                    task_id = self.resource.task_start(entry["payload"], task_id=entry.get("task_id"), timeout=entry.get("timeout"), rule=rule, client=request.peer)
                    out.append({"task_id": task_id})
                except QuantumError as exc:
                    error = _http_error(exc)
                    out.append({"task_id": entry.get("task_id"), "status": "Rejected", "error": str(exc), "kind": error.kind or type(exc).__name__})
            return out

        entries = await self._call(start_all)
        for entry in entries:
            if "status" not in entry:
                task_id = entry["task_id"]
                await self._waiters.wait(lambda task_id=task_id: self._status(task_id).finished, task_id, wait - (time.monotonic() - started))
        return await self._call(lambda: Reply.json(HTTPStatus.OK, {"tasks": [self._batch_outcome(e) for e in entries]}))

    def _batch_outcome(self, entry: dict[str, Any]) -> dict[str, Any]:
        if "status" in entry:
            return entry
        task_id = entry["task_id"]
        try:
            status = self.resource.task_status(task_id)
            if not status.finished:
                return {"task_id": task_id, "status": status.value}
            return {"task_id": task_id, "status": status.value, "result": self.resource.task_result(task_id)}
        except QuantumError as exc:
            kind = "TaskTimeoutError" if isinstance(exc, TaskTimeoutError) else type(exc).__name__
            return {"task_id": task_id, "status": self.resource.task_status(task_id).value, "error": str(exc), "kind": kind}

    def _result_reply(self, task_id: str) -> Reply:
        status = self.resource.task_status(task_id)
        if not status.finished:
            return Reply.json(HTTPStatus.ACCEPTED, {"task_id": task_id, "status": status.value})
        return Reply.json(HTTPStatus.OK, self.resource.task_result(task_id))

    def _stop_task(self, task_id: str) -> Reply:
        self.resource.task_stop(task_id)
        return Reply.json(HTTPStatus.OK, {"task_id": task_id, "status": self.resource.task_status(task_id).value})

    def _status(self, task_id: str) -> Any:
        try:
            return self.resource.task_status(task_id)
        except UnknownTaskError as exc:
            raise HTTPError(HTTPStatus.NOT_FOUND, str(exc)) from None

    async def _long_poll(self, task_id: str, request: Request) -> None:
        wait = _wait_seconds(request)
        await self._waiters.wait(lambda: self._status(task_id).finished, task_id, wait)


class _Waiters:
    """Long-polls waiting for tasks: futures on the event loop, woken when a task finishes.

    Every method runs on the loop thread (the resource's finish hook is marshalled there),
    so registering and checking cannot race with the wake-up.
    """

    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Future[None]]] = {}

    async def wait(self, finished: Callable[[], bool], task_id: str, seconds: float) -> None:
        if seconds <= 0 or finished():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiting = self._waiting.setdefault(task_id, set())
        waiting.add(future)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await future
        finally:
            waiting.discard(future)
            if not waiting and self._waiting.get(task_id) is waiting:
                del self._waiting[task_id]

    def wake(self, task_id: str) -> None:
        for future in self._waiting.pop(task_id, ()):
            if not future.done():
                future.set_result(None)


MAX_BATCH = 1024

_TASK = re.compile(r"^/v1/tasks/([0-9a-f]{32})(/result|/logs)?$")
_TASK_ID = re.compile(r"^[0-9a-f]{32}$")


def _ok(function: Callable[[], Any]) -> Reply:
    return Reply.json(HTTPStatus.OK, function())


def _decode(body: bytes) -> Any:
    if not body.strip():
        raise HTTPError(HTTPStatus.BAD_REQUEST, "request body is empty")
    return decode_json(body, what="request body")


def _batch_entries(body: Any) -> list[dict[str, Any]]:
    """The batch body, checked as a whole: a list of {payload, task_id?, timeout?}."""
    if not isinstance(body, list) or not body:
        raise HTTPError(HTTPStatus.BAD_REQUEST, "a batch is a non-empty JSON list of {\"payload\": ..., \"task_id\": ..., \"timeout\": ...}")
    if len(body) > MAX_BATCH:
        raise HTTPError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"a batch holds at most {MAX_BATCH} tasks, not {len(body)}")
    seen: set[str] = set()
    for i, entry in enumerate(body):
        if not isinstance(entry, dict) or not isinstance(entry.get("payload"), dict) or set(entry) - {"payload", "task_id", "timeout"}:
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"batch entry {i} must be {{\"payload\": {{...}}, \"task_id\": ..., \"timeout\": ...}}")
        task_id = entry.get("task_id")
        if task_id is not None and (not isinstance(task_id, str) or not _TASK_ID.match(task_id) or task_id in seen):
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"batch entry {i}: task_id must be 32 lowercase hex digits, unique in the batch")
        seen.add(task_id or "")
        timeout = entry.get("timeout")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf):
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"batch entry {i}: timeout must be a positive number of seconds")
    return body


def _wait_seconds(request: Request) -> float:
    raw = request.query.get("wait", ["0"])[0]
    try:
        wait = float(raw)
    except ValueError:
        raise HTTPError(HTTPStatus.BAD_REQUEST, f"wait={raw!r} is not a number of seconds") from None
    if wait != wait:  # NaN
        raise HTTPError(HTTPStatus.BAD_REQUEST, f"wait={raw!r} is not a number of seconds")
    return min(max(wait, 0.0), MAX_WAIT_SECONDS)


_RULE = re.compile(r"^[A-Za-z0-9_.:\-]{1,200}$")


def _rule(request: Request) -> str | None:
    """The X-Rule header: a rule name (it goes into logs, so nothing else)."""
    raw = request.headers.get("x-rule")
    if raw is None:
        return None
    if not _RULE.match(raw):
        raise HTTPError(HTTPStatus.BAD_REQUEST, "X-Rule must be a rule name (letters, digits, _ . : -; at most 200)")
    return raw


def _task_timeout(request: Request) -> float | None:
    raw = request.headers.get("x-task-timeout")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise HTTPError(HTTPStatus.BAD_REQUEST, f"X-Task-Timeout={raw[:20]!r} is not a positive number of seconds")
    return seconds


def _http_error(exc: QuantumError) -> HTTPError:
    if isinstance(exc, UnknownTaskError):
        return HTTPError(HTTPStatus.NOT_FOUND, str(exc))
    if isinstance(exc, TaskTimeoutError):  # the task ran past its deadline: the kind says so
        return HTTPError(HTTPStatus.CONFLICT, str(exc), kind="TaskTimeoutError")
    if isinstance(exc, TaskFailedError):
        return HTTPError(HTTPStatus.CONFLICT, str(exc))
    if isinstance(exc, ResourceUnavailableError):
        return HTTPError(HTTPStatus.SERVICE_UNAVAILABLE, str(exc))
    if isinstance(exc, PayloadError):  # ResourceLimitError too: the kind lets clients tell them apart
        return HTTPError(HTTPStatus.BAD_REQUEST, str(exc), kind=type(exc).__name__)
    return HTTPError(HTTPStatus.BAD_REQUEST, str(exc))
