"""Where tasks actually run: a thread in this process, or a warm worker process.

Aer holds the GIL for the whole of a simulation (measured: no other Python thread runs
meanwhile). In a vQPU service that would freeze HTTP handling and serialise every lane,
so the service runs each lane as a worker process: the front end stays responsive, lanes
run in parallel, and stopping a running task means killing its worker and starting a
fresh one. Workers come from a ``forkserver`` (the front end has threads, so it must not
fork itself) and die with their parent.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
import threading
from typing import Any

from ..errors import QuantumError
from ..procs import die_with_parent

log = logging.getLogger(__name__)


class LaneStopped(Exception):
    """The task was stopped while running (its worker was killed)."""


class ThreadLane:
    """Runs tasks in the calling thread. Stopping a running task only discards its result."""

    def __init__(self, engine: Any):
        self.engine = engine

    def run(self, task_id: str, task: Any, prepared: Any, threads: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        return self.engine.run(task, prepared, threads)

    def stop(self, task_id: str) -> None:
        pass

    def close(self) -> None:
        pass


class ProcessLane:
    """One warm worker process with its own engine; ``stop`` kills it and starts another."""

    def __init__(self, spec: Any, context: Any):
        self.spec = spec
        self.context = context
        self._lock = threading.Lock()
        self._closed = False
        self._current: str | None = None  # the task the worker is running
        self._killed = False
        self._start()

    def _start(self) -> None:
        parent, child = self.context.Pipe()
        process = self.context.Process(target=_worker_main, args=(child, self.spec), daemon=True, name=f"lane-{self.spec.kind}")
        process.start()
        child.close()
        self._conn, self._process = parent, process

    def wait_ready(self, timeout: float = 120.0) -> None:
        try:
            if not self._conn.poll(timeout):
                raise QuantumError(f"{self.spec.kind} worker did not start within {timeout:g} s")
            kind, value = self._conn.recv()
        except (EOFError, OSError):
            raise QuantumError(f"{self.spec.kind} worker exited while starting (exit code {self._process.exitcode})") from None
        if kind != "ready":
            raise value if isinstance(value, BaseException) else QuantumError(str(value))

    def run(self, task_id: str, task: Any, prepared: Any, threads: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        with self._lock:
            self._current = task_id
        try:
            self._conn.send((task, prepared, threads))
            kind, value = self._conn.recv()
        except (EOFError, OSError):
            with self._lock:
                killed, self._current = self._killed, None
            self._replace()
            if killed:
                raise LaneStopped() from None
            raise QuantumError("the simulator worker died while running the task (out of memory?)") from None
        with self._lock:
            self._current = None
        if kind == "ok":
            return value
        raise value

    def stop(self, task_id: str) -> None:
        """Kill the worker if it is running ``task_id``; that ``run`` raises LaneStopped."""
        with self._lock:
            if self._current != task_id:
                return
            self._killed = True
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()

    def _replace(self) -> None:
        with self._lock:
            self._killed = False
            self._process.join(5)
            self._conn.close()
            if not self._closed:
                self._start()
        if not self._closed:
            self.wait_ready()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            with contextlib.suppress(OSError, BrokenPipeError):
                self._conn.send(None)
            self._process.join(2)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(2)
            self._conn.close()


def forkserver_context(preload: list[str]) -> Any:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(preload)
    return context


def _worker_main(conn: Any, spec: Any) -> None:
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the front end's business
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    from ..engines import build_engine

    try:
        engine = build_engine(spec)
        engine.warm_up()
    except BaseException as exc:  # reported to the front end, which fails to start
        conn.send(("error", QuantumError(f"{spec.kind} worker failed to start: {exc}")))
        return
    conn.send(("ready", None))
    while True:
        try:
            message = conn.recv()
        except EOFError:  # the front end is gone
            return
        if message is None:
            return
        task, prepared, threads = message
        try:
            conn.send(("ok", engine.run(task, prepared, threads)))
        except QuantumError as exc:
            conn.send(("error", exc))
        except Exception as exc:  # an engine bug fails the task, not the worker
            log.exception("worker task failed")
            conn.send(("error", QuantumError(f"internal error: {type(exc).__name__}: {exc}")))

