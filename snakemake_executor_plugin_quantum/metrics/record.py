"""One JSON line per quantum task: what it waited for, ran on and cost (docs/metrics.md).

Written by whoever runs the task: ``qrun`` (a process, or the executor's inline path),
the primitives in ``run:``/``script:`` jobs and programs, and jobs on Slurm nodes. The
executor names the run's file in ``SNAKEMAKE_QUANTUM_METRICS`` (for every job) and the
job in ``SNAKEMAKE_QUANTUM_JOB`` (for quantum jobs). Outside a run nothing is written.

Each record is appended whole, under a POSIX lock (which works on the shared file
systems of Slurm clusters), so a crash loses at most the task in flight. A record holds
no token, key or secret: its fields are chosen, and its error message has every secret
value of the environment and the resource's settings masked.

Light imports only: this is on every job's path.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Mapping
from typing import Any

from ..redact import mask, secret_values

METRICS_VAR = "SNAKEMAKE_QUANTUM_METRICS"
JOB_VAR = "SNAKEMAKE_QUANTUM_JOB"
STATUSES = ("completed", "failed", "cancelled", "timeout")


class PendingTask:
    """A task being run: created just before it is submitted, finished with its outcome."""

    __slots__ = ("path", "job", "resource", "resource_type", "payload", "settings", "environ", "client", "submitted", "task_id")

    def __init__(self, path: str, job: dict[str, Any], resource: str, resource_type: str, payload: Mapping[str, Any],
                 settings: Mapping[str, str], environ: Mapping[str, str], client: str):
        self.path, self.job, self.resource, self.resource_type = path, job, resource, resource_type
        self.payload, self.settings, self.environ, self.client = payload, settings, environ, client
        self.submitted = time.time()
        self.task_id: str | None = None

    def completed(self, result: Mapping[str, Any], batch: int | None = None) -> None:
        """``batch``: how many tasks went to the resource in the same request."""
        record = _record(self, "completed", result=result)
        if batch is not None:
            record["batch"] = batch
        self._write(record)

    def ended(self, error: BaseException, task_id: str | None = None) -> None:
        """The task did not complete: ``error`` says how (timeout, cancelled by a signal, failed)."""
        self.task_id = self.task_id or task_id
        self._write(_record(self, _status_of(error), error=error))

    def _write(self, record: dict[str, Any]) -> None:
        append(self.path, record)


def begin(resource: str, resource_type: str, payload: Mapping[str, Any], settings: Mapping[str, str],
          environ: Mapping[str, str] | None = None, client: str = "qrun") -> PendingTask | None:
    """A pending task, or None when no run collects metrics (no ``SNAKEMAKE_QUANTUM_METRICS``)."""
    environ = os.environ if environ is None else environ
    path = environ.get(METRICS_VAR)
    if not path:
        return None
    try:
        job = json.loads(environ.get(JOB_VAR) or "{}")
    except ValueError:
        job = {}
    return PendingTask(path, job if isinstance(job, dict) else {}, resource, resource_type, payload, settings, environ, client)


def append(path: str, record: Mapping[str, Any]) -> None:
    """Append one record as one line, whole (a lock for writers on other nodes too)."""
    import fcntl

    line = (json.dumps(record, separators=(",", ":"), allow_nan=False, default=str) + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError:
        return  # metrics never fail a task (the run's directory may be gone)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        os.write(fd, line)
    except OSError:
        pass
    finally:
        os.close(fd)


# ------------------------------------------------------------------ the record


def _status_of(error: BaseException) -> str:
    from ..errors import TaskTimeoutError

    if isinstance(error, TaskTimeoutError):
        return "timeout"
    if isinstance(error, (KeyboardInterrupt, SystemExit)) or "cancel" in str(error).lower():
        return "cancelled"
    return "failed"


def _record(task: PendingTask, status: str, result: Mapping[str, Any] | None = None, error: BaseException | None = None) -> dict[str, Any]:
    finished = time.time()
    metadata = (result or {}).get("metadata") or {}
    queued = _number(metadata.get("queued_seconds"))
    engine = _number(metadata.get("run_seconds"))
    submitted = task.submitted
    # The service's own clock may differ from ours (another node): place "started" by its
    # queue wait, within our submitted..finished.
    started = min(finished, submitted + queued) if queued is not None else (submitted if result is None else max(submitted, finished - (engine or 0.0)))
    pubs, sets, shots = _shape(task.payload, result)
    record: dict[str, Any] = {
        "rule": task.job.get("rule"),
        "jobid": task.job.get("jobid"),
        "wildcards": task.job.get("wildcards") or {},
        "resource": task.resource,
        "resource_type": task.resource_type,
        "task_id": (result or {}).get("task_id") or task.task_id,
        "submitted": round(submitted, 6),
        "started": round(max(submitted, started), 6),
        "finished": round(finished, 6),
        "shots": shots,
        "status": status,
        "program": (result or {}).get("program") or _program(task.payload),
        "pubs": pubs,
        "parameter_sets": sets,
        "queue_seconds": queued,
        "lease_seconds": _number(task.job.get("lease_seconds")),
        "acquire_seconds": _number(task.job.get("acquire_seconds")),
        "engine_seconds": engine,
        "qubits": _qubits(metadata),
        "depth": _depth(metadata),
        "lane": metadata.get("lane"),
        "lanes": metadata.get("lanes"),
        "slurm_job_id": task.environ.get("SLURM_JOB_ID"),
        "host": socket.gethostname(),
        "client": task.client,
    }
    if error is not None:
        record["error"] = type(error).__name__
        record["message"] = _masked(" ".join(str(error).split()) or type(error).__name__, task)[:500]
    return record


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _program(payload: Mapping[str, Any]) -> str | None:
    if "program_id" in payload:
        return str(payload["program_id"])
    return "pulser" if "sequence" in payload else None


def _shape(payload: Mapping[str, Any], result: Mapping[str, Any] | None) -> tuple[int | None, int | None, int | None]:
    """(pubs, parameter sets, total shots) of the task, from its result when there is one."""
    if result is not None and isinstance(result.get("pubs"), list):
        pubs = result["pubs"]
        sets = sum(int(p.get("parameter_sets") or _size(p.get("shape"))) for p in pubs if isinstance(p, dict))
        shots = result.get("shots")
        if not isinstance(shots, int):
            shots = sum(int(p.get("shots") or 0) * int(p.get("parameter_sets") or 1) for p in pubs if isinstance(p, dict)) or None
        return len(pubs), sets, shots
    if result is not None and "counts" in result:  # Pulser
        return None, None, result.get("shots")
    params = payload.get("parameters") if isinstance(payload.get("parameters"), dict) else None
    if params is not None and isinstance(params.get("pubs"), list):
        return len(params["pubs"]), None, None
    if "job_runs" in payload:
        return None, None, payload.get("job_runs")
    return None, None, None


def _size(shape: Any) -> int:
    total = 1
    for n in shape or ():
        total *= int(n)
    return total


def _qubits(metadata: Mapping[str, Any]) -> int | None:
    active = metadata.get("active_qubits")
    if isinstance(active, list) and active:
        return max(len(a) for a in active if isinstance(a, list)) if all(isinstance(a, list) for a in active) else None
    atoms = metadata.get("atoms")
    return len(atoms) if isinstance(atoms, list) else None


def _depth(metadata: Mapping[str, Any]) -> int | None:
    depths = metadata.get("depths")
    return max(depths) if isinstance(depths, list) and depths and all(isinstance(d, int) for d in depths) else None


def _masked(message: str, task: PendingTask) -> str:
    """Every secret the task could know (environment, resource settings) masked."""
    return mask(message, secret_values(task.environ, task.settings))
