"""Soak: 16 clients x 500 tasks against one vQPU, within a bounded time, zero errors,
every client its own results, service memory bounded.

The time bound (120 s for 8,000 tasks, 67 tasks/s) sits well under pytest's 300 s
timeout, so a service that slows down fails it; docs/reliability.md has the measured rate."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psutil
import pytest
from conftest import CIRCUITS, start_service, stop_service

from snakemake_executor_plugin_quantum.backends.vqpu_client import VQPUClient

pytestmark = pytest.mark.slow

CLIENTS = 16
TASKS = 500
SECONDS = 120
GHZ = (CIRCUITS / "ghz5.qasm").read_text()


def test_sixteen_clients_five_hundred_tasks_each(tmp_path: Path) -> None:
    service = start_service("soak", tmp_path / "events", "--lanes", "2")
    try:
        root = psutil.Process(service.process.pid)

        def rss() -> int:
            return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])

        warm = VQPUClient("soak", {"QRMI_VQPU_EVENT_FILE": str(service.event_file)})
        for _ in range(50):
            warm.run({"program_id": "sampler", "parameters": {"pubs": [[GHZ]], "shots": 64}})
        rss_start = rss()
        errors: list[str] = []
        mixed: list[int] = []
        done = [0] * CLIENTS

        def client(index: int) -> None:
            c = VQPUClient("soak", {"QRMI_VQPU_EVENT_FILE": str(service.event_file)})
            shots = 32 + index  # each client's own shot count identifies its results
            payload = {"program_id": "sampler", "parameters": {"pubs": [[GHZ]], "shots": shots}}
            for _ in range(TASKS):
                try:
                    counts = c.run(payload, timeout=120)["pubs"][0]["registers"]["meas"]["counts"]
                    if sum(counts.values()) != shots or not set(counts) <= {"00000", "11111"}:
                        mixed.append(index)
                    done[index] += 1
                except Exception as exc:  # collected and reported below
                    errors.append(f"client {index}: {exc!r}")
            c.close()

        started = time.monotonic()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(900)
        elapsed = time.monotonic() - started
        growth_mb = (rss() - rss_start) / 2**20
        meta = warm.metadata()
        warm.close()
        print(f"soak: {CLIENTS * TASKS} tasks in {elapsed:.1f} s ({CLIENTS * TASKS / elapsed:.0f}/s), memory +{growth_mb:.1f} MiB, kept {meta['tasks_kept']} tasks")
        assert errors == [] and mixed == []
        assert done == [TASKS] * CLIENTS
        assert elapsed < SECONDS, f"{CLIENTS * TASKS} tasks took {elapsed:.0f} s (bound {SECONDS} s)"
        assert growth_mb < 150, f"service memory grew by {growth_mb:.0f} MiB"
        assert meta["tasks_kept"] <= 4096, "finished tasks are forgotten beyond the retention bound"
    finally:
        stop_service(service)
