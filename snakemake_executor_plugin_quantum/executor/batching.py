"""Inline qrun tasks for one vQPU, sent together when they wait together.

While the vQPU has a free *slot* (one per lane: a request in flight per lane keeps its
lanes busy), a task is sent at once, alone. Tasks that arrive while every slot is taken
wait, and when a request comes back the waiting ones go as one batch request (one HTTP
round trip instead of one each). There is no timer: nothing waits for a batch to fill.
Each task of a batch still runs as it would alone on the vQPU (its own id, seed,
validation, lane and deadline), so its result document is the one it would get alone.

A batch is sent by the thread of one of its own jobs (no extra thread); the others wait
for their outcome. Tasks with different deadlines do not share a batch.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Mapping
from typing import Any

from .. import tasks
from ..backends.vqpu_client import VQPUClient
from ..errors import QuantumError, TaskFailedError, TaskTimeoutError
from ..metrics import record as metrics
from ..resources.resolve import resolve_resource
from ..resources.types import VQPU


class _Waiting:
    __slots__ = ("payload", "deadline", "environ", "task_id", "ready", "result", "error", "lead")

    def __init__(self, payload: dict[str, Any], deadline: tasks.Deadline, environ: Mapping[str, str]):
        self.payload, self.deadline, self.environ = payload, deadline, environ
        self.task_id = uuid.uuid4().hex
        self.ready = threading.Event()
        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.lead: list[_Waiting] | None = None  # set when this job's thread is to send a batch


class VQPUBatcher:
    def __init__(self, name: str, settings: dict[str, str], slots: int, max_batch: int):
        self.name, self.settings = name, settings
        self.slots, self.max_batch = max(1, slots), max(1, max_batch)
        self._free = self.slots
        self._queue: list[_Waiting] = []
        self._lock = threading.Lock()
        self._idle: list[VQPUClient] = []  # keep-alive connections, one per slot at most
        self._sending: dict[VQPUClient, list[_Waiting]] = {}
        self._cancelled = False

    def run(self, payload: dict[str, Any], timeout: float | None, environ: Mapping[str, str]) -> dict[str, Any]:
        """The task's result document (QuantumError if it failed, timed out or was stopped)."""
        me = _Waiting(payload, tasks.task_deadline(timeout, self.settings, "vqpu"), environ)
        with self._lock:
            if self._cancelled:
                raise TaskFailedError("the run was cancelled before this task was sent")
            if self._free:
                self._free -= 1
                batch: list[_Waiting] | None = [me]
            else:
                self._queue.append(me)
                batch = None
        if batch is None:
            me.ready.wait()
            batch = me.lead
        while batch:
            self._send(batch)
            with self._lock:
                batch = self._next_batch()
                if not batch:
                    self._free += 1
            if batch and me not in batch:  # hand the next batch to one of its own jobs
                batch[0].lead = batch
                batch[0].ready.set()
                batch = None
        if me.error is not None:
            raise me.error
        assert me.result is not None
        return me.result

    def _next_batch(self) -> list[_Waiting]:
        """The waiting tasks that can go together (same deadline), oldest first."""
        if not self._queue:
            return []
        seconds = self._queue[0].deadline.seconds
        batch = [w for w in self._queue if w.deadline.seconds == seconds][: self.max_batch]
        self._queue = [w for w in self._queue if w not in batch]
        return batch

    def _send(self, batch: list[_Waiting]) -> None:
        with self._lock:
            client = self._idle.pop() if self._idle else VQPUClient(self.name, self.settings)
            self._sending[client] = batch
        pending = [metrics.begin(self.name, "vqpu", w.payload, self.settings, w.environ, client="inline") for w in batch]
        deadline = batch[0].deadline
        try:
            outcomes: list[Any] = client.run_many([w.payload for w in batch], deadline.seconds, [w.task_id for w in batch])
        except BaseException as exc:  # the request itself failed: every task of it did
            outcomes = [exc] * len(batch)
        finally:
            with self._lock:
                self._sending.pop(client, None)
                self._idle.append(client)
        for waiting, outcome, task in zip(batch, outcomes, pending, strict=True):
            if isinstance(outcome, TaskTimeoutError):
                outcome = TaskTimeoutError(deadline.expired(self.name))
            if isinstance(outcome, BaseException):
                waiting.error = outcome
                if task is not None:
                    task.ended(outcome, waiting.task_id)
            else:
                waiting.result = outcome
                if task is not None:
                    task.completed(outcome, batch=len(batch))
            waiting.ready.set()

    def stop_all(self) -> None:
        """Cancel: tasks not sent yet fail; tasks in flight are stopped on the vQPU."""
        with self._lock:
            self._cancelled = True
            waiting, self._queue = self._queue, []
            in_flight = [w.task_id for batch in self._sending.values() for w in batch]
        for w in waiting:
            w.error = TaskFailedError("the run was cancelled before this task was sent")
            w.ready.set()
        if in_flight:
            stopper = VQPUClient(self.name, self.settings)
            try:
                for task_id in in_flight:
                    tasks.stop_quietly(stopper, task_id)
            finally:
                stopper.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for client in idle:
            with contextlib.suppress(QuantumError):
                client.close()


class InlineRuns:
    """Inline qrun tasks, sent through one batcher per vQPU, so that tasks waiting together
    go together and a cancel can stop them all (in the sender process: sender.py)."""

    def __init__(self, max_batch: int = 32) -> None:
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._batchers: dict[tuple[str, str, str], VQPUBatcher] = {}

    def run(self, argv: list[str], environ: Mapping[str, str], stdout: str | None = None) -> bool:
        """Run qrun ``argv``'s task and write its output (without ``-o``: to the file
        ``stdout`` names, else to standard output); False (nothing done) when it is not
        for a vQPU or is not a plain run (usage, help). QuantumError: it failed."""
        invocation = tasks.parse_quietly(argv)
        if invocation is None:
            return False
        resolved = resolve_resource(invocation.resource_name, invocation.args.config, environ)
        if resolved.type != VQPU:
            return False
        payload = tasks.read_payload(invocation)
        result = self._batcher(resolved).run(payload, invocation.args.timeout, environ)
        if invocation.output or stdout is None:
            tasks.write_result(result, invocation.output)
        else:  # what qrun prints, into the file bash opened for it (a symlink, /dev/null: as bash)
            with open(stdout, "w", encoding="utf-8") as stream:
                stream.write(tasks.render(result))
        return True

    def _batcher(self, resolved: Any) -> VQPUBatcher:
        settings = resolved.settings
        key = (resolved.name, settings.get("QRMI_VQPU_EVENT_FILE", ""), settings.get("QRMI_JOB_ACQUISITION_TOKEN", ""))
        with self._lock:
            batcher = self._batchers.get(key)
            if batcher is None:
                batcher = self._batchers[key] = VQPUBatcher(resolved.name, settings, _lanes(resolved), self.max_batch)
            return batcher

    def stop_all(self) -> None:
        """Cancel every task an inline qrun is waiting for (Ctrl-C, SIGTERM, failure)."""
        with self._lock:
            batchers = list(self._batchers.values())
        for batcher in batchers:
            batcher.stop_all()

    def close(self) -> None:
        with self._lock:
            batchers, self._batchers = list(self._batchers.values()), {}
        for batcher in batchers:
            batcher.close()


def _lanes(resolved: Any) -> int:
    """How many requests to keep in flight: the vQPU's lanes (it says in its metadata)."""
    client = VQPUClient(resolved.name, resolved.settings)
    try:
        return int(client.metadata().get("lanes") or 1)
    except (QuantumError, TypeError, ValueError):
        return 1
    finally:
        client.close()
