"""What idle connections cost a vQPU, and how it enforces task deadlines (docs/reliability.md).

    python -m benchmarks.vqpu_limits [--connections N ...] [--deadlines K]

Starts a warm ``vqpu serve`` (default limits: 512 connections, 5 s idle), then for each
N opens N raw TCP connections that send nothing (no token either), and reports the
service's threads and memory (front end only: lanes are separate processes), how long
a real client's request takes meanwhile, how many of the N the service held meanwhile,
and when the first and last of them were closed.

Then K times it sends a circuit whose repeat-until-success loop never ends with a 1 s
timeout, and reports when the client got its TaskTimeoutError and how long the next
task (one that needs a lane's worker) took.
"""

from __future__ import annotations

import argparse
import selectors
import socket
import statistics
import tempfile
import time
from pathlib import Path

import psutil

from .common import ghz_qasm, sampler_payload, vqpu_service


def _measure(service: object, count: int) -> dict[str, float]:
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
        "connections": count,
        "threads_before": threads_before,
        "threads": threads,
        "rss_growth_mib": (rss - rss_before) / 2**20,
        "held": held,
        "ghz5_median_ms": statistics.median(latencies) * 1e3,
        "ghz5_max_ms": max(latencies) * 1e3,
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


def _deadlines(service: object, count: int) -> None:
    from snakemake_executor_plugin_quantum.errors import TaskTimeoutError

    client = service.client()  # type: ignore[attr-defined]
    forever = {"program_id": "sampler", "parameters": {"pubs": [[LOOP]], "shots": 10}}
    on_a_lane = sampler_payload(ghz_qasm(13))  # 13 qubits: never inline
    client.run(on_a_lane)
    print("looping task, timeout 1 s: client got TaskTimeoutError after   next lane task took")
    for _ in range(count):
        started = time.perf_counter()
        try:
            client.run(forever, timeout=1)
            raise RuntimeError("the looping task finished?")
        except TaskTimeoutError:
            stopped = time.perf_counter() - started
        started = time.perf_counter()
        client.run(on_a_lane, timeout=60)
        print(f"{stopped:>62.2f} s   {time.perf_counter() - started:>6.2f} s")
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, nargs="*", default=[100, 500, 2000])
    parser.add_argument("--deadlines", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, vqpu_service("limits", Path(scratch), lanes=2) as service:
        if args.deadlines:
            _deadlines(service, args.deadlines)
        print("connections  threads(before->with)  front-end RSS     held meanwhile  GHZ-5 median/max  first/last closed")
        for count in args.connections:
            m = _measure(service, count)
            print(
                f"{m['connections']:>11}  {m['threads_before']:>7} -> {m['threads']:<11}  {m['rss_growth_mib']:+10.1f} MiB"
                f"  {m['held']:>15}  {m['ghz5_median_ms']:6.2f}/{m['ghz5_max_ms']:.2f} ms"
                f"  {m['first_closed_s']:.2f}/{m['all_closed_s']:.2f} s"
            )


if __name__ == "__main__":
    main()
