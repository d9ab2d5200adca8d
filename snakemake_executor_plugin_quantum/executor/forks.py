"""``run:`` jobs in processes forked from a warm copy of this Snakemake process.

Snakemake's local executor starts a new ``python -m snakemake --target-jobs ...`` for every
``run:`` job (~1.3 s each on 2 cores, plus any qiskit import inside the block), because a
``run:`` block in a thread would share the GIL and the working directory with the
scheduler. A fork gives the same isolation for the cost of a fork: when the executor
starts, while this process has only its main thread (so forking is safe), it forks one
*job parent*. That process already holds the parsed workflow (every rule's ``run``
function) and, if quantum jobs will need them, imports qiskit and our primitives once.
For each job it forks a child that sets the job's environment and runs Snakemake's own
``run_wrapper`` with the arguments Snakemake computed for that job in the main process,
exactly what ``--force-use-threads`` runs in a thread, then exits with its status.

Guarantees, as with Snakemake's spawned jobs: a job that raises fails only itself, its
traceback printed by Snakemake's logger in the child; SIGINT and SIGTERM raise
KeyboardInterrupt in the job (so the primitives stop their task), and the main process
stops the children by PID on cancel; each child sees only its own job's environment; no
state leaks between jobs (each is a fresh copy of the job parent). Children die with the
job parent, which dies with Snakemake (``die_with_parent``), even on ``kill -9``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import select
import signal
import socket
import struct
import sys
import threading
from collections.abc import Callable
from typing import Any

from ..procs import die_with_parent

log = logging.getLogger(__name__)

_HEADER = struct.Struct("!I")


class ForkedJobError(Exception):
    """The job parent is gone; the job could not run."""


class Payload(bytes):
    """A job for the job parent: its rule, ``run_wrapper`` arguments, environment and
    working directory, pickled now so a job that cannot be pickled is known before it runs."""

    def __new__(cls, rule: str, args: tuple[Any, ...], environ: dict[str, str], cwd: str) -> Payload:
        return super().__new__(cls, pickle.dumps((rule, args, environ, cwd), protocol=pickle.HIGHEST_PROTOCOL))


class JobForker:
    """The main process's side: send a job, wait for its exit status."""

    def __init__(self, run_job: Callable[[str, tuple[Any, ...]], None], preload: tuple[str, ...] = ()):
        """Fork the job parent now: call only while this process has a single thread.

        ``run_job(rule_name, args)`` runs one job in a child (in the job parent's copy of
        this process); ``preload`` are modules the job parent imports once.
        """
        if threading.active_count() != 1:
            raise RuntimeError("the job parent must be forked while only the main thread runs")
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # the job parent: never returns
            ours.close()
            _job_parent(theirs, run_job, preload)
        theirs.close()
        self.pid = pid
        self._sock = ours
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self._next = 0
        self._waiting: dict[int, list[Any]] = {}  # key -> [event, exit code, child pid]
        self._closed = False
        self._reader: threading.Thread | None = None

    def run(self, payload: Payload) -> int:
        """Run the job in a fresh child; its exit status (0: success)."""
        with self._lock:
            if self._closed:
                raise ForkedJobError("the run is ending")
            if self._reader is None:
                self._reader = threading.Thread(target=self._read, name="job-forker", daemon=True)
                self._reader.start()
            key = self._next = self._next + 1
            slot = self._waiting[key] = [threading.Event(), None, None]
        try:
            with self._send_lock:
                _send(self._sock, (key, bytes(payload)))
        except OSError:
            raise ForkedJobError("the job parent process is gone") from None
        slot[0].wait()
        with self._lock:
            self._waiting.pop(key, None)
        if slot[1] is None:
            raise ForkedJobError("the job parent process is gone")
        return slot[1]

    def job_pids(self) -> set[int]:
        """PIDs of the children running jobs now (stopped by PID on cancel)."""
        with self._lock:
            return {slot[2] for slot in self._waiting.values() if slot[2] is not None}

    def _read(self) -> None:
        reader = _Reader(self._sock)
        while (message := reader.next()) is not None:
            kind, key, value = message
            with self._lock:
                slot = self._waiting.get(key)
            if slot is None:
                continue
            if kind == "started":
                slot[2] = value
            else:  # "exit"
                slot[1] = value
                slot[0].set()
        with self._lock:  # the job parent is gone: nobody will answer the waiting jobs
            for slot in self._waiting.values():
                slot[0].set()

    def close(self, timeout: float = 10.0) -> None:
        """End the job parent; it stops children still running (SIGTERM, then SIGKILL)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        _reap(self.pid, timeout)


# ------------------------------------------------------------------ the job parent


def _job_parent(sock: socket.socket, run_job: Callable[[str, tuple[Any, ...]], None], preload: tuple[str, ...]) -> None:
    code = 0
    try:
        die_with_parent()
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the jobs and the main process
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes select through the wakeup fd
        for module in preload:
            try:
                __import__(module)
            except Exception as exc:  # the job that needs it will say so
                log.debug("preloading %s failed: %s", module, exc)
        _serve(sock, wake_r, run_job)
    except BaseException:  # noqa: BLE001 - this process must never return into Snakemake
        code = 1
    finally:
        os._exit(code)


def _serve(sock: socket.socket, wake: int, run_job: Callable[[str, tuple[Any, ...]], None]) -> None:
    reader = _Reader(sock)
    children: dict[int, int] = {}  # pid -> key
    while True:
        ready, _, _ = select.select([sock, wake], [], [])
        if wake in ready:
            with contextlib.suppress(BlockingIOError, InterruptedError):
                os.read(wake, 4096)
        while True:  # reap every child that has exited
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            key = children.pop(pid, None)
            if key is not None:
                _send(sock, ("exit", key, os.waitstatus_to_exitcode(status)))
        if sock in ready:
            while (message := reader.next(block=False)) is not ...:
                if message is None:  # the main process closed: stop what still runs
                    _stop_children(children)
                    return
                key, payload = message
                pid = os.fork()
                if pid == 0:
                    _job_child(sock, wake, payload, run_job)
                children[pid] = key
                _send(sock, ("started", key, pid))


def _job_child(sock: socket.socket, wake: int, payload: bytes, run_job: Callable[[str, tuple[Any, ...]], None]) -> None:
    code = 1
    try:
        sock.close()
        os.close(wake)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _interrupt)  # stopped like Ctrl-C: tasks are stopped on the way out
        die_with_parent()
        rule, args, environ, cwd = pickle.loads(payload)
        os.environ.clear()
        os.environ.update(environ)
        os.chdir(cwd)
        run_job(rule, args)
        code = 0
    except KeyboardInterrupt:
        code = 128 + signal.SIGINT
    except BaseException:  # noqa: BLE001 - reported by run_job; the status says it failed
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def _stop_children(children: dict[int, int], grace: float = 5.0) -> None:
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for pid in list(children):
        _reap(pid, grace)


def _reap(pid: int, timeout: float) -> None:
    """Wait for ``pid`` (our child) to exit; SIGKILL it after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


# ------------------------------------------------------------------ framing


def _send(sock: socket.socket, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_HEADER.pack(len(data)) + data)


class _Reader:
    """Length-prefixed pickled messages from a socket; ``None`` at end of stream."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buffer = b""

    def next(self, block: bool = True) -> Any:
        """The next message, None at EOF, or ... (Ellipsis) when none is complete and not blocking."""
        while True:
            if len(self.buffer) >= _HEADER.size:
                (size,) = _HEADER.unpack_from(self.buffer)
                if len(self.buffer) >= _HEADER.size + size:
                    data = self.buffer[_HEADER.size:_HEADER.size + size]
                    self.buffer = self.buffer[_HEADER.size + size:]
                    return pickle.loads(data)
            if not block and not select.select([self.sock], [], [], 0)[0]:
                return ...
            try:
                chunk = self.sock.recv(1 << 16)
            except OSError:
                return None
            if not chunk:
                return None
            self.buffer += chunk
