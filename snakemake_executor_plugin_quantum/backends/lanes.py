"""Where tasks actually run: a thread in this process, or a warm worker process.

Aer holds the GIL for the whole of a simulation (measured: no other Python thread runs
meanwhile). In a vQPU service that would freeze HTTP handling and serialise every lane,
so the service runs each lane as a worker process: the front end stays responsive, lanes
run in parallel, and stopping a running task means killing its worker and starting a
fresh one.

Workers come from a *lane parent*: a process forked from the front end right after it
imported the simulator and built its engine, while it had no thread of its own yet. The
lane parent stays single-threaded and forks a worker whenever the front end asks (at
start, and to replace one that was killed or died), so every worker starts with the
modules imported and the engine built, in milliseconds. (``multiprocessing``'s
forkserver would import everything a second time.) Each worker talks to the front end
over a socket pair the front end passes to the lane parent; the front end stops a
worker through a pidfd, so a recycled PID is never hit. Workers die with the lane
parent, and the lane parent with the front end (even on ``kill -9``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
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


class LaneParent:
    """The single-threaded process that forks warm workers for the front end.

    Create it before the front end starts any thread (forking a threaded process may
    leave the child holding locks no thread will release).
    """

    def __init__(self, engine: Any):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        front_end = os.getpid()
        pid = os.fork()
        if pid == 0:  # the lane parent
            code = 0
            try:
                ours.close()
                _lane_parent_main(theirs, engine, front_end)
            except BaseException:  # never return into the front end's code
                log.exception("lane parent failed")
                code = 1
            os._exit(code)
        theirs.close()
        self.pid = pid
        self.kind = getattr(engine, "engine", "engine")
        self._control = ours
        self._lock = threading.Lock()

    def spawn(self) -> tuple[Any, int, int]:
        """A new worker: (connection to it, its PID, a pidfd to signal it by)."""
        from multiprocessing.connection import Connection

        mine, its = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with self._lock:
                socket.send_fds(self._control, [b"w"], [its.fileno()])
                reply = _read_line(self._control)
            pid = int(reply)
            pidfd = os.pidfd_open(pid)  # the worker waits for us: it cannot have exited yet
        except (OSError, ValueError):
            mine.close()
            raise QuantumError(f"the {self.kind} lane parent is gone; cannot start a worker") from None
        finally:
            its.close()
        return Connection(mine.detach()), pid, pidfd

    def close(self, timeout: float = 2.0) -> None:
        """End the lane parent (its workers die with it) and reap it."""
        with self._lock, contextlib.suppress(OSError):
            self._control.close()
        if not _wait_child(self.pid, timeout):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            _wait_child(self.pid, timeout)


class ProcessLane:
    """One warm worker process; ``stop`` kills it and the lane parent forks another."""

    def __init__(self, parent: LaneParent):
        self.parent = parent
        self.kind = parent.kind
        self._lock = threading.Lock()
        self._closed = False
        self._current: str | None = None  # the task the worker is running
        self._killed = False
        self._start()

    def _start(self) -> None:
        self._conn, self.pid, self._pidfd = self.parent.spawn()

    def wait_ready(self, timeout: float = 120.0) -> None:
        try:
            if not self._conn.poll(timeout):
                raise QuantumError(f"{self.kind} worker did not start within {timeout:g} s")
            kind, value = self._conn.recv()
        except (EOFError, OSError):
            raise QuantumError(f"{self.kind} worker exited while starting") from None
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
            self._kill()

    def _kill(self) -> None:
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)

    def _replace(self) -> None:
        with self._lock:
            self._killed = False
            self._kill()  # if it is not dead already
            _wait_pidfd(self._pidfd, 5)
            self._release()
            if not self._closed:
                self._start()
        if not self._closed:
            self.wait_ready()

    def _release(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.close()
        with contextlib.suppress(OSError):
            os.close(self._pidfd)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            with contextlib.suppress(OSError, BrokenPipeError):
                self._conn.send(None)
            if not _wait_pidfd(self._pidfd, 2):
                self._kill()
                _wait_pidfd(self._pidfd, 2)
            self._release()


def _lane_parent_main(control: socket.socket, engine: Any, front_end: int) -> None:
    die_with_parent()
    if os.getppid() != front_end:
        return  # the front end died before we could ask to die with it
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the front end's business
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # workers are reaped by the kernel
    me = os.getpid()
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 1, 1)
        except OSError:
            return
        if not message or not fds:
            return  # the front end closed the control socket: stop (workers die with us)
        (fd,) = fds
        pid = os.fork()
        if pid == 0:  # a worker
            code = 0
            try:
                control.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                _worker_main(fd, engine, me)
            except BaseException:
                log.exception("lane worker %s failed", os.getpid())
                code = 1
            os._exit(code)
        os.close(fd)
        try:
            control.sendall(f"{pid}\n".encode())
        except OSError:
            return


def _worker_main(fd: int, engine: Any, lane_parent: int) -> None:
    from multiprocessing.connection import Connection

    die_with_parent()
    if os.getppid() != lane_parent:
        return
    conn = Connection(fd)
    try:
        engine.warm_up(parse=False)  # first-use costs of a run in this process
    except BaseException as exc:  # reported to the front end, which fails to start
        conn.send(("error", QuantumError(f"{getattr(engine, 'engine', 'engine')} worker failed to start: {exc}")))
        return
    conn.send(("ready", None))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the front end is gone
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


def _read_line(sock: socket.socket, limit: int = 32) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk or len(data) > limit:
            raise OSError("the lane parent closed its control socket")
        data += chunk
    return data.strip()


def _wait_pidfd(pidfd: int, timeout: float) -> bool:
    """Has the process exited within ``timeout``? (A pidfd turns readable when it does.)"""
    try:
        readable, _, _ = select.select([pidfd], [], [], timeout)
    except (OSError, ValueError):
        return True  # closed already
    return bool(readable)


def _wait_child(pid: int, timeout: float) -> bool:
    """Reap our child ``pid``; False if it is still running after ``timeout``."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        pidfd = None
    try:
        if pidfd is not None:
            _wait_pidfd(pidfd, timeout)
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        return reaped != 0
    except ChildProcessError:
        return True
    finally:
        if pidfd is not None:
            os.close(pidfd)
