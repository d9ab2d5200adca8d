"""The one resource contract every backend implements (QRMI semantics).

A resource is a named quantum device or simulator. Work goes through it as tasks:
``acquire`` once, ``task_start`` a payload, poll ``task_status``, read ``task_result``,
``release`` at the end. The calls block, as in QRMI, so the same code drives a local
simulator, a vQPU over HTTP and a cloud QPU through the ``qrmi`` package.

Acquisition tokens are checked where a resource is shared: a vQPU refuses a task whose
token it did not issue or has released (so a job of a run that has ended cannot use
it), and QRMI's own backends check theirs. An in-process simulator (``qiskit-aer``,
``pulser-emulator``) checks none: it lives inside the one process that would present
the token, reserves nothing, and no other party can reach it, so a check could only
ever pass.
"""

from __future__ import annotations

import enum
import time
from abc import ABC, abstractmethod
from typing import Any

from ..errors import TaskTimeoutError


class TaskStatus(enum.StrEnum):
    QUEUED = "Queued"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def finished(self) -> bool:
        return self in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)


class ResourceStatus(enum.StrEnum):
    ONLINE = "Online"
    OFFLINE = "Offline"
    PAUSED = "Paused"


class QuantumResource(ABC):
    """A named quantum resource. Payloads and results are plain JSON-compatible dicts."""

    def __init__(self, resource_id: str, resource_type: str):
        self.resource_id = resource_id
        self.resource_type = resource_type
        # Set before ``run`` blocks, so a signal handler can stop the task it started.
        self.last_task_id: str | None = None

    def status(self) -> ResourceStatus:
        """Can the resource take tasks now? Backends that can tell override this; the
        default, for those that cannot (a site's ``python:`` backend), is Online."""
        return ResourceStatus.ONLINE

    @abstractmethod
    def acquire(self) -> str:
        """Reserve the resource for this job; returns the acquisition token."""

    @abstractmethod
    def release(self, token: str) -> None: ...

    @abstractmethod
    def task_start(self, payload: dict[str, Any]) -> str:
        """Validate and queue a payload; returns the task id. Bad payloads raise PayloadError."""

    @abstractmethod
    def task_stop(self, task_id: str) -> None:
        """Cancel the task if it is queued or running; no-op once it has finished."""

    @abstractmethod
    def task_status(self, task_id: str) -> TaskStatus: ...

    @abstractmethod
    def task_result(self, task_id: str) -> dict[str, Any]:
        """The result document of a Completed task (see docs/results.md)."""

    @abstractmethod
    def task_logs(self, task_id: str) -> str: ...

    @abstractmethod
    def target(self) -> dict[str, Any]:
        """What the resource can run: qubits or atoms, instructions, limits."""

    @abstractmethod
    def metadata(self) -> dict[str, Any]: ...

    def close(self) -> None:  # noqa: B027 - optional hook, not every backend holds state
        """Free local state (threads, connections). The resource object is unusable after."""

    def run(self, payload: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Start a task and block until its result (TaskFailedError if it fails)."""
        self.last_task_id = self.task_start(payload)
        return self.wait_result(self.last_task_id, timeout)

    def wait_result(self, task_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Block until the task finishes; its result, or TaskFailedError saying why not."""
        self.wait(task_id, timeout)
        return self.task_result(task_id)

    def wait(
        self, task_id: str, timeout: float | None = None, poll: tuple[float, float] = (0.005, 1.0)
    ) -> TaskStatus:
        """Block until the task finishes, polling with exponential back-off.

        Backends with a cheaper way to wait (a future, a long-poll) override this.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay, max_delay = poll
        while True:
            status = self.task_status(task_id)
            if status.finished:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                raise TaskTimeoutError(f"task {task_id} on {self.resource_id} did not finish within {timeout:g} s")
            time.sleep(delay if deadline is None else min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, max_delay)
