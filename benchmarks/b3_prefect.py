"""B3 peer: the same N circuits as a Prefect 3 flow (one task per circuit) vs our executor.

- ours:    ``snakemake --executor quantum --cores 2 --scheduler quantum``, one ``qrun`` job per circuit on a
           vQPU sidecar (as in B2);
- prefect: ``python benchmarks/b3_prefect_flow.py``: one flow, one ``@task`` per circuit,
           ``ThreadPoolTaskRunner(max_workers=2)``, Prefect's ephemeral local mode (it starts
           its own temporary API server, SQLite in a scratch PREFECT_HOME). Each task samples
           in-process with a warm per-thread AerSimulator + pass manager (no per-task imports:
           the most favourable set-up for Prefect).

Both are whole commands timed start to exit, same circuits, shots and seed, sides
alternating; one small unmeasured warm-up run each (Prefect creates its database then).
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
from pathlib import Path

from .common import (
    Context,
    Row,
    Section,
    Stats,
    bench_env,
    count_files,
    fresh_dir,
    phases,
    run_process,
    run_sampling,
    sampling_workflow,
    write_circuits,
)

TARGET = 3.0
FLOW = Path(__file__).resolve().parent / "b3_prefect_flow.py"


def run(ctx: Context) -> Section:
    section = Section("B3", "Peer: N circuits as a Prefect 3 flow vs our executor")
    if importlib.util.find_spec("prefect") is None:
        section.skipped = "skipped: prefect is not installed (pip install -e '.[bench]')"
        return section
    n = ctx.size(20, 100)
    rounds = ctx.size(1, 3)  # rounds after the first only within the suite's time budget
    circuits_dir = ctx.workdir / "circuits"
    write_circuits(circuits_dir, n)
    ours_dir = sampling_workflow(ctx.workdir / "b3-ours", "ours")
    home = ctx.workdir / "b3-prefect-home"
    home.mkdir(parents=True, exist_ok=True)
    env = bench_env(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180")
    for key in ("PREFECT_API_URL", "PREFECT_PROFILE"):
        env.pop(key, None)
    out = ctx.workdir / "b3-prefect-out"

    def prefect(count: int) -> tuple[float, dict, float | None, float | None]:
        fresh_dir(out)
        result = run_process([sys.executable, str(FLOW), str(circuits_dir), str(out), str(count), "2"], env=env,
                             outputs=out)
        done = count_files(out)()
        if done != count:
            raise RuntimeError(f"the Prefect flow wrote {done} of {count} outputs")
        inner = json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1])
        first, rate = phases(result, count)
        return result.seconds, inner, first, rate

    ctx.log("  B3 warm-up runs (N=5, not measured)")
    prefect(5)
    run_sampling(ours_dir, "ours", 5, circuits_dir)

    ours: list[float] = []
    theirs: list[float] = []
    inner: list[dict] = []
    rates: dict[str, list[float]] = {"ours": [], "prefect": []}
    firsts: dict[str, list[float]] = {"ours": [], "prefect": []}
    for r in range(rounds):
        if r and not ctx.optional(1.2 * (statistics.median(ours) + statistics.median(theirs)), f"B3 round {r + 1}"):
            break
        for side in (["ours", "prefect"] if r % 2 == 0 else ["prefect", "ours"]):
            ctx.log(f"  B3 {side} N={n} run {r + 1}")
            if side == "ours":
                result = run_sampling(ours_dir, "ours", n, circuits_dir)
                ours.append(result.seconds)
                first, rate = phases(result, n)
            else:
                seconds, details, first, rate = prefect(n)
                theirs.append(seconds)
                inner.append(details)
            if first is not None:
                firsts[side].append(first)
            if rate is not None:
                rates[side].append(rate)

    o, p = Stats.of(ours), Stats.of(theirs)
    speedup = statistics.median(pp / oo for oo, pp in zip(ours, theirs, strict=True))
    section.method = (
        f"N = {n} circuits (the B2 GHZ-5 files: distinct texts, 1024 shots, seed 1234), {len(ours)} run(s) per "
        "side, alternating, after one unmeasured N=5 warm-up run per side. **ours** = `snakemake --scheduler quantum "
        "--executor quantum --cores 2`, one `qrun` job per circuit on a vQPU sidecar started and "
        "stopped inside the run. **prefect** = `python benchmarks/b3_prefect_flow.py`: Prefect "
        f"{_version('prefect')} ephemeral local mode (a temporary API server with SQLite, as `prefect` "
        "does with no server configured), one `@task` per circuit submitted to "
        "`ThreadPoolTaskRunner(max_workers=2)`, each task sampling in-process with a warm per-thread "
        "`AerSimulator(max_parallel_threads=1)` and reused pass manager (no per-task imports: the "
        "most favourable set-up for Prefect). Default logging on both sides. Wall time = whole command."
    )
    section.add(Row(f"N={n}: wall time", o, p, ratio=speedup, ratio_label="speedup prefect/ours",
                    base_name="prefect", target=f">= {TARGET:g}x", met=speedup >= TARGET))
    if firsts["ours"] and firsts["prefect"]:
        section.add(Row(f"N={n}: time to first result", Stats.of(firsts["ours"]), Stats.of(firsts["prefect"])))
    if rates["ours"] and rates["prefect"]:
        section.add(Row(f"N={n}: tasks/s, first to last result", Stats.of(rates["ours"]), Stats.of(rates["prefect"]),
                        unit="jobs/s"))
    flow_s = Stats.of([d["flow"] for d in inner])
    imports_s = Stats.of([d["imports"] for d in inner])
    section.add(Row("prefect: flow call only (server start + tasks)", None, flow_s))
    section.add(Row("prefect: imports (prefect, qiskit, aer)", None, imports_s))
    per_task = [(1 / r) for r in rates["prefect"]]
    per_job = [(1 / r) for r in rates["ours"]]
    text = (f"Prefect's wall time {p.median:.1f} s splits into imports {imports_s.median:.1f} s, the flow call "
            f"{flow_s.median:.1f} s (which includes starting the temporary server) and interpreter/exit. ")
    if per_task and per_job:
        text += (f"Once running, Prefect completes a task every {statistics.median(per_task) * 1e3:.0f} ms and ours a "
                 f"job every {statistics.median(per_job) * 1e3:.0f} ms (first to last output, 2 at a time on both sides).")
    section.note(text)
    if speedup < TARGET and per_task and per_job and firsts["ours"] and firsts["prefect"]:
        ours_first, their_first = statistics.median(firsts["ours"]), statistics.median(firsts["prefect"])
        ours_job, their_task = statistics.median(per_job), statistics.median(per_task)
        limit = ours_job / their_task
        section.note(
            f"**Target missed ({speedup:.2f}x < {TARGET:g}x).** The wall time is a fixed start-up plus a per-task "
            f"cost. Start-up (to the first result): ours {ours_first:.1f} s (Snakemake start and DAG, then the vQPU "
            f"sidecar: importing qiskit/aer and warming its worker processes), Prefect {their_first:.1f} s (imports and "
            f"its temporary server). Per task once running: ours {ours_job * 1e3:.0f} ms per job, Prefect "
            f"{their_task * 1e3:.0f} ms per task. "
            + (f"Prefect's tasks are cheaper than our jobs here (x{limit:.1f}), so for large N the ratio tends to "
               f"{1 / limit:.2f}x (Prefect faster); only our smaller start-up keeps ours ahead at small N. "
               if limit > 1 else
               f"Ours is cheaper per task (x{1 / limit:.1f}), so for large N the ratio tends to {1 / limit:.1f}x. ")
            + "Each of our jobs passes through Snakemake's scheduler and bookkeeping (B7 times a trivial job) "
            "and a round trip to the vQPU; a Prefect task is a function call in a warm process. What would fix "
            "it: fewer jobs per circuit (several circuits as pubs of one `qrun` payload, as `workflows/sweep` "
            "does) and a faster sidecar start."
        )
    elif speedup < TARGET:
        section.note(f"**Target missed ({speedup:.2f}x < {TARGET:g}x).**")
    return section


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)
