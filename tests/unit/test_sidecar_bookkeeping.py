"""The sidecar manager's bookkeeping, without processes."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from snakemake_executor_plugin_quantum.executor.sidecars import SidecarManager
from snakemake_executor_plugin_quantum.procs import pid_alive
from snakemake_executor_plugin_quantum.resources.config import ResourceDef
from snakemake_executor_plugin_quantum.resources.events import VQPUEvent, write_event


def test_a_job_that_holds_no_vqpu_does_not_wait_for_one_that_is_stopping(tmp_path: Path) -> None:
    # A final `all` rule finishing while the last quantum job's vQPU stops: the scheduler's
    # thread must not wait until that vQPU has exited (a stop holds its lock until then).
    manager = SidecarManager(None, str(tmp_path), 1.0, {})
    sim = ResourceDef("sim", "vqpu")
    manager.expect(sim, "sample")
    stopping = manager._car(sim).lock
    with stopping:
        forgotten = threading.Event()
        thread = threading.Thread(target=lambda: (manager.forget("all"), forgotten.set()), daemon=True)
        thread.start()
        assert forgotten.wait(2.0), "forget('all') waited for the vQPU's stop"
    thread.join()
    assert manager.forget("sample") == []  # its vQPU was never started: nothing to stop


class _Dying:
    """A vQPU killed a moment ago: not yet reapable (exit_reason None), its process a zombie."""

    def __init__(self, pid: int):
        self.pid, self.stopped = pid, False

    def exit_reason(self) -> None:
        return None

    def stop(self, timeout: float) -> None:
        self.stopped = True

    def describe(self) -> str:
        return f"pid {self.pid}"


class _Launcher:
    def __init__(self, write: Callable[[str], None]):
        self.write, self.launched = write, 0

    def launch(self, resource: ResourceDef, event_file: str, environ: dict[str, str]) -> _Dying:
        self.launched += 1
        self.write(event_file)
        return _Dying(os.getpid())


def test_a_retried_job_does_not_get_a_vqpu_whose_process_is_gone(tmp_path: Path) -> None:
    # kill -9 of a vQPU: its jobs fail as soon as its sockets close and its process shows as
    # a zombie, which can be before waitpid() reports it. A retry then must restart it, not
    # be handed the stale event file (a flaky CI run of test_kill_9_..._a_retry_recovers).
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        for _ in range(200):  # until it is a zombie (not reaped: we do not wait yet)
            if not pid_alive(pid):
                break
            time.sleep(0.01)
        events: list[str] = []

        def write(path: str, pid: int = os.getpid()) -> None:
            events.append(path)
            write_event(path, VQPUEvent("sim", "127.0.0.1", 1, pid, "t" * 32, "aer", None, 0.0))

        launcher = _Launcher(write)
        manager = SidecarManager(launcher, str(tmp_path), 5.0, {})
        sim = ResourceDef("sim", "vqpu")
        car = manager._car(sim)
        car.handle = dying = _Dying(pid)
        write(car.event_file, pid)
        assert manager.ensure(sim) == car.event_file
        assert dying.stopped and launcher.launched == 1, "the dead vQPU was handed out again"
    finally:
        os.waitpid(pid, 0)
