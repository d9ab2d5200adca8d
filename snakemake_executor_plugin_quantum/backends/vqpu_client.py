"""The ``vqpu`` resource type: a client of a warm vQPU service.

This is the per-job path (``qrun`` in every rule), so it imports no qiskit, no pulser,
no numpy: JSON over one keep-alive HTTP connection. It finds the service through its
event file and fails fast, with the reason, when the service is gone.

Every task carries an acquisition token: the job's (``QRMI_JOB_ACQUISITION_TOKEN``), else
the one this client's ``acquire`` returned, else one it acquires on first use and
releases on ``close``. The service refuses tokens it did not issue or has released.

Every task also carries its deadline (``run``'s ``timeout``, else the job's
``QRMI_JOB_TIMEOUT_SECONDS``; without either the service applies its default): the
service stops a task at its deadline, so a circuit that loops forever fails with
``TaskTimeoutError`` and the vQPU goes on serving.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from typing import Any
from urllib.parse import quote

from ..errors import (
    PayloadError,
    QuantumError,
    ResourceLimitError,
    ResourceUnavailableError,
    TaskFailedError,
    TaskTimeoutError,
)
from ..resources.events import VQPUEvent, default_event_dir, event_path, read_event, wait_for_event
from ..resources.types import VQPU
from .base import QuantumResource, ResourceStatus, TaskStatus
from .wire import CertificateMismatch, JSONConnection, ProtocolError, WireError

LONG_POLL_SECONDS = 30.0
REPLY_SECONDS = 60.0  # for a reply, beyond any long-poll wait the request asked for
DEADLINE_GRACE = 2.0  # past a task's timeout, how long to wait for the service's own verdict
BUSY_RETRIES = 8
MAX_BATCH = 1024  # tasks per batch request (the service's limit)


class VQPUClient(QuantumResource):
    def __init__(
        self, resource_id: str, settings: dict[str, str], connect_timeout: float | None = None, rule: str | None = None
    ):
        """``rule``: the Snakemake rule the tasks run for, named in the vQPU's log."""
        super().__init__(resource_id, VQPU)
        self.rule = rule
        self.event_file = settings.get("QRMI_VQPU_EVENT_FILE") or event_path(
            settings.get("QRMI_VQPU_EVENT_DIR") or default_event_dir(), resource_id
        )
        wait = settings.get("QRMI_VQPU_WAIT_SECONDS") or "30"
        try:
            self.ready_timeout = float(wait) if connect_timeout is None else connect_timeout
        except ValueError:
            raise QuantumError(f"QRMI_VQPU_WAIT_SECONDS={wait!r} must be a number of seconds") from None
        reply_mb = settings.get("QRMI_VQPU_MAX_REPLY_MB") or "256"
        try:
            self.max_reply_bytes = int(float(reply_mb) * 2**20)
        except ValueError:
            raise QuantumError(f"QRMI_VQPU_MAX_REPLY_MB={reply_mb!r} must be a number of MiB") from None
        self._event: VQPUEvent | None = None
        self._conn: JSONConnection | None = None
        self._job_token = settings.get("QRMI_JOB_ACQUISITION_TOKEN") or None
        self.job_timeout = _positive(settings.get("QRMI_JOB_TIMEOUT_SECONDS"))
        self._acquired: str | None = None  # from our own acquire(), until released
        self._acquired_for_tasks = False  # acquired by us only to run tasks: released on close
        self.last_task_ids: list[str] = []  # of the last run_many, so a signal handler can stop them

    # ------------------------------------------------------------ connection

    @property
    def event(self) -> VQPUEvent:
        if self._event is None:
            self._event = wait_for_event(self.event_file, self.ready_timeout)
        return self._event

    def _connection(self) -> JSONConnection:
        if self._conn is None:
            event = self.event
            self._conn = JSONConnection(event.host, event.port, REPLY_SECONDS, self.max_reply_bytes, event.tls_sha256)
        return self._conn

    def close(self) -> None:
        if self._acquired_for_tasks and self._acquired is not None:
            token, self._acquired, self._acquired_for_tasks = self._acquired, None, False
            with contextlib.suppress(QuantumError):  # a service that is gone has forgotten it anyway
                self._check(*self._request("POST", "/v1/release", {"token": token}, seconds=2.0), "release")
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def same_service(self) -> bool:
        """Does the event file still describe the service this client talked to?

        A restarted vQPU has a new event (and has forgotten the old one's tokens)."""
        if self._event is None:
            return True
        try:
            current = read_event(self.event_file)
        except ResourceUnavailableError:
            return False
        return current is not None and (current.pid, current.started) == (self._event.pid, self._event.started)

    def _task_token(self) -> str:
        if self._job_token or self._acquired:
            return self._job_token or self._acquired  # type: ignore[return-value]
        self.acquire()
        self._acquired_for_tasks = True
        return self._acquired  # type: ignore[return-value]

    def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        wait: float = 0.0,
        seconds: float | None = None,
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        delay = 0.05
        for attempt in range(BUSY_RETRIES + 1):
            status, payload = self._send(method, path, data, headers, REPLY_SECONDS + wait if seconds is None else seconds)
            if status != 503 or attempt == BUSY_RETRIES:
                return status, payload
            time.sleep(delay)  # queue full: back off and retry
            delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    def _send(self, method: str, path: str, data: bytes | None, extra: dict[str, str] | None, seconds: float) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.event.token}", "Content-Type": "application/json", **(extra or {})}
        try:
            status, raw = self._connection().request(method, path, data, headers, seconds)
        except WireError as exc:
            self.close()
            raise ResourceUnavailableError(self._diagnose(exc)) from None
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            raise ResourceUnavailableError(f"vQPU '{self.resource_id}' sent a malformed reply (HTTP {status})") from None

    def _diagnose(self, exc: BaseException) -> str:
        event = self._event
        where = f"{event.host}:{event.port}" if event else self.event_file
        if isinstance(exc, CertificateMismatch):
            return f"vQPU '{self.resource_id}' at {where} refused: {exc}; not sending the token (is another server on that port?)"
        if isinstance(exc, ProtocolError):
            return f"vQPU '{self.resource_id}' at {where} sent a reply the client refuses: {exc}"
        alive = event.process_alive() if event else None
        waited = 0.0
        while alive and getattr(exc, "closed", False) and waited < 1.0:  # a killed process closes its sockets before it is gone
            time.sleep(0.05)
            waited += 0.05
            alive = event.process_alive()  # type: ignore[union-attr]
        if alive is False:
            return f"vQPU '{self.resource_id}' is gone: its process {event.pid} exited ({where} refused the connection)"  # type: ignore[union-attr]
        return f"vQPU '{self.resource_id}' at {where} is not answering: {exc}"

    def _check(self, status: int, payload: Any, what: str) -> Any:
        if 200 <= status < 300:
            return payload
        message = payload.get("error") if isinstance(payload, dict) else None
        message = message or f"HTTP {status}"
        if status in (400, 413):
            if isinstance(payload, dict) and payload.get("kind") == "ResourceLimitError":
                raise ResourceLimitError(message)
            raise PayloadError(message)
        if status == 401:
            raise ResourceUnavailableError(f"vQPU '{self.resource_id}' refused the token in {self.event_file}: {message}")
        if status == 403:
            raise ResourceUnavailableError(f"vQPU '{self.resource_id}' refused to {what}: {message}")
        if status == 409:
            if isinstance(payload, dict) and payload.get("kind") == "TaskTimeoutError":
                raise TaskTimeoutError(message)
            raise TaskFailedError(message)
        if status == 404:
            raise QuantumError(f"{what}: {message}")
        raise ResourceUnavailableError(f"vQPU '{self.resource_id}' could not {what}: {message}")

    # ---------------------------------------------------------------- contract

    def status(self) -> ResourceStatus:
        return self.probe()[0]

    def probe(self, seconds: float = 2.0) -> tuple[ResourceStatus, str]:
        """Online when the service answers within ``seconds``; else Offline, and why."""
        try:
            event = read_event(self.event_file)
        except ResourceUnavailableError as exc:
            return ResourceStatus.OFFLINE, str(exc)
        if event is None:
            return ResourceStatus.OFFLINE, f"no event file {self.event_file} (not running)"
        if event.process_alive() is False:
            return ResourceStatus.OFFLINE, f"its process {event.pid} is gone (stale event file)"
        if self._event is not None and self._event != event:
            self.close()
        self._event = event
        try:
            self._check(*self._request("GET", "/v1/health", seconds=seconds), "report its health")
        except QuantumError as exc:
            return ResourceStatus.OFFLINE, str(exc)
        return ResourceStatus.ONLINE, ""

    def acquire(self) -> str:
        token = self._check(*self._request("POST", "/v1/acquire", {}), "acquire")["token"]
        self._acquired, self._acquired_for_tasks = token, False
        return token

    def release(self, token: str) -> None:
        self._check(*self._request("POST", "/v1/release", {"token": token}), "release")
        if token == self._acquired:
            self._acquired, self._acquired_for_tasks = None, False

    def task_start(self, payload: dict[str, Any], timeout: float | None = None) -> str:
        """Queue a task; it is stopped ``timeout`` (else the job's timeout) seconds from now."""
        headers = self._task_headers(timeout)
        return self._check(*self._request("POST", "/v1/tasks", payload, headers), "start the task")["task_id"]

    def _task_headers(self, timeout: float | None) -> dict[str, str]:
        headers = {"X-Acquisition-Token": self._task_token()}
        timeout = self.job_timeout if timeout is None else timeout
        if timeout is not None:
            headers["X-Task-Timeout"] = f"{timeout:.3f}"
        if self.rule:
            headers["X-Rule"] = self.rule
        return headers

    def task_stop(self, task_id: str) -> None:
        self._check(*self._request("DELETE", f"/v1/tasks/{quote(task_id)}"), "stop the task")

    def task_status(self, task_id: str) -> TaskStatus:
        reply = self._check(*self._request("GET", f"/v1/tasks/{quote(task_id)}"), "read the task status")
        return TaskStatus(reply["status"])

    def task_result(self, task_id: str) -> dict[str, Any]:
        status, payload = self._request("GET", f"/v1/tasks/{quote(task_id)}/result")
        if status == 202:
            raise ResourceUnavailableError(f"task {task_id} is {payload.get('status')}; wait for it to finish")
        return self._check(status, payload, "read the result")

    def task_logs(self, task_id: str) -> str:
        return self._check(*self._request("GET", f"/v1/tasks/{quote(task_id)}/logs"), "read the logs")["logs"]

    def target(self) -> dict[str, Any]:
        return self._check(*self._request("GET", "/v1/target"), "describe its target")

    def metadata(self) -> dict[str, Any]:
        return self._check(*self._request("GET", "/v1/metadata"), "describe itself")

    def health(self) -> dict[str, Any]:
        return self._check(*self._request("GET", "/v1/health"), "report its health")

    def shutdown(self) -> None:
        self._check(*self._request("POST", "/v1/shutdown", {}), "shut down")

    def wait(self, task_id: str, timeout: float | None = None, poll: tuple[float, float] = (0, 0)) -> TaskStatus:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = LONG_POLL_SECONDS if deadline is None else max(0.0, min(LONG_POLL_SECONDS, deadline - time.monotonic()))
            reply = self._check(*self._request("GET", f"/v1/tasks/{quote(task_id)}?wait={wait:.3f}", wait=wait), "read the task status")
            status = TaskStatus(reply["status"])
            if status.finished:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                raise TaskTimeoutError(f"task {task_id} on {self.resource_id} did not finish within {timeout:g} s")

    def run(self, payload: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Start a task and return its result: one request when the task is quick.

        The client picks the task id (sent as ``X-Task-Id``) so that, if this process is
        stopped while the request is in flight, it can still stop the task.
        """
        self.last_task_id = uuid.uuid4().hex
        timeout = self.job_timeout if timeout is None else timeout
        # The service stops the task at ``timeout`` and says so; wait a little longer for
        # that verdict, and give up on our own only if it never comes.
        patience = None if timeout is None else timeout + DEADLINE_GRACE
        wait = LONG_POLL_SECONDS if patience is None else max(0.0, min(LONG_POLL_SECONDS, patience))
        started = time.monotonic()
        headers = {"X-Task-Id": self.last_task_id, **self._task_headers(timeout)}
        status, reply = self._request("POST", f"/v1/tasks?wait={wait:.3f}", payload, headers, wait)
        if status == 200:
            return reply
        self._check(status, reply, "start the task")  # 409: finished, but Failed or Cancelled
        remaining = None if patience is None else max(0.0, patience - (time.monotonic() - started))
        return self._poll_result(self.last_task_id, remaining, timeout)

    def run_many(
        self, payloads: list[dict[str, Any]], timeout: float | None = None, task_ids: list[str] | None = None
    ) -> list[dict[str, Any] | QuantumError]:
        """Run many tasks through one request; each result, or the error that task met, in order.

        Each task runs exactly as it would alone (its own id, deadline, validation and
        lane), so a seed gives the same counts as ``run``. Tasks still running when the
        request's wait ends are long-polled one by one. If this call is interrupted
        (Ctrl-C, a signal), the tasks not yet finished are stopped.
        """
        if task_ids is not None and len(task_ids) != len(payloads):
            raise ValueError(f"{len(task_ids)} task ids for {len(payloads)} payloads")
        ids = list(task_ids) if task_ids is not None else [uuid.uuid4().hex for _ in payloads]
        self.last_task_ids = ids
        timeout = self.job_timeout if timeout is None else timeout
        patience = None if timeout is None else timeout + DEADLINE_GRACE
        started = time.monotonic()
        out: list[dict[str, Any] | QuantumError] = []
        pending: list[tuple[int, str]] = []
        try:
            for first in range(0, len(payloads), MAX_BATCH):
                out += self._batch(payloads[first:first + MAX_BATCH], ids[first:first + MAX_BATCH], timeout, patience, started, pending, first)
            for index, task_id in pending:
                remaining = None if patience is None else max(0.0, patience - (time.monotonic() - started))
                try:
                    out[index] = self._poll_result(task_id, remaining, timeout)
                except QuantumError as exc:
                    out[index] = exc
        except BaseException:
            for task_id in ids:
                with contextlib.suppress(QuantumError):
                    self.task_stop(task_id)
            raise
        return out

    def _batch(
        self, payloads: list[dict[str, Any]], ids: list[str], timeout: float | None, patience: float | None,
        started: float, pending: list[tuple[int, str]], offset: int,
    ) -> list[dict[str, Any] | QuantumError]:
        entries = [{"task_id": task_id, "payload": payload, "timeout": timeout} for task_id, payload in zip(ids, payloads, strict=True)]
        left = None if patience is None else max(0.0, patience - (time.monotonic() - started))
        wait = LONG_POLL_SECONDS if left is None else min(LONG_POLL_SECONDS, left)
        headers = self._task_headers(timeout)
        headers.pop("X-Task-Timeout", None)  # each entry carries its own
        reply = self._check(*self._request("POST", f"/v1/tasks/batch?wait={wait:.3f}", entries, headers, wait), "start the tasks")
        tasks = reply.get("tasks") if isinstance(reply, dict) else None
        if not isinstance(tasks, list) or len(tasks) != len(entries):
            raise ResourceUnavailableError(f"vQPU '{self.resource_id}' sent a malformed batch reply")
        out: list[dict[str, Any] | QuantumError] = []
        for index, (task_id, outcome) in enumerate(zip(ids, tasks, strict=True)):
            if "result" in outcome:
                out.append(outcome["result"])
            elif "error" in outcome:
                out.append(_batch_error(outcome))
            else:
                out.append(TaskTimeoutError(f"task {task_id} on {self.resource_id} did not finish"))  # replaced when polled
                pending.append((offset + index, task_id))
        return out

    def wait_result(self, task_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Long-poll the result itself: one request when the task is quick."""
        return self._poll_result(task_id, timeout, timeout)

    def _poll_result(self, task_id: str, seconds: float | None, timeout: float | None) -> dict[str, Any]:
        """Long-poll for ``seconds``; past them, TaskTimeoutError naming ``timeout``."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while True:
            wait = LONG_POLL_SECONDS if deadline is None else max(0.0, min(LONG_POLL_SECONDS, deadline - time.monotonic()))
            status, payload = self._request("GET", f"/v1/tasks/{quote(task_id)}/result?wait={wait:.3f}", wait=wait)
            if status != 202:
                return self._check(status, payload, "read the result")
            if deadline is not None and time.monotonic() >= deadline:
                raise TaskTimeoutError(f"task {task_id} on {self.resource_id} did not finish within {timeout:g} s")



def _batch_error(outcome: dict[str, Any]) -> QuantumError:
    """The exception a task of a batch met, of the kind it would raise alone."""
    kinds: dict[str, type[QuantumError]] = {
        "PayloadError": PayloadError,
        "ResourceLimitError": ResourceLimitError,
        "ResourceUnavailableError": ResourceUnavailableError,
        "TaskTimeoutError": TaskTimeoutError,
    }
    message, kind = str(outcome.get("error") or "task failed"), str(outcome.get("kind"))
    if outcome.get("status") == "Rejected":  # refused at the start, as task_start would raise
        return kinds.get(kind, PayloadError)(message)
    return TaskTimeoutError(message) if kind == "TaskTimeoutError" else TaskFailedError(message)


def _positive(value: str | None) -> float | None:
    """A positive number of seconds, or None (unset, empty or not a positive number)."""
    try:
        seconds = float(value or "")
    except ValueError:
        return None
    return seconds if 0 < seconds < float("inf") else None
