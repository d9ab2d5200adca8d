"""B11 vQPU limits: what idle connections cost a vQPU, and how it enforces task deadlines.

Starts a warm ``vqpu serve`` (default limits: 512 connections, 5 s idle), then for each
N opens N raw TCP connections that send nothing (no token either), and measures the
service's threads and memory (front end only: lanes are separate processes), how long
a real client's request takes meanwhile, how many of the N the service held meanwhile,
and when the first and last of them were closed.

Then K times it sends a circuit whose repeat-until-success loop never ends with a 1 s
timeout, and measures when the client got its TaskTimeoutError and how long the next
task (one that needs a lane's worker) took. docs/reliability.md quotes both.
"""

from __future__ import annotations

import resource
import selectors
import socket
import statistics
import time
from typing import Any

import psutil

from .common import Context, Row, Section, Stats, fmt_value, ghz_qasm, sampler_payload, vqpu_service


def _measure(service: object, count: int) -> dict[str, Any]:
    event = service.client().event  # type: ignore[attr-defined]
    process = psutil.Process(service.process.pid)  # type: ignore[attr-defined]
    client = service.client()  # type: ignore[attr-defined]
    payload = sampler_payload(ghz_qasm(5))
    client.run(payload)
    threads_before, rss_before = process.num_threads(), process.memory_info().rss
    opened = time.monotonic()
    sockets = [socket.create_connection((event.host, event.port), timeout=10) for _ in range(count)]
    time.sleep(0.5)
    threads, rss = process.num_threads(), process.memory_info().rss
    latencies = []
    for _ in range(20):
        started = time.perf_counter()
        client.run(payload)
        latencies.append(time.perf_counter() - started)
    held = len([c for c in process.net_connections("tcp") if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == event.port])
    first_closed, all_closed = _watch_close(sockets, opened, deadline=30)
    for sock in sockets:
        sock.close()
    client.close()
    return {
        "threads_before": threads_before,
        "threads": threads,
        "rss_growth_mib": (rss - rss_before) / 2**20,
        "held": held,
        "latencies": latencies,
        "first_closed_s": first_closed,
        "all_closed_s": all_closed,
    }


def _watch_close(sockets: list[socket.socket], opened: float, deadline: float) -> tuple[float, float]:
    """Seconds from opening until the first and the last idle socket were closed by the service."""
    selector = selectors.DefaultSelector()
    for sock in sockets:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    first = last = float("nan")
    remaining = len(sockets)
    while remaining and time.monotonic() - opened < deadline:
        for key, _ in selector.select(timeout=0.5):
            try:
                data = key.fileobj.recv(1)  # type: ignore[union-attr]
            except OSError:
                data = b""
            if not data:
                selector.unregister(key.fileobj)
                remaining -= 1
                now = time.monotonic() - opened
                first = now if first != first else first
                last = now
    selector.close()
    return first, last


LOOP = """OPENQASM 3.0;
include "stdgates.inc";
qubit[1] q;
bit[1] c;
reset q[0];
c[0] = measure q[0];
while (c == 0) {
  reset q[0];
  h q[0];
  h q[0];
  c[0] = measure q[0];
}
"""


def _deadlines(service: object, count: int) -> tuple[list[float], list[float]]:
    """Seconds until each looping task's TaskTimeoutError, and the next lane task's seconds."""
    from snakemake_executor_plugin_quantum.errors import TaskTimeoutError

    client = service.client()  # type: ignore[attr-defined]
    forever = {"program_id": "sampler", "parameters": {"pubs": [[LOOP]], "shots": 10}}
    on_a_lane = sampler_payload(ghz_qasm(13))  # 13 qubits: never inline
    client.run(on_a_lane)
    stopped, next_task = [], []
    try:
        for _ in range(count):
            started = time.perf_counter()
            try:
                client.run(forever, timeout=1)
                raise RuntimeError("the looping task finished?")
            except TaskTimeoutError:
                stopped.append(time.perf_counter() - started)
            started = time.perf_counter()
            client.run(on_a_lane, timeout=60)
            next_task.append(time.perf_counter() - started)
    finally:
        client.close()
    return stopped, next_task


def run(ctx: Context) -> Section:
    section = Section("B11", "vQPU limits: idle connections and task deadlines")
    connections, deadlines = ctx.size((100,), (100, 500, 2000)), ctx.size(2, 5)
    # This process holds the idle sockets: raise its open-file limit as far as allowed.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max(connections) + 256
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted if hard == resource.RLIM_INFINITY else min(wanted, hard), hard))
    connections = tuple(c for c in connections if c + 256 <= resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    with vqpu_service("limits", ctx.workdir / "b11-events", lanes=2) as service:
        ctx.log(f"  B11 deadlines: {deadlines} looping tasks with a 1 s timeout")
        stopped, next_task = _deadlines(service, deadlines)
        section.add(Row("looping task, 1 s timeout: TaskTimeoutError after", Stats.of(stopped)))
        section.add(Row("the next task on a lane after it", Stats.of(next_task)))
        section.data.update(deadline_first=min(stopped), deadline_last=max(stopped), next_fastest=min(next_task),
                            next_slowest=max(next_task))
        for count in connections:
            ctx.log(f"  B11 {count} idle connections")
            m = _measure(service, count)
            label = f"{count} idle connections"
            section.add(Row(f"{label}: service threads (with them vs before)", Stats.of([m["threads"]]),
                            Stats.of([m["threads_before"]]), unit="threads", base_name="before"))
            section.add(Row(f"{label}: front-end memory growth", Stats.of([m["rss_growth_mib"]]), unit="MiB"))
            section.add(Row(f"{label}: connections the service held", Stats.of([m["held"]]), unit="connections"))
            section.add(Row(f"{label}: GHZ-5 round trip meanwhile", Stats.of(m["latencies"])))
            section.add(Row(f"{label}: closed by the service after (first / last)", None, display=(
                f"{fmt_value(m['first_closed_s'], 's')} / {fmt_value(m['all_closed_s'], 's')}")))
            section.data.update({f"conn{count}_{key}": value for key, value in m.items() if key != "latencies"})
            section.data.update({f"conn{count}_ghz5_median": statistics.median(m["latencies"]),
                                 f"conn{count}_ghz5_max": max(m["latencies"])})
    section.method = (
        "One `vqpu serve --lanes 2` with default limits (512 connections, 5 s idle). Deadlines: "
        f"{deadlines} times a circuit whose repeat-until-success loop never ends, sent with a 1 s timeout, each "
        "followed by a 13-qubit GHZ task (never inline: it needs a lane's worker). Idle connections: for each "
        f"N in {', '.join(str(c) for c in connections)}, N raw TCP connections that send nothing (no token "
        "either); the front end's threads and memory (psutil; lanes are separate processes) before and 0.5 s "
        "after opening them, 20 GHZ-5 round trips of a real client meanwhile, the connections the service "
        "held, and when the service closed the first and the last of them."
    )
    return section
