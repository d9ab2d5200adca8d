"""Lane leases: at most ``lanes`` jobs use a resource at once, across Snakemake runs.

Each lane is a lock file ``<dir>/<resource>.lane<i>.lock`` held with an OS file lock
(filelock). Runs on the same machine, or on nodes sharing the directory, see each
other's leases; a lock dies with its process, so a killed run never leaves a lane
taken. The files themselves stay: they are the slots, not state.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator

import filelock

from ..errors import ResourceUnavailableError


def default_lease_dir() -> str:
    return os.path.join(os.path.expanduser("~"), ".cache", "snakemake-quantum", "leases")


class LaneLeases:
    def __init__(self, directory: str | None = None):
        self.directory = directory or default_lease_dir()
        # A lane given back by a job of this process wakes this process's waiters at once;
        # lanes given back by other runs are found by polling.
        self._given_back = threading.Condition()
        self._returns = 0  # lanes given back so far (a waiter sleeps only if none came since its look)

    def wake(self) -> None:
        """Wake every waiter of this process to look again (a lane came back, or the run stops)."""
        with self._given_back:
            self._returns += 1
            self._given_back.notify_all()

    @contextlib.contextmanager
    def hold(
        self, name: str, lanes: int, count: int = 1, stop: threading.Event | None = None, timeout: float | None = None
    ) -> Iterator[list[int]]:
        """Hold ``count`` of the ``lanes`` lanes of ``name`` for the duration of the block."""
        if count > lanes:
            raise ResourceUnavailableError(f"{count} lanes of '{name}' asked for, but it has {lanes}")
        os.makedirs(self.directory, exist_ok=True)
        held: list[tuple[int, filelock.FileLock]] = []
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.02
        try:
            while True:
                looked = self._returns
                for lane in range(lanes):
                    if len(held) == count:
                        break
                    if any(lane == i for i, _ in held):
                        continue
                    lock = filelock.FileLock(os.path.join(self.directory, f"{name}.lane{lane}.lock"), thread_local=False)
                    try:
                        lock.acquire(timeout=0)
                    except filelock.Timeout:
                        continue
                    held.append((lane, lock))
                if len(held) == count:
                    break
                # Not enough free lanes: give back what we hold (no deadlock between two
                # jobs each holding part), wait, and try again.
                for _, lock in held:
                    lock.release()
                held.clear()
                if stop is not None and stop.is_set():
                    raise ResourceUnavailableError(f"stopped while waiting for a lane of '{name}'")
                if deadline is not None and time.monotonic() >= deadline:
                    raise ResourceUnavailableError(f"no free lane of '{name}' within {timeout:g} s")
                with self._given_back:
                    if self._returns == looked and not (stop is not None and stop.is_set()):
                        self._given_back.wait(delay)
                delay = min(delay * 2, 1.0)
            yield [lane for lane, _ in held]
        finally:
            for _, lock in held:
                lock.release()
            if held:
                self.wake()
