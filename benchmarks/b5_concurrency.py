"""B5 vQPU concurrency: 1, 2, 4, 8 concurrent clients against one vQPU with 2 lanes.

Each client is its own process (as each ``qrun`` is) with its own ``VQPUClient`` and
keep-alive connection, sending tasks back to back; the total number of tasks per level
is fixed, split evenly between the clients. Every task is a distinct circuit text (so
no preparation cache helps). Throughput = tasks / (last finish - first start);
latency = each ``run()`` call's round trip.

Batches: N GHZ-5 tasks, each with its own seed, from one client: ``run`` N times vs one
``run_many`` request, rounds alternating; every task's counts must be the same both ways.
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

from .common import (
    Context,
    Row,
    Section,
    Stats,
    fmt_value,
    ghz_qasm,
    layered_qasm,
    sampler_payload,
    vqpu_service,
)

LEVELS = (1, 2, 4, 8)


def _client(event_file: str, payloads: list[dict[str, Any]], start: Any, queue: Any) -> None:
    from snakemake_executor_plugin_quantum.backends.vqpu_client import VQPUClient

    client = VQPUClient("b5", {"QRMI_VQPU_EVENT_FILE": event_file})
    client.health()  # connect before the clock starts
    start.wait()
    records = []
    for payload in payloads:
        t0 = time.perf_counter()
        client.run(payload)
        records.append((t0, time.perf_counter()))
    client.close()
    queue.put(records)


def _level(event_file: str, clients: int, payloads: list[dict[str, Any]]) -> tuple[float, list[float]]:
    context = multiprocessing.get_context("fork")
    start = context.Event()
    queue = context.Queue()
    shares = [payloads[i::clients] for i in range(clients)]
    procs = [context.Process(target=_client, args=(event_file, share, start, queue)) for share in shares]
    for proc in procs:
        proc.start()
    time.sleep(0.3)  # let every client connect
    start.set()
    records = [r for _ in procs for r in queue.get(timeout=600)]
    for proc in procs:
        proc.join(30)
    first = min(t0 for t0, _ in records)
    last = max(t1 for _, t1 in records)
    return len(records) / (last - first), [t1 - t0 for t0, t1 in records]


def run(ctx: Context) -> Section:
    section = Section("B5", "vQPU concurrency: 1-8 clients on one vQPU with 2 lanes")
    workloads = [
        ("GHZ-5", [ghz_qasm(5, phase=1e-4 * i) for i in range(ctx.size(40, 240))]),
        ("GHZ-5 same text", [ghz_qasm(5)] * ctx.size(40, 240)),
        ("16q layered", [layered_qasm(16, 10, seed=100 + i) for i in range(ctx.size(8, 40))]),
    ]
    repeats = ctx.size(1, 3)
    section.method = (
        "One `vqpu serve --lanes 2` (each lane 1 simulation thread on 2 cores); clients are separate "
        "processes (fork), each with its own keep-alive connection, sending `VQPUClient.run` calls back "
        "to back. A level's fixed set of tasks (GHZ-5: "
        f"{len(workloads[0][1])}, 16-qubit layered: {len(workloads[2][1])}; 1024 shots, seed 1234; every "
        "circuit text distinct, so each task is parsed and transpiled by the service; "
        "*GHZ-5 same text* sends one text every time, so the service's preparation cache answers) is split evenly "
        f"between the clients. Up to {repeats} repeat(s) per level (n in the rows), levels interleaved. Throughput = tasks / "
        "(last finish - first start), min/median/max over repeats; latency percentiles pool every task "
        "of every repeat (nearest rank). *ratio* = throughput against 1 client."
    )
    medians: dict[str, dict[int, float]] = {}
    with vqpu_service("b5", ctx.workdir / "b5-events", lanes=2) as service:
        event_file = str(service.event_file)
        for label, texts in workloads:
            # Warm-up: one of each kind through the service (parser, lanes), not measured.
            _level(event_file, 2, [sampler_payload(t) for t in texts[:2]])
            throughput: dict[int, list[float]] = {c: [] for c in LEVELS}
            latency: dict[int, list[float]] = {c: [] for c in LEVELS}
            repeat_seconds = 0.0
            for r in range(repeats):
                if r and not ctx.optional(1.2 * repeat_seconds, f"B5 {label} repeat {r + 1}"):
                    break
                t_repeat = time.perf_counter()
                order = LEVELS if r % 2 == 0 else tuple(reversed(LEVELS))
                for clients in order:
                    # A comment per repeat and level keeps texts distinct across them too.
                    payloads = [sampler_payload(t.replace("OPENQASM 2.0;", f"OPENQASM 2.0;\n// r{r} c{clients}"))
                                for t in texts] if "same" not in label else [sampler_payload(t) for t in texts]
                    ctx.log(f"  B5 {label}: {clients} client(s), repeat {r + 1}")
                    rate, lat = _level(event_file, clients, payloads)
                    throughput[clients].append(rate)
                    latency[clients].extend(lat)
                repeat_seconds = time.perf_counter() - t_repeat
            one = Stats.of(throughput[1])
            for clients in LEVELS:
                t = Stats.of(throughput[clients])
                lat = Stats.of(latency[clients])
                section.add(Row(f"{label}, {clients} client(s): throughput", t, one, unit="tasks/s",
                                ratio=t.median / one.median, ratio_label="vs 1 client"))
                section.add(Row(f"{label}, {clients} client(s): latency", lat, None, display=(
                    f"p50 {fmt_value(lat.percentile(50), 's')} / p95 {fmt_value(lat.percentile(95), 's')} / "
                    f"p99 {fmt_value(lat.percentile(99), 's')} (n={lat.n})")))
            best = max(LEVELS, key=lambda c: Stats.of(throughput[c]).median)
            medians[label] = {c: Stats.of(throughput[c]).median for c in LEVELS}
            section.note(
                f"{label}: throughput {Stats.of(throughput[1]).median:.1f} tasks/s with 1 client, best "
                f"{Stats.of(throughput[best]).median:.1f} tasks/s with {best}; p50 latency grows from "
                f"{Stats.of(latency[1]).percentile(50) * 1e3:.0f} ms (1 client) to "
                f"{Stats.of(latency[8]).percentile(50) * 1e3:.0f} ms (8 clients), p99 "
                f"{Stats.of(latency[8]).percentile(99) * 1e3:.0f} ms at 8 clients."
            )
    ghz, same, big = (medians.get(k) for k in ("GHZ-5", "GHZ-5 same text", "16q layered"))
    if ghz and big:
        spread = max(ghz.values()) / min(ghz.values())
        big_gain = max(big.values()) / big[1]
        text = (f"GHZ-5 stays between {min(ghz.values()):.0f} and {max(ghz.values()):.0f} tasks/s from 1 to 8 clients "
                f"(x{spread:.2f}); the 16-qubit circuit goes from {big[1]:.1f} (1 client) to at best "
                f"{max(big.values()):.1f} tasks/s (x{big_gain:.2f}). ")
        if big_gain > 1.3 and max(ghz.values()) / ghz[1] < 1.3:
            text += "Only the circuit that keeps a lane busy gains from the second lane. "
        text += ("GHZ-5's flat rate points at the service's front end rather than the lanes: one Python process "
                 "parses, prepares and answers every request and runs tiny circuits inline, "
                 f"~{1e3 / max(ghz.values()):.1f} ms of it per task at the best level.")
        if same:
            prep = 1 / ghz[1] - 1 / same[1]
            if prep > 0:
                text += (f" Preparing a new circuit text (parse + transpile, cached for repeated texts) is "
                         f"~{prep * 1e3:.1f} ms of that (1 client, distinct vs same text).")
        text += (" Raising the ceiling means doing less per request in the front end or spreading it over "
                 "processes (e.g. preparing in the lanes).")
        section.note(text)
    _batches(ctx, section)
    return section


def _batches(ctx: Context, section: Section) -> None:
    """The same N tasks one request each and as one batch request (docs/architecture.md quotes it)."""
    counts, rounds = ctx.size((20,), (100, 1000)), ctx.size(1, 3)
    qasm = ghz_qasm(5)
    with vqpu_service("b5-batch", ctx.workdir / "b5-batch", lanes=2) as service:
        client = service.client()
        try:
            for count in counts:
                payloads = [sampler_payload(qasm, seed=i) for i in range(count)]
                client.run_many(payloads[:10])  # warm-up, not measured
                alone_times: list[float] = []
                batch_times: list[float] = []
                for r in range(rounds):
                    ctx.log(f"  B5 batch: {count} tasks, round {r + 1}")
                    seen: dict[str, list[Any]] = {}
                    for side in (("alone", "batch") if r % 2 == 0 else ("batch", "alone")):
                        started = time.perf_counter()
                        results = [client.run(p) for p in payloads] if side == "alone" else client.run_many(payloads)
                        failed = [doc for doc in results if isinstance(doc, BaseException)]
                        if failed:
                            raise RuntimeError(f"{len(failed)} of {count} batched tasks failed: {failed[0]}")
                        (alone_times if side == "alone" else batch_times).append(time.perf_counter() - started)
                        seen[side] = [doc["pubs"][0]["registers"]["c"]["counts"] for doc in results]
                    if seen["alone"] != seen["batch"]:
                        raise RuntimeError("a batch gave other counts than the same tasks one by one")
                section.add(Row(f"{count} GHZ-5 tasks: one batch request vs one request each", Stats.of(batch_times),
                                Stats.of(alone_times), base_name="one request each"))
        finally:
            client.close()
    section.method += (
        f" *Batches*: {' and '.join(str(c) for c in counts)} GHZ-5 tasks (1024 shots, seed i for task i) from one "
        "client on a fresh `vqpu serve --lanes 2`: `VQPUClient.run` once per task vs one `run_many` (one "
        f"`POST /v1/tasks/batch`), {rounds} round(s) alternating which goes first, after a 10-task warm-up; "
        "each task's counts are checked to be the same both ways."
    )
