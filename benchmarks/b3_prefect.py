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
    plan = ctx.size({20: 1}, {100: 3, 1000: 1})  # N -> rounds (rounds after the first only within the budget)
    targets = {100: 3.0, 1000: 5.0}
    circuits_dir = ctx.workdir / "circuits"
    write_circuits(circuits_dir, max(plan))
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
                             outputs=out, timeout=1800)
        done = count_files(out)()
        if done != count:
            raise RuntimeError(f"the Prefect flow wrote {done} of {count} outputs")
        inner = json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1])
        first, rate = phases(result, count)
        return result.seconds, inner, first, rate

    ctx.log("  B3 warm-up runs (N=5, not measured)")
    prefect(5)
    run_sampling(ours_dir, "ours", 5, circuits_dir)

    ours: dict[int, list[float]] = {n: [] for n in plan}
    theirs: dict[int, list[float]] = {n: [] for n in plan}
    inner: list[dict] = []
    rates: dict[tuple[str, int], list[float]] = {}
    firsts: dict[tuple[str, int], list[float]] = {}
    for n, rounds in plan.items():
        for r in range(rounds):
            if r and not ctx.optional(1.2 * (statistics.median(ours[n]) + statistics.median(theirs[n])), f"B3 N={n} round {r + 1}"):
                break
            for side in (["ours", "prefect"] if r % 2 == 0 else ["prefect", "ours"]):
                ctx.log(f"  B3 {side} N={n} run {r + 1}")
                if side == "ours":
                    result = run_sampling(ours_dir, "ours", n, circuits_dir, timeout=1800)
                    ours[n].append(result.seconds)
                    first, rate = phases(result, n)
                else:
                    seconds, details, first, rate = prefect(n)
                    theirs[n].append(seconds)
                    inner.append(details)
                if first is not None:
                    firsts.setdefault((side, n), []).append(first)
                if rate is not None:
                    rates.setdefault((side, n), []).append(rate)

    section.method = (
        f"N = {' and '.join(str(n) for n in plan)} circuits (the B2 GHZ-5 files: distinct texts, 1024 shots, seed 1234), "
        f"{', '.join(f'{len(ours[n])} run(s) per side at N={n}' for n in plan)}, alternating, after one unmeasured N=5 "
        "warm-up run per side. **ours** = `snakemake --scheduler quantum "
        "--executor quantum --cores 2`, one `qrun` job per circuit on a vQPU sidecar started and "
        "stopped inside the run. **prefect** = `python benchmarks/b3_prefect_flow.py`: Prefect "
        f"{_version('prefect')} ephemeral local mode (a temporary API server with SQLite, as `prefect` "
        "does with no server configured), one `@task` per circuit submitted to "
        "`ThreadPoolTaskRunner(max_workers=2)`, each task sampling in-process with a warm per-thread "
        "`AerSimulator(max_parallel_threads=1)` and reused pass manager (no per-task imports: the "
        "most favourable set-up for Prefect). Default logging on both sides. Wall time = whole command."
    )
    for n in plan:
        o, p = Stats.of(ours[n]), Stats.of(theirs[n])
        speedup = statistics.median(pp / oo for oo, pp in zip(ours[n], theirs[n], strict=True))
        target = targets.get(n)
        section.add(Row(f"N={n}: wall time", o, p, ratio=speedup, ratio_label="speedup prefect/ours",
                        base_name="prefect", target=f">= {target:g}x" if target else "",
                        met=(speedup >= target) if target else None))
        if ("ours", n) in firsts and ("prefect", n) in firsts:
            section.add(Row(f"N={n}: time to first result", Stats.of(firsts[("ours", n)]), Stats.of(firsts[("prefect", n)])))
        if ("ours", n) in rates and ("prefect", n) in rates:
            section.add(Row(f"N={n}: tasks/s, first to last result", Stats.of(rates[("ours", n)]),
                            Stats.of(rates[("prefect", n)]), unit="jobs/s"))
        section.data[f"speedup_{n}"] = speedup
    flow_s = Stats.of([d["flow"] for d in inner])
    imports_s = Stats.of([d["imports"] for d in inner])
    section.add(Row("prefect: flow call only (server start + tasks), all runs", None, flow_s))
    section.add(Row("prefect: imports (prefect, qiskit, aer)", None, imports_s))
    for n in plan:
        per_task = [1 / r for r in rates.get(("prefect", n), [])]
        per_job = [1 / r for r in rates.get(("ours", n), [])]
        if per_task and per_job:
            section.note(f"N={n}: once running, Prefect completes a task every {statistics.median(per_task) * 1e3:.1f} ms "
                         f"and ours a job every {statistics.median(per_job) * 1e3:.1f} ms (first to last output, 2 at a "
                         f"time on both sides); to the first result: ours {statistics.median(firsts[('ours', n)]):.1f} s, "
                         f"Prefect {statistics.median(firsts[('prefect', n)]):.1f} s (imports and its temporary server).")
        row = next(r for r in section.rows if r.metric == f"N={n}: wall time")
        if row.met is False:
            section.note(
                f"**Target missed at N={n} ({row.ratio:.2f}x < {targets[n]:g}x).** The wall time is a fixed start-up "
                "plus a per-task cost. Each of our jobs passes through Snakemake's scheduler and bookkeeping "
                "(B10 and *Where the time goes*), a Prefect task is a function call in a warm process; what "
                "would fix it: fewer jobs per circuit (several circuits as pubs of one `qrun` payload, as "
                "`workflows/sweep` does)."
            )
    return section


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)
