"""The process that sends inline qrun jobs' vQPU requests, beside Snakemake's own.

An inline qrun job (inline.py) starts no process, but its Python work (the command parsed,
the circuit read, the request sent and awaited, the result and metrics record written)
ran in Snakemake's process. There it competed for the interpreter lock with
Snakemake's main thread, which schedules and finishes every job, and each of the main
thread's small file writes waited for the lock again afterwards: in a fan-out of 3,000
vQPU jobs on 2 cores, each vQPU job cost ~4.8 ms more than a ``touch`` job (py-spy
``--gil``: the main thread held the lock 80% of the run, job threads 17%, ~2.2 ms per job). This *sender*, one per run,
does that work in an interpreter of its own; the job's thread in Snakemake hands it the
command, the job's environment and working directory, and waits for the outcome
without holding the lock.

Each job thread has a connection of its own (a socket pair whose other end is passed to
the sender), served there by a thread of its own, so tasks waiting together still go
together (batching.py). The sender ignores SIGINT (a Ctrl-C in the terminal reaches it
too): the executor tells it to stop its tasks (``stop_all``), then closes it. It ends when
its control socket closes, and dies with Snakemake (``die_with_parent``), even on kill -9.
If it is gone, jobs fall back to running ``qrun`` as a process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping
from typing import Any

from ..errors import QuantumError
from ..procs import die_with_parent
from ..redact import mask, secret_values
from . import messages

log = logging.getLogger(__name__)

DONE, NOT_HERE, FAILED = "done", "not here", "failed"  # NOT_HERE: run qrun as a process
_CONNECT, _STOP = b"c", b"s"  # control messages; a connection's socket comes with _CONNECT


class Sender:
    """Snakemake's side: the sender process, and one connection per job thread."""

    def __init__(self, max_batch: int):
        self._control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-m", __name__, str(theirs.fileno()), str(max_batch)],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
            )
        self.pid = self.process.pid
        self._lock = threading.Lock()
        self._local = threading.local()
        self._connections: list[socket.socket] = []
        self._stopped = False
        self._closed = False

    def run(self, argv: list[str], environ: Mapping[str, str], stdout: str | None = None) -> tuple[str, str]:
        """(DONE, ""), (FAILED, qrun's one-line error) or (NOT_HERE, why). ``stdout``: the
        file qrun's standard output is redirected to (a result without ``-o`` goes there)."""
        try:
            connection = self._connection()
            messages.send(connection[0], (argv, dict(environ), os.getcwd(), stdout))
            reply = connection[1].next()
        except OSError:
            reply = None
        if reply is None:
            if self._stopped:
                return FAILED, "the run was cancelled while this task ran"
            return NOT_HERE, f"the inline qrun sender (pid {self.pid}) is gone"
        return reply

    def _connection(self) -> tuple[socket.socket, messages.Reader]:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            ours, theirs = socket.socketpair()
            with theirs, self._lock:
                if self._closed:
                    ours.close()
                    raise OSError("the run is ending")
                socket.send_fds(self._control, [_CONNECT], [theirs.fileno()])
                self._connections.append(ours)
            connection = self._local.connection = (ours, messages.Reader(ours))
        return connection

    def stop_all(self) -> None:
        """Cancel: the sender stops every task it has sent and fails those not sent yet."""
        with self._lock:
            self._stopped = True
            if not self._closed:
                with contextlib.suppress(OSError):
                    self._control.send(_STOP)

    def close(self, timeout: float = 10.0) -> None:
        """End the sender (its idle connections to vQPUs are closed) and wait for it."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            connections, self._connections = self._connections, []
        for sock in (self._control, *connections):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# ------------------------------------------------------------------ the sender process


def _serve(control: socket.socket, max_batch: int) -> None:
    from .batching import InlineRuns  # the sender's only heavy import: tasks, vQPU client

    runs = InlineRuns(max_batch)
    try:
        while True:
            message, fds, _, _ = socket.recv_fds(control, 16, 1)
            if not message:  # Snakemake closed: the run is over
                return
            for fd in fds:
                threading.Thread(target=_serve_job_thread, args=(socket.socket(fileno=fd), runs), daemon=True).start()
            if message == _STOP:
                runs.stop_all()
    finally:
        runs.close()


def _serve_job_thread(sock: socket.socket, runs: Any) -> None:
    reader = messages.Reader(sock)
    with sock:
        while (request := reader.next()) is not None:
            try:
                messages.send(sock, _outcome(runs, *request))
            except OSError:
                return


def _outcome(runs: Any, argv: list[str], environ: dict[str, str], cwd: str, stdout: str | None) -> tuple[str, str]:
    if cwd != os.getcwd():  # relative paths would mean other files: qrun as a process
        return NOT_HERE, f"the job runs in {cwd}"
    try:
        return (DONE, "") if runs.run(argv, environ, stdout) else (NOT_HERE, "not a vQPU task")
    except QuantumError as exc:
        return FAILED, mask(str(exc), secret_values(environ))
    except Exception as exc:  # noqa: BLE001 - one job fails with one line, the sender goes on
        return FAILED, mask(f"{type(exc).__name__}: {exc}", secret_values(environ))


def main(argv: list[str]) -> int:
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is Snakemake's: it says stop_all
    control = socket.socket(fileno=int(argv[0]))
    try:
        _serve(control, int(argv[1]))
    except OSError:
        return 0  # Snakemake is gone
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
