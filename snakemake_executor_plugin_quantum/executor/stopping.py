"""Stopping the processes of running jobs when a run is cancelled (Ctrl-C, SIGTERM).

Jobs run in Snakemake's thread pool and start processes (``bash``, ``qrun``, forked
``run:`` jobs); they are this process's children, found by PID, never by name. A job
thread may start its process just after a sweep, so sweeps repeat until the pool has
drained: each new process gets SIGTERM (``qrun`` then stops its task), and whatever is
still alive after the grace period gets SIGKILL.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable


def stop_job_processes(
    done: threading.Event, keep: Callable[[], set[int]], extra: Callable[[], set[int]] = set, grace: float = 10.0, every: float = 0.1
) -> None:
    """Sweep until ``done`` is set. ``keep()``: our children to spare with their descendants
    (vQPUs, stopped later; the job parent of forked jobs); ``extra()``: processes to stop
    although they are not our children (forked ``run:`` jobs, children of the job parent)."""
    import psutil

    signalled: dict[int, psutil.Process] = {}
    deadline = time.monotonic() + grace
    while True:
        for process in _job_processes(keep(), extra()):
            if process.pid not in signalled:
                signalled[process.pid] = process
                with contextlib.suppress(psutil.Error):
                    process.terminate()
        if time.monotonic() >= deadline:
            for process in signalled.values():
                with contextlib.suppress(psutil.Error):
                    process.kill()
        if done.wait(every):
            break
    alive = [p for p in signalled.values() if p.is_running()]
    for process in psutil.wait_procs(alive, timeout=max(0.0, deadline - time.monotonic()))[1]:
        with contextlib.suppress(psutil.Error):
            process.kill()


def _job_processes(keep: set[int], extra: set[int]) -> list:
    import psutil

    found = []
    for pid in extra:
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(pid)
            found += [process, *process.children(recursive=True)]
    for child in psutil.Process().children(recursive=False):
        if child.pid in keep:
            continue
        found.append(child)
        with contextlib.suppress(psutil.Error):
            found.extend(child.children(recursive=True))
    return found
