"""B1 dispatch: one circuit's round trip through a warm vQPU vs in-process Aer.

Sides, all sampling the same circuit with the same shots and seed, timed per call:

- vqpu:        ``VQPUClient.run(payload)`` against a warm ``vqpu serve`` (2 lanes, so
               each lane simulates with cores/lanes = 1 thread), JSON over keep-alive HTTP;
- hand(1t):    AerSimulator(max_parallel_threads=1), one reused preset pass manager,
               ``sim.run(pm.run(qc)).result().get_counts()``;
- hand(all):   the same with AerSimulator() defaults (all cores);
- naive:       ``transpile(qc, sim)`` on every call, AerSimulator() defaults;
- engine:      our in-process ``AerEngine`` (parse_payload + check + run), default threads.

The vQPU and the engine sample small circuits as a statevector; the hand loops keep Aer's
automatic method (stabilizer for a Clifford circuit like GHZ-5), as a hand-written loop would.

Every side gets the same warm-up calls; rounds interleave the sides, rotating the order.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from typing import Any

from .common import (
    SEED,
    SHOTS,
    Context,
    Row,
    Section,
    Stats,
    ghz_qasm,
    interleave,
    layered_qasm,
    sampler_payload,
    vqpu_service,
)

# vQPU round trip vs the faster hand loop, per circuit: issue 11 asks 1.2x for GHZ-5.
TARGET_VQPU = {"GHZ-5": 1.2, "16q layered": 1.5}
TARGET_ENGINE = 2.0


def _passive_openmp() -> bool:
    """Let the OpenMP threads of this process's multi-threaded sides sleep when idle.

    With libgomp's default wait policy, the threads of hand(all), naive and engine spin
    for a while after each call, on the cores the next side needs: measured, the vQPU
    side's simulation inside the service took 8.4-9.1 ms after them against 5.0-5.2 ms
    with PASSIVE (``python benchmarks/run.py --only B1`` with and without
    ``OMP_WAIT_POLICY=PASSIVE``), and the hand loops were not slower with it. libgomp reads
    the variable when Aer's extension loads, so it is set for that moment only (the vQPU
    service, already started, keeps the default). False if Aer was loaded already.
    """
    if "qiskit_aer" in sys.modules:
        return False
    previous = os.environ.get("OMP_WAIT_POLICY")
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        import qiskit_aer.backends.controller_wrappers  # noqa: F401 - loads libgomp, which reads it
    finally:
        if previous is None:
            os.environ.pop("OMP_WAIT_POLICY", None)
        else:
            os.environ["OMP_WAIT_POLICY"] = previous
    return True


def _sides(qasm: str, client: Any) -> tuple[dict[str, Any], dict[str, list[float]]]:
    from qiskit import qasm2, transpile
    from qiskit.transpiler import generate_preset_pass_manager
    from qiskit_aer import AerSimulator

    from snakemake_executor_plugin_quantum.engines.aer import AerEngine, AerOptions
    from snakemake_executor_plugin_quantum.payloads.parse import parse_payload

    circuit = qasm2.loads(qasm)
    payload = sampler_payload(qasm)
    sim1 = AerSimulator(max_parallel_threads=1)
    pm1 = generate_preset_pass_manager(optimization_level=1, backend=sim1)
    sim_all = AerSimulator()
    pm_all = generate_preset_pass_manager(optimization_level=1, backend=sim_all)
    engine = AerEngine(AerOptions(seed=SEED))
    server_side: dict[str, list[float]] = {"run": [], "engine_run": []}

    def vqpu() -> Any:
        result = client.run(payload)
        server_side["run"].append(result["metadata"]["run_seconds"])
        return result

    def hand1() -> Any:
        return sim1.run(pm1.run(circuit), shots=SHOTS, seed_simulator=SEED).result().get_counts()

    def hand_all() -> Any:
        return sim_all.run(pm_all.run(circuit), shots=SHOTS, seed_simulator=SEED).result().get_counts()

    def naive() -> Any:
        return sim_all.run(transpile(circuit, sim_all), shots=SHOTS, seed_simulator=SEED).result().get_counts()

    def ours_engine() -> Any:
        task = parse_payload(payload)
        body, meta = engine.run(task, engine.check(task))
        server_side["engine_run"].append(meta["run_seconds"])
        return body

    sides = {"vqpu": vqpu, "hand(1t)": hand1, "hand(all)": hand_all, "naive": naive, "engine": ours_engine}
    # The same answer on every side: through the vQPU exactly what our engine gives in this
    # process (same circuit, shots and seed); from the hand loops the same distribution (for
    # a small circuit the engine picks the statevector method where Aer's automatic choice
    # may be another, so the seeded counts can differ).
    reference = ours_engine()["pubs"][0]["registers"]["c"]["counts"]
    got = client.run(payload)["pubs"][0]["registers"]["c"]["counts"]
    if got != reference:
        raise RuntimeError(f"vQPU and in-process engine disagree for the same seed: {got} vs {reference}")
    hand = hand1()
    distance = sum(abs(hand.get(k, 0) - got.get(k, 0)) for k in {*hand, *got}) / (2 * SHOTS)
    if distance > 0.1:
        raise RuntimeError(f"vQPU and the hand loop sample different distributions: {got} vs {hand}")
    return sides, server_side


def run(ctx: Context) -> Section:
    section = Section("B1", "Dispatch: one circuit through a warm vQPU vs in-process Aer")
    circuits = [
        ("GHZ-5", ghz_qasm(5), ctx.size(10, 40)),
        ("16q layered", layered_qasm(16, 10), ctx.size(3, 10)),
    ]
    section.method = (
        f"{SHOTS} shots, seed {SEED}, same OpenQASM 2 text on every side. Sides: **vqpu** = "
        "`VQPUClient.run` (one HTTP request) to a warm `vqpu serve --lanes 2` (each lane simulates "
        "with cores/lanes = 1 OpenMP thread); **hand(1t)** = hand-written loop with "
        "`AerSimulator(max_parallel_threads=1)` and one reused `generate_preset_pass_manager(1)`; "
        "**hand(all)** = the same loop with `AerSimulator()` defaults (all cores); **naive** = "
        "`transpile(qc, sim)` on every call; **engine** = our in-process `AerEngine` "
        "(`parse_payload` + `check` + `run`, default threads). The vQPU and the engine sample circuits of up to 10 "
        "active qubits as a statevector; the hand loops keep `AerSimulator()`'s automatic method, which gives a "
        "Clifford circuit such as GHZ-5 the stabilizer method. One warm-up call per side, then "
        "rounds that call each side once, order rotating. Ratios are medians of per-round ratios. "
        f"The vQPU targets (GHZ-5 <= {TARGET_VQPU['GHZ-5']}x, 16q layered <= {TARGET_VQPU['16q layered']}x) are "
        "judged against the *faster* of the two hand loops."
    )
    with vqpu_service("b1", ctx.workdir / "b1-events", lanes=2) as service:
        ctx.log(f"  B1 vQPU ready {service.start_seconds:.2f} s after `vqpu serve`")
        passive = _passive_openmp()
        section.data["omp_wait_policy_passive"] = passive
        if passive:
            section.method += (" The in-process sides' OpenMP threads wait passively (`OMP_WAIT_POLICY=PASSIVE` "
                               "for this process only), so they do not spin into the next side's time.")
        client = service.client()
        try:
            for label, qasm, rounds in circuits:
                ctx.log(f"  B1 {label}: {rounds} rounds")
                sides, server = _sides(qasm, client)
                server["run"].clear()
                server["engine_run"].clear()
                times = interleave(sides, rounds, warmup=1)
                server_run = server["run"][-rounds:]
                stats = {name: Stats.of(values) for name, values in times.items()}
                best = min(("hand(1t)", "hand(all)"), key=lambda n: stats[n].median)
                other = "hand(all)" if best == "hand(1t)" else "hand(1t)"
                target_row = section.add(Row(
                    f"{label}: vqpu vs faster hand loop = {best}", stats["vqpu"], stats[best], base_name=best,
                    target=f"<= {TARGET_VQPU[label]}x",
                ))
                ratio_best = target_row.ratio
                target_row.met = ratio_best is not None and ratio_best <= TARGET_VQPU[label]
                section.add(Row(f"{label}: vqpu vs {other}", stats["vqpu"], stats[other], base_name=other))
                engine_row = section.add(Row(f"{label}: engine vs hand(all)", stats["engine"], stats["hand(all)"],
                                             base_name="hand(all)", target=f"<= {TARGET_ENGINE}x"))
                engine_row.met = engine_row.ratio is not None and engine_row.ratio <= TARGET_ENGINE
                section.add(Row(f"{label}: naive transpile vs hand(all)", stats["naive"], stats["hand(all)"], base_name="hand(all)"))
                section.add(Row(f"{label}: hand(all) vs hand(1t) (threads)", stats["hand(all)"], stats["hand(1t)"],
                                base_name="hand(1t)"))
                # The vQPU call alone, with nothing between calls: in the rounds it sits idle while the others run.
                alone = interleave({"vqpu": sides["vqpu"]}, rounds, warmup=1)["vqpu"]
                warm = (Stats.of(alone), statistics.median(w - r for w, r in zip(alone, server["run"][-rounds:], strict=True)))
                section.add(Row(f"{label}: vqpu back to back (no pause between calls)", warm[0],
                                note="the same calls with nothing between them"))
                _explain(section, label, stats, server_run, best, ratio_best, _parse_seconds(qasm), warm)
        finally:
            client.close()
        section.data["vqpu_start"] = service.start_seconds
        section.note(f"The vQPU took {service.start_seconds:.1f} s from `vqpu serve` to ready (event file); "
                     "not part of any per-call time above.")
    return section


def _parse_seconds(qasm: str, calls: int = 30) -> float:
    """Median time of ``parse_payload`` (envelope schema check + pub parsing), which the service
    runs on every request before anything is prepared or simulated."""
    from snakemake_executor_plugin_quantum.payloads.parse import parse_payload

    payload = sampler_payload(qasm)
    parse_payload(payload)
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        parse_payload(payload)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _explain(section: Section, label: str, stats: dict[str, Stats], server_run: list[float], best: str,
             ratio: float | None, parse: float, warm: tuple[Stats, float]) -> None:
    vq = stats["vqpu"].median
    base = stats[best].median
    one = stats["hand(1t)"].median
    run_s = statistics.median(server_run) if server_run else float("nan")
    outside = vq - run_s
    text = (f"{label}: vQPU round trip median {vq * 1e3:.2f} ms = {run_s * 1e3:.2f} ms inside the service's "
            f"`AerEngine.run` (simulation and counts, 1 thread per lane) + {outside * 1e3:.2f} ms outside it "
            "(client and server JSON, HTTP, validation - `parse_payload` alone is "
            f"{parse * 1e3:.2f} ms - the result document, and for circuits too big to run inline the hand-off "
            f"to a worker process). Hand loops: hand(1t) {one * 1e3:.2f} ms, hand(all) "
            f"{stats['hand(all)'].median * 1e3:.2f} ms. Back to back, with no other side between the calls, "
            f"a call takes {warm[0].median * 1e3:.2f} ms, {warm[1] * 1e3:.2f} ms of it outside the engine.")
    if ratio is not None and ratio > TARGET_VQPU[label]:
        text += f" **Target missed ({ratio:.2f}x > {TARGET_VQPU[label]}x).**"
        if best == "hand(all)" and run_s > base:
            text += (f" The simulation inside the vQPU alone ({run_s * 1e3:.1f} ms) is slower than the whole "
                     f"hand(all) call ({base * 1e3:.1f} ms): a vQPU splits the cores between its lanes "
                     "(cores/lanes = 1 thread here), while hand(all) gives one circuit both cores. Against the "
                     f"like-for-like single-thread loop the vQPU is at {vq / one:.2f}x. Fix: let a lane use "
                     "the idle lanes' threads when it runs alone (or serve single clients with `--lanes 1`).")
        elif warm[1] < 0.6 * outside:
            text += (f" Most of the {outside * 1e3:.1f} ms outside the engine is not the request path "
                     f"({warm[1] * 1e3:.2f} ms back to back) but waking the vQPU process: in the rounds it has been "
                     "idle while the other sides ran, and on this VM an idle process's first request after a pause "
                     "pays for its wake-up and cold caches (the engine's own run is slower then too). A service "
                     "in another process pays this whenever calls are far apart; jobs that follow each other "
                     "(B2, B10) do not. What would fix it: several circuits per payload (pubs), or calls close "
                     "together.")
        else:
            text += (f" The per-request cost outside the engine (~{outside * 1e3:.1f} ms, "
                     f"{warm[1] * 1e3:.2f} ms back to back) is large next to a {base * 1e3:.1f} ms simulation; it "
                     "shrinks relative to the work for bigger circuits and when one payload carries several "
                     f"circuits (pubs). Validation is not the cost ({parse * 1e3:.2f} ms); the rest of the request "
                     "path (HTTP, JSON both ways, the front end's checks) is.")
    section.note(text)
