"""Tasks on an in-process engine: lanes, a bounded queue, bounded memory.

The Aer and Pulser backends are this class with an engine; the vQPU service serves the
very same object over HTTP. Payloads are validated in ``task_start`` (so a bad one is an
error there, not a Failed task later), then run on one of its lanes (``lanes.py``): a
thread in-process, worker processes in a vQPU service.

A service may also run *tiny* tasks inline, in the thread that started them, when its one
inline slot is free: handing a 2 ms GHZ-5 to a worker process costs more than running it
(measured ~4-5 ms extra per task on 2 cores), and holding the GIL for a few ms is harmless.
Tasks with control flow are never tiny: a loop may not end, and an inline task cannot be
interrupted.

Every task may have a deadline (``timeout`` seconds from ``task_start``; a resource may
give tasks without one ``default_timeout``). Past it the task ends Failed with "did not
finish within N s" and its lane is stopped: a worker process is killed and replaced; a
thread lane cannot be interrupted, so there the result is only discarded.
"""

from __future__ import annotations

import heapq
import logging
import math
import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import (
    PayloadError,
    QuantumError,
    ResourceUnavailableError,
    TaskFailedError,
    TaskTimeoutError,
)
from ..payloads import results
from ..payloads.model import Limits, PrimitiveTask, PulserTask
from ..payloads.parse import parse_payload
from .base import QuantumResource, ResourceStatus, TaskStatus
from .lanes import LaneStopped, ThreadLane

log = logging.getLogger(__name__)


class UnknownTaskError(QuantumError):
    exit_code = 2


@dataclass
class _Task:
    id: str
    program: str
    submitted: float
    status: TaskStatus = TaskStatus.QUEUED
    started: float | None = None
    finished: float | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    logs: list[tuple[float, str]] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    task: PrimitiveTask | PulserTask | None = None
    prepared: Any = None
    lane: Any = None  # the lane running it
    timeout: float | None = None  # seconds from submission
    timed_out: bool = False
    rule: str | None = None  # the Snakemake rule, when the client said
    client: str | None = None  # where the task came from (a vQPU's client address), for the log
    where: int | str | None = None  # the lane's index, or "inline"
    engine_seconds: float | None = None

    def log(self, message: str) -> None:
        self.logs.append((time.time(), message))  # formatted only when someone reads them

    def log_text(self) -> str:
        return "\n".join(
            f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.localtime(at))}.{int(at % 1 * 1000):03d} {message}" for at, message in self.logs
        )


class LocalResource(QuantumResource):
    def __init__(
        self,
        resource_id: str,
        resource_type: str,
        engine: Any,
        limits: Limits = Limits(),
        lanes: list[Any] | None = None,
        max_queued: int = 4096,
        keep_finished: int = 4096,
        inline_small: bool = False,
        core_budget: int | None = None,
        default_timeout: float | None = None,
    ):
        super().__init__(resource_id, resource_type)
        self.engine = engine
        self.limits = limits
        self._lane_objects = lanes or [ThreadLane(engine)]
        self.lanes = len(self._lane_objects)
        self.max_queued = max_queued
        self.keep_finished = keep_finished
        self._inline = ThreadLane(engine) if inline_small else None
        # Cores the lanes share: a task that starts while k lanes are busy gets budget/k
        # threads, so one lane running alone is not held to its even share.
        self.core_budget = core_budget
        self.default_timeout = default_timeout
        self._deadlines: list[tuple[float, str]] = []  # heap of (monotonic deadline, task id)
        self._deadline_wakeup = threading.Condition()
        self._deadline_thread: threading.Thread | None = None
        self._compact_at = 4096  # heap size that triggers dropping finished tasks from it
        self._busy_lanes = 0
        self._inline_slot = threading.Lock()
        self._queue: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._feeders = [
            threading.Thread(target=self._feed, args=(lane, i), name=f"{resource_id}-lane-{i}", daemon=True)
            for i, lane in enumerate(self._lane_objects)
        ]
        for feeder in self._feeders:
            feeder.start()
        self._tasks: OrderedDict[str, _Task] = OrderedDict()
        self._finished_ids: OrderedDict[str, None] = OrderedDict()
        self._tokens: set[str] = set()
        self._closed = False
        self._lock = threading.Lock()
        self._queued = 0
        self.counters = {"started": 0, "completed": 0, "failed": 0, "cancelled": 0, "rejected": 0, "timed_out": 0}
        # Called with a task id (under the resource's lock, so it must not block) whenever
        # a task finishes: the vQPU service wakes its long-polls with it.
        self.on_finish: Callable[[str], None] | None = None
        self.on_close: Callable[[], None] | None = None  # after the lanes are closed

    # ---------------------------------------------------------------- contract

    MAX_TOKENS = 65536  # outstanding acquisitions: a bound on what clients can make us keep

    def status(self) -> ResourceStatus:
        return ResourceStatus.OFFLINE if self._closed else ResourceStatus.ONLINE

    def acquire(self) -> str:
        token = uuid.uuid4().hex
        with self._lock:
            if len(self._tokens) >= self.MAX_TOKENS:
                raise ResourceUnavailableError(f"{self.resource_id}: {len(self._tokens)} acquisitions outstanding; release some first")
            self._tokens.add(token)
        return token

    def release(self, token: str) -> None:
        with self._lock:
            self._tokens.discard(token)

    def holds(self, token: str | None) -> bool:
        """Was ``token`` acquired here and not yet released? (The vQPU service checks it;
        in-process callers need not: see ``base.py``.)"""
        with self._lock:
            return token in self._tokens

    def task_start(
        self,
        payload: dict[str, Any],
        task_id: str | None = None,
        timeout: float | None = None,
        rule: str | None = None,
        quick_only: bool = False,
        client: str | None = None,
    ) -> str | None:
        """Validate and queue; ``task_id`` lets a remote client choose the id (must be new);
        ``timeout`` (else ``default_timeout``) is the task's deadline in seconds from now;
        ``rule`` names the Snakemake rule in the logs.

        ``quick_only``: start the task only if it runs inline right now with every circuit
        prepared already (cheap enough for a server's event loop); else return None, having
        done nothing. Bad payloads raise either way."""
        timeout = self.default_timeout if timeout is None else timeout
        if timeout is not None and not (0 < timeout < math.inf):
            raise PayloadError(f"a task's timeout must be a positive number of seconds, not {timeout!r}")
        try:
            task = parse_payload(payload, self.limits)
            self._check_program(task)
            prepared = self.engine.check(task, cached_only=quick_only)
        except QuantumError:
            with self._lock:
                self.counters["rejected"] += 1
            raise
        ready = prepared is not None or not quick_only
        inline = ready and self._inline is not None and self.engine.is_small(task, prepared) and self._inline_slot.acquire(blocking=False)
        if quick_only and not inline:
            return None
        try:
            record = self._register(task, prepared, task_id, timeout, rule, client)
            if inline:
                self._run(record, self._inline, "inline")
            else:
                self._queue.put(record)
        finally:
            if inline:
                self._inline_slot.release()
        return record.id

    def _register(self, task: Any, prepared: Any, task_id: str | None, timeout: float | None, rule: str | None,
                  client: str | None = None) -> _Task:
        record = _Task(task_id or uuid.uuid4().hex, task.program, time.time(), task=task, prepared=prepared, timeout=timeout,
                       rule=rule, client=client)
        with self._lock:
            if record.id in self._tasks:
                raise PayloadError(f"task id {record.id} is already in use")
            if self._queued >= self.max_queued:
                self.counters["rejected"] += 1
                raise ResourceUnavailableError(f"{self.resource_id}: {self._queued} tasks queued, the limit is {self.max_queued}; retry later")
            self._queued += 1
            self._tasks[record.id] = record
            self.counters["started"] += 1
        record.log(f"queued: {_describe(task)} on {self.resource_id}" + (f" for rule {rule}" if rule else ""))
        for option in getattr(task, "ignored_options", ()):
            record.log(f"option '{option}' applies to hardware only and was ignored by the simulator")
        if timeout is not None:
            self._watch_deadline(record.id, timeout)
        return record

    def task_stop(self, task_id: str) -> None:
        record = self._get(task_id)
        with self._lock:
            if record.status.finished:
                return
            if record.status is TaskStatus.QUEUED:
                self._queued -= 1  # the lane that dequeues it skips it
                self._finish_locked(record, TaskStatus.CANCELLED, error="cancelled before it started")
                return
            lane = record.lane
            # Final now; whatever the lane returns later is ignored. A worker process is
            # killed (and replaced); a thread lane cannot be interrupted, so there the
            # result is simply discarded.
            self._finish_locked(record, TaskStatus.CANCELLED, error="cancelled while running")
        if lane is not None:
            lane.stop(record.id)

    def task_status(self, task_id: str) -> TaskStatus:
        return self._get(task_id).status

    def task_result(self, task_id: str) -> dict[str, Any]:
        record = self._get(task_id)
        if record.status is TaskStatus.COMPLETED and record.result is not None:
            return record.result
        if record.timed_out:
            raise TaskTimeoutError(f"task {task_id} failed: {record.error}")
        if record.status.finished:
            raise TaskFailedError(f"task {task_id} {record.status.value.lower()}: {record.error or 'no result'}")
        raise ResourceUnavailableError(f"task {task_id} is {record.status.value}; wait for it to finish")

    def task_logs(self, task_id: str) -> str:
        return self._get(task_id).log_text()

    def target(self) -> dict[str, Any]:
        return self.engine.target()

    def metadata(self) -> dict[str, Any]:
        with self._lock:
            return {
                "resource": self.resource_id,
                "type": self.resource_type,
                "engine": self.engine.engine,
                "lanes": self.lanes,
                "queued": self._queued,
                "running": sum(1 for t in self._tasks.values() if t.status is TaskStatus.RUNNING),
                "acquired": len(self._tokens),
                "tasks_kept": len(self._tasks),
                **self.counters,
            }

    def wait(self, task_id: str, timeout: float | None = None, poll: tuple[float, float] = (0, 0)) -> TaskStatus:
        record = self._get(task_id)
        if not record.done.wait(timeout):
            raise TaskTimeoutError(f"task {task_id} on {self.resource_id} did not finish within {timeout:g} s")
        return record.status

    def close(self) -> None:
        """Stop the lanes after their current task; queued tasks are cancelled."""
        with self._lock:
            self._closed = True
        with self._deadline_wakeup:
            self._deadline_wakeup.notify()
        with self._lock:
            for record in self._tasks.values():
                if record.status is TaskStatus.QUEUED:
                    self._queued -= 1
                    self._finish_locked(record, TaskStatus.CANCELLED, error="resource closed")
        for _ in self._feeders:
            self._queue.put(None)
        for lane in self._lane_objects:
            lane.close()
        if self.on_close is not None:
            self.on_close()

    # ---------------------------------------------------------------- deadlines

    def _watch_deadline(self, task_id: str, timeout: float) -> None:
        with self._deadline_wakeup:
            if len(self._deadlines) >= self._compact_at:
                # Most tasks end long before their deadline: forget those, so the heap holds
                # about the unfinished tasks, not every task of the last hour.
                with self._lock:
                    live = [(d, t) for d, t in self._deadlines if t in self._tasks and not self._tasks[t].status.finished]
                heapq.heapify(live)
                self._deadlines = live
                self._compact_at = max(4096, 2 * len(live))
            deadline = time.monotonic() + timeout
            sooner = not self._deadlines or deadline < self._deadlines[0][0]
            heapq.heappush(self._deadlines, (deadline, task_id))
            if self._deadline_thread is None:
                self._deadline_thread = threading.Thread(target=self._enforce_deadlines, name=f"{self.resource_id}-deadlines", daemon=True)
                self._deadline_thread.start()
            elif sooner:  # else the thread already wakes up in time: no switch to it per task
                self._deadline_wakeup.notify()

    def _enforce_deadlines(self) -> None:
        while True:
            with self._deadline_wakeup:
                while not self._deadlines or self._deadlines[0][0] > time.monotonic():
                    if self._closed:
                        return
                    self._deadline_wakeup.wait(None if not self._deadlines else self._deadlines[0][0] - time.monotonic())
                _, task_id = heapq.heappop(self._deadlines)
            self._expire(task_id)

    def _expire(self, task_id: str) -> None:
        with self._lock:
            record = self._tasks.get(task_id)
            if record is None or record.status.finished:
                return
            if record.status is TaskStatus.QUEUED:
                self._queued -= 1  # the lane that dequeues it skips it
            lane = record.lane
            record.timed_out = True
            self.counters["timed_out"] += 1
            self._finish_locked(record, TaskStatus.FAILED, error=f"did not finish within {record.timeout:g} s")
        log.info("task %s did not finish within %g s: stopped", task_id, record.timeout)
        if lane is not None:
            lane.stop(task_id)

    # ---------------------------------------------------------------- internals

    def _check_program(self, task: PrimitiveTask | PulserTask) -> None:
        wanted = "pulser" if isinstance(task, PulserTask) else "primitive"
        has = "pulser" if self.engine.engine == "pulser" else "primitive"
        if wanted != has:
            kind = "a Pulser sequence" if wanted == "pulser" else "a Qiskit primitive payload"
            raise PayloadError(f"{self.resource_id} ({self.engine.engine} engine) cannot run {kind}")

    def _get(self, task_id: str) -> _Task:
        with self._lock:
            record = self._tasks.get(task_id)
        if record is None:
            raise UnknownTaskError(f"no task {task_id} on {self.resource_id} (unknown, or finished long ago and forgotten)")
        return record

    def _feed(self, lane: Any, where: int) -> None:
        while True:
            record = self._queue.get()
            if record is None:
                return
            self._run(record, lane, where)

    def _run(self, record: _Task, lane: Any, where: int | str) -> None:
        task = record.task
        with self._lock:
            if record.status.finished:  # cancelled while queued
                return
            self._queued -= 1
            record.status = TaskStatus.RUNNING
            record.started = time.time()
            record.lane = lane
            record.where = where
            self._busy_lanes += 1
            threads = max(1, self.core_budget // self._busy_lanes) if self.core_budget else None
            if where == "inline" and threads:
                threads = 1  # tiny circuits run fastest on one thread (no OpenMP start-up)
        queued = _seconds(record.started - record.submitted)
        record.log(f"started {'inline' if where == 'inline' else f'on lane {where}'} after {queued} queued" + (f", {threads} thread(s)" if threads else ""))
        try:
            body, metadata = lane.run(record.id, task, record.prepared, threads)
        except LaneStopped:
            self._finish(record, TaskStatus.CANCELLED, error="cancelled while running")
            return
        except QuantumError as exc:
            self._finish(record, TaskStatus.FAILED, error=str(exc))
            return
        except Exception as exc:  # an engine bug must fail the task, not kill the lane
            log.exception("task %s failed unexpectedly", record.id)
            self._finish(record, TaskStatus.FAILED, error=f"internal error: {type(exc).__name__}: {exc}")
            return
        finally:
            with self._lock:
                record.lane = None
                self._busy_lanes -= 1
        metadata["queued_seconds"] = round((record.started or record.submitted) - record.submitted, 6)
        metadata["lane"] = where  # for per-lane metrics ("inline": the request thread ran it)
        metadata["lanes"] = self.lanes
        record.engine_seconds = metadata.get("run_seconds")
        doc = results.document(task.program, (self.resource_id, self.resource_type), body, metadata, task_id=record.id)
        with self._lock:
            if record.status.finished:  # stopped while running
                return
            record.result = doc
            self._finish_locked(record, TaskStatus.COMPLETED)

    def _finish(self, record: _Task, status: TaskStatus, error: str | None = None) -> None:
        with self._lock:
            self._finish_locked(record, status, error)

    def _finish_locked(self, record: _Task, status: TaskStatus, error: str | None = None) -> None:
        if record.status.finished:
            return  # already final (stopped while running): the first word stands
        record.status = status
        record.error = error
        record.finished = time.time()
        record.task = record.prepared = record.lane = None  # large; the result is what we keep
        self.counters[{"Completed": "completed", "Failed": "failed", "Cancelled": "cancelled"}[status.value]] += 1
        summary = _timings(record)
        record.log(f"{status.value.lower()}{': ' + error if error else ''} ({summary})")
        if log.isEnabledFor(logging.INFO):
            rule = f" rule {record.rule}" if record.rule else ""
            client = f" from {record.client}" if record.client else ""
            log.info("task %s%s %s %s (%s)%s%s", record.id, rule, record.program, status.value.lower(), summary, client,
                     f": {error}" if error else "")
        record.done.set()
        if self.on_finish is not None:
            self.on_finish(record.id)
        # Keep memory bounded under any load: forget the oldest finished tasks.
        self._finished_ids[record.id] = None
        while len(self._finished_ids) > self.keep_finished:
            old, _ = self._finished_ids.popitem(last=False)
            self._tasks.pop(old, None)



def _describe(task: PrimitiveTask | PulserTask) -> str:
    if isinstance(task, PulserTask):
        return f"pulser task, {task.shots} shots"
    pubs = len(task.pubs)
    return f"{task.program} task, {pubs} pub{'s' if pubs != 1 else ''}"


def _seconds(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _timings(record: _Task) -> str:
    """Where and how long: queued, running (of which in the engine), the lane."""
    end = record.finished or time.time()
    if record.started is None:
        return f"queued {_seconds(end - record.submitted)}, never started"
    parts = [f"queued {_seconds(record.started - record.submitted)}", f"ran {_seconds(end - record.started)}"]
    if record.engine_seconds is not None:
        parts.append(f"engine {_seconds(record.engine_seconds)}")
    parts.append("?" if record.where is None else "inline" if record.where == "inline" else f"lane {record.where}")
    return ", ".join(parts)


def in_process(
    resource_id: str, resource_type: str, settings: dict[str, str], limits: Limits = Limits(), dedicated: bool = False
) -> LocalResource:
    """A ``qiskit-aer`` or ``pulser-emulator`` resource: its engine runs in this process
    (``dedicated``: see ``open_resource``). It imports its simulator when a task first
    needs it: a payload that fails our own checks is refused without that cost."""
    from ..engines import build_engine, spec_from_settings
    from ..resources.types import AER

    spec = spec_from_settings("aer" if resource_type == AER else "pulser", settings, limits)
    return LocalResource(resource_id, resource_type, build_engine(spec, dedicated, preload=False), limits)
