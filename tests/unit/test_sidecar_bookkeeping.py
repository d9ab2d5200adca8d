"""The sidecar manager's bookkeeping, without processes."""

from __future__ import annotations

import threading
from pathlib import Path

from snakemake_executor_plugin_quantum.executor.sidecars import SidecarManager
from snakemake_executor_plugin_quantum.resources.config import ResourceDef


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
