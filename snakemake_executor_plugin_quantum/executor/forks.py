"""``run:`` jobs in processes forked from a warm copy of this Snakemake process.

Snakemake's local executor starts a new ``python -m snakemake --target-jobs ...`` for every
``run:`` job (~1.3 s each on 2 cores, plus any qiskit import inside the block), because a
``run:`` block in a thread would share the GIL and the working directory with the
scheduler. A fork gives the same isolation for the cost of a fork: when the executor
starts, while this process has only its main thread (so forking is safe), it forks one
*job parent*. That process already holds the parsed workflow (every rule's ``run``
function) and, if quantum jobs will need them, imports qiskit and our primitives once.
For each job it hands a child, forked ahead of time, the arguments Snakemake computed
for that job in the main process; the child sets the job's environment and runs
Snakemake's own ``run_wrapper``, exactly what ``--force-use-threads`` runs in a thread,
then reports its status and exits.

Forking a process that holds Snakemake and qiskit and tearing it down again costs about
as much kernel time as a small quantum job. So neither is on a job's path: the job parent
keeps a few *spare* children forked in advance (a new one is forked after each hand-over),
and a child reports its exit status straight to the main process before it exits, not
when the kernel has finished tearing it down.

Guarantees, as with Snakemake's spawned jobs: a job that raises fails only itself, its
traceback printed by Snakemake's logger in the child; SIGINT and SIGTERM raise
KeyboardInterrupt in the job (so the primitives stop their task), and the main process
stops the children by PID on cancel; each child sees only its own job's environment; no
state leaks between jobs (each is a fresh copy of the job parent). Children die with the
job parent, which dies with Snakemake (``die_with_parent``), even on ``kill -9``.
"""

from __future__ import annotations

import contextlib
import gc
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
from . import messages

log = logging.getLogger(__name__)

_KEY = struct.Struct("!Q")  # the job's key, before its payload
_REPORT = struct.Struct("!Qi")  # a child's job key and exit status: one datagram


class ForkedJobError(Exception):
    """The job parent is gone; the job could not run."""


class Payload(bytes):
    """A job for the job parent: its rule, ``run_wrapper`` arguments, environment and
    working directory, pickled now so a job that cannot be pickled is known before it runs."""

    def __new__(cls, rule: str, args: tuple[Any, ...], environ: dict[str, str], cwd: str) -> Payload:
        return super().__new__(cls, pickle.dumps((rule, args, environ, cwd), protocol=pickle.HIGHEST_PROTOCOL))


class JobForker:
    """The main process's side: send a job, wait for its exit status."""

    def __init__(self, run_job: Callable[[str, tuple[Any, ...]], None], preload: tuple[str, ...] = (), spares: int = 2):
        """Fork the job parent now: call only while this process has a single thread.

        ``run_job(rule_name, args)`` runs one job in a child (in the job parent's copy of
        this process); ``preload`` are modules the job parent imports once (and whose
        ``warm_up()``, if they have one, it calls); ``spares``: children kept forked ahead
        (the number of jobs that may start at the same moment).
        """
        if threading.active_count() != 1:
            raise RuntimeError("the job parent must be forked while only the main thread runs")
        ours, theirs = socket.socketpair()
        reports, report_to = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)  # from the children
        pid = os.fork()
        if pid == 0:  # the job parent: never returns
            ours.close()
            reports.close()
            _job_parent(theirs, report_to, run_job, preload, max(1, spares))
        theirs.close()
        report_to.close()
        self.pid = pid
        self._sock = ours
        self._reports = reports
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
                messages.send(self._sock, (key, bytes(payload)))
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
        """Messages from the job parent (started, exit when it reaped a child) and each
        child's own exit report, whichever comes first."""
        reader = messages.Reader(self._sock)
        message: Any = ...
        while message is not None:
            try:
                ready, _, _ = select.select([self._sock, self._reports], [], [])
                if self._reports in ready:
                    data = self._reports.recv(_REPORT.size)
                    if len(data) == _REPORT.size:
                        self._ended(*_REPORT.unpack(data))
                while self._sock in ready and (message := reader.next(block=False)) not in (None, ...):
                    kind, key, value = message
                    if kind == "exit":
                        self._ended(key, value)
                        continue
                    with self._lock:
                        slot = self._waiting.get(key)
                    if slot is not None:  # "started"
                        slot[2] = value
            except (OSError, ValueError):  # closed: the run is ending
                break
        with self._lock:  # the job parent is gone: nobody will answer the waiting jobs
            for slot in self._waiting.values():
                slot[0].set()

    def _ended(self, key: int, code: int) -> None:
        with self._lock:
            slot = self._waiting.get(key)
            if slot is None or slot[1] is not None:  # the child's report came first
                return
            slot[1] = code
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
        self._reports.close()


# ------------------------------------------------------------------ the job parent


def _job_parent(sock: socket.socket, report_to: socket.socket, run_job: Callable[[str, tuple[Any, ...]], None],
                preload: tuple[str, ...], spares: int) -> None:
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
                warm_up = getattr(__import__(module, fromlist=["_"]), "warm_up", None)
                if warm_up is not None:  # first-use costs (lazy imports, caches) paid once, here
                    warm_up()
            except Exception as exc:  # the job that needs it will say so
                log.debug("preloading %s failed: %s", module, exc)
        gc.freeze()  # the children's garbage collections leave the inherited objects (and their pages) alone
        _JobParent(sock, report_to, (wake_r, wake_w), run_job, spares).serve()
    except BaseException:  # noqa: BLE001 - this process must never return into Snakemake
        code = 1
    finally:
        os._exit(code)


class _JobParent:
    """The job parent's loop: hand each job to a spare child, fork the next spare, and
    report children that died without reporting (killed, crashed)."""

    def __init__(self, sock: socket.socket, report_to: socket.socket, wake: tuple[int, int],
                 run_job: Callable[[str, tuple[Any, ...]], None], spares: int):
        self.sock, self.report_to, self.run_job, self.wanted = sock, report_to, run_job, spares
        self.wake, self.wake_w = wake  # the signal wakeup pipe
        self.spares: list[tuple[int, int]] = []  # (pid, fd the job goes to), forked ahead
        self.children: dict[int, int | None] = {}  # pid -> job key (None: a spare)

    def serve(self) -> None:
        reader = messages.Reader(self.sock)
        self._top_up()
        while True:
            ready, _, _ = select.select([self.sock, self.wake], [], [])
            if self.wake in ready:
                with contextlib.suppress(BlockingIOError, InterruptedError):
                    os.read(self.wake, 4096)
            self._reap()
            if self.sock in ready:
                while (message := reader.next(block=False)) is not ...:
                    if message is None:  # the main process closed: stop what still runs
                        _stop_children(self.children)
                        return
                    self._start(*message)
            self._top_up()

    def _start(self, key: int, payload: bytes) -> None:
        while True:
            pid, fd = self.spares.pop(0) if self.spares else self._fork_spare()
            try:
                _write_all(fd, _KEY.pack(key) + payload)
                break
            except OSError:  # that spare died meanwhile: the next one
                continue
            finally:
                os.close(fd)
        self.children[pid] = key
        messages.send(self.sock, ("started", key, pid))

    def _top_up(self) -> None:
        while len(self.spares) < self.wanted:
            self.spares.append(self._fork_spare())

    def _fork_spare(self) -> tuple[int, int]:
        job_r, job_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(job_w)
            _job_child(job_r, self.report_to, [self.sock.fileno(), self.wake, self.wake_w, *(fd for _, fd in self.spares)], self.run_job)
        os.close(job_r)
        self.children[pid] = None
        return pid, job_w

    def _reap(self) -> None:
        while True:  # every child that has exited
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            key = self.children.pop(pid, None)
            if key is not None:  # the main process ignores it if the child reported first
                messages.send(self.sock, ("exit", key, os.waitstatus_to_exitcode(status)))
            else:  # a spare that died waiting (Ctrl-C reaches the whole process group)
                for spare in [s for s in self.spares if s[0] == pid]:
                    self.spares.remove(spare)
                    os.close(spare[1])


def _job_child(job_fd: int, report_to: socket.socket, inherited: list[int], run_job: Callable[[str, tuple[Any, ...]], None]) -> None:
    code, key = 1, None
    try:
        signal.set_wakeup_fd(-1)  # before its pipe is closed
        for fd in inherited:
            with contextlib.suppress(OSError):
                os.close(fd)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _interrupt)  # stopped like Ctrl-C: tasks are stopped on the way out
        die_with_parent()
        message = _read_all(job_fd)  # waits here, a spare, until a job comes
        os.close(job_fd)
        if len(message) < _KEY.size:  # the job parent is ending
            code = 0
            return
        (key,) = _KEY.unpack_from(message)
        rule, args, environ, cwd = pickle.loads(message[_KEY.size:])
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
        if key is not None:
            with contextlib.suppress(Exception):
                report_to.send(_REPORT.pack(key, code))
        os._exit(code)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def _stop_children(children: dict[int, int | None], grace: float = 5.0) -> None:
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
