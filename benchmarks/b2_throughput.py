"""B2 workflow throughput: N sampling jobs on a vQPU sidecar vs a Python script per job.

Both sides run ``snakemake --cores 2 --scheduler quantum`` on N jobs, job i sampling its own circuit file
(GHZ-5 plus a distinct rz phase that changes no probability, so no cache can reuse an
earlier job's preparation), 1024 shots, seed 1234:

- ours: ``--executor quantum``; each job is ``qrun c{i}.qasm --shots 1024 -o s{i}.json``
        (``resources: vqpu=1``, run inline by the executor); the executor starts the vQPU
        sidecar (2 lanes) for the run and stops it at the end, inside the measured wall time;
- base: ``--executor local``; each job is ``python aer_sample.py ...``, a script that
        imports qiskit and qiskit-aer, transpiles and samples (what users write without a vQPU).

Wall time is the whole ``snakemake`` command, start to exit, from nothing (outputs and
``.snakemake`` removed before every run).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from .common import (
    Context,
    Row,
    Section,
    Stats,
    phases,
    pure_simulation_seconds,
    run_sampling,
    sampling_workflow,
    write_circuits,
)

TARGET_SPEEDUP = 5.0
TARGET_OVERHEAD = 0.050
TARGET_N = 200


def run(ctx: Context) -> Section:
    section = Section("B2", "Workflow throughput: N sampling jobs, vQPU sidecar + qrun vs a script per job")
    # N -> (runs always done, most runs if the suite's time budget allows)
    ours_plan = ctx.size({20: (1, 1), 50: (1, 1)}, {20: (1, 1), 50: (1, 2), 200: (1, 3), 1000: (1, 1)})
    # A baseline job costs ~3.5 CPU-seconds (a fresh interpreter importing and transpiling),
    # so N=200 alone takes ~400 s here: it runs only when the suite's budget has room for it
    # (`--only B2`), else it is extrapolated from N=20 and N=50 (and says so).
    base_plan = ctx.size({20: (1, 1), 50: (1, 1)}, {20: (1, 1), 50: (1, 1), 200: (0, 1)})
    largest = max(ours_plan)
    circuits_dir = ctx.workdir / "circuits"
    circuits = write_circuits(circuits_dir, largest)
    sim = pure_simulation_seconds(circuits)
    ours_dir = sampling_workflow(ctx.workdir / "b2-ours", "ours")
    base_dir = sampling_workflow(ctx.workdir / "b2-base", "base")

    ours: dict[int, list[float]] = {}
    base: dict[int, list[float]] = {}
    first: dict[tuple[str, int], list[float]] = {}  # seconds until the first output
    rate: dict[tuple[str, int], list[float]] = {}  # jobs/s between the first and last output

    def one(side: str, n: int) -> None:
        store, directory = (ours, ours_dir) if side == "ours" else (base, base_dir)
        ctx.log(f"  B2 {side} N={n} run {len(store.get(n, [])) + 1}")
        result = run_sampling(directory, side, n, circuits_dir, timeout=1800)
        store.setdefault(n, []).append(result.seconds)
        t_first, jobs_per_s = phases(result, n)
        if t_first is not None:
            first.setdefault((side, n), []).append(t_first)
        if jobs_per_s is not None:
            rate.setdefault((side, n), []).append(jobs_per_s)

    # Round 0 is always run; later rounds only within the budget. Sides alternate in every round.
    rounds = max(most for plan in (ours_plan, base_plan) for _, most in plan.values())
    for r in range(rounds):
        for n in sorted(ours_plan):
            for side in (["ours", "base"] if r % 2 == 0 else ["base", "ours"]):
                plan, store = (ours_plan, ours) if side == "ours" else (base_plan, base)
                always, most = plan.get(n, (0, 0))
                if r >= most:
                    continue
                if r >= always and not ctx.optional(1.2 * _expected(store, n), f"{side} N={n} run {r + 1}"):
                    continue
                one(side, n)

    # Context: the same jobs with a log each (`2> {log}`), in pairs with the plain ones.
    logged_n = 200 if 200 in ours_plan else largest
    logged_dir = sampling_workflow(ctx.workdir / "b2-logged", "ours", logged=True)
    logged, plain = [], []
    for r in range(ctx.size(1, 2)):
        for kind in (("plain", "logged") if r % 2 == 0 else ("logged", "plain")):
            ctx.log(f"  B2 ours N={logged_n} {kind} (context) run {r + 1}")
            directory, store = (logged_dir, logged) if kind == "logged" else (ours_dir, plain)
            store.append(run_sampling(directory, "ours", logged_n, circuits_dir, timeout=1800).seconds)

    section.method = (
        "Both sides: `snakemake --cores 2 --scheduler quantum` (as `profiles/local`), N jobs, job i samples its own GHZ-5 circuit file (a distinct "
        "`rz` phase before measurement makes every circuit text different without changing its "
        "distribution, so no preparation cache helps), 1024 shots, seed 1234. **ours** = "
        "`--executor quantum`, each job `qrun c{i}.qasm --shots 1024 -o s{i}.json` with "
        "`resources: vqpu=1` on a vQPU sidecar (2 lanes) the executor starts and stops inside the "
        "measured run (a plain `qrun` command on a vQPU: the executor sends the request itself, no process); **base** = `--executor local`, each job `python aer_sample.py` (imports qiskit "
        "+ qiskit-aer, `transpile`, `AerSimulator(max_parallel_threads=1).run`). Wall time = the whole "
        "`snakemake` command, from nothing (outputs and `.snakemake` removed before each run); sides "
        f"alternate run by run. *Pure simulation time* = N x {sim * 1e3:.2f} ms, the median time to "
        "sample one of these circuits in a warm process (reused pass manager, 1 thread), measured in "
        "this run. Per-job overhead = (wall - pure simulation) / N; overhead fraction = (wall - pure "
        "simulation) / wall. Context: the ours workflow with `log:` in the rule and `2> {log}` after "
        "the command (as Snakemake's linter asks of every rule), in pairs with the plain one."
    )
    for n in sorted(ours):
        o = Stats.of(ours[n])
        b = Stats.of(base[n]) if n in base else None
        if b is not None:
            paired = len(ours[n]) == len(base[n])
            ratio = (statistics.median(bb / oo for oo, bb in zip(ours[n], base[n], strict=True)) if paired
                     else b.median / o.median)
            target = f">= {TARGET_SPEEDUP:g}x" if n == TARGET_N else ""
            section.add(Row(f"N={n}: wall time", o, b, ratio=ratio, ratio_label="speedup base/ours",
                            target=target, met=(ratio >= TARGET_SPEEDUP) if target else None))
        else:
            section.add(Row(f"N={n}: wall time (ours only)", o, None))
        overhead = Stats.of([(w - n * sim) / n for w in ours[n]])
        base_overhead = Stats.of([(w - n * sim) / n for w in base[n]]) if n in base else None
        section.add(Row(f"N={n}: per-job overhead", overhead, base_overhead,
                        target=f"<= {TARGET_OVERHEAD * 1e3:.0f} ms", met=overhead.median <= TARGET_OVERHEAD))
        fraction = Stats.of([100 * (w - n * sim) / w for w in ours[n]])
        base_fraction = Stats.of([100 * (w - n * sim) / w for w in base[n]]) if n in base else None
        section.add(Row(f"N={n}: overhead fraction", fraction, base_fraction, unit="%", ratio=None))
        section.rows[-1].ratio = None
        if ("ours", n) in first:
            section.add(Row(f"N={n}: time to first result", Stats.of(first[("ours", n)]),
                            Stats.of(first[("base", n)]) if ("base", n) in first else None))
        if ("ours", n) in rate:
            section.add(Row(f"N={n}: jobs/s, first to last result", Stats.of(rate[("ours", n)]),
                            Stats.of(rate[("base", n)]) if ("base", n) in rate else None, unit="jobs/s"))

    section.add(Row(f"N={logged_n}: wall time, each job with log: and 2> {{log}} vs without", Stats.of(logged),
                    Stats.of(plain), base_name="without log"))
    section.data["sim"] = sim
    for n in ours:
        section.data[f"ours_wall_{n}"] = statistics.median(ours[n])
        if ("ours", n) in first:
            section.data[f"ours_first_{n}"] = statistics.median(first[("ours", n)])
        if ("ours", n) in rate:
            section.data[f"ours_rate_{n}"] = statistics.median(rate[("ours", n)])
    for n in base:
        section.data[f"base_wall_{n}"] = statistics.median(base[n])

    # How the cost grows: the marginal cost of one more job between sizes (fixed costs cancel).
    sizes = sorted(ours)
    for lo, hi in zip(sizes, sizes[1:], strict=False):
        slope = (statistics.median(ours[hi]) - statistics.median(ours[lo])) / (hi - lo)
        text = (f"ours, N={lo}->{hi}: each extra job adds {slope * 1e3:.1f} ms of wall time "
                f"({(slope - sim) * 1e3:.1f} ms beyond its simulation); fixed cost (intercept) "
                f"{statistics.median(ours[lo]) - slope * lo:.1f} s")
        if lo in base and hi in base:
            bslope = (statistics.median(base[hi]) - statistics.median(base[lo])) / (hi - lo)
            text += f"; base: {bslope * 1e3:.0f} ms per extra job, intercept {statistics.median(base[lo]) - bslope * lo:.1f} s"
        section.note(text + ".")

    base_sizes = sorted(base)
    missing = [n for n in sizes if n not in base]
    if missing and len(base_sizes) >= 2:
        lo, hi = base_sizes[-2], base_sizes[-1]
        bslope = (statistics.median(base[hi]) - statistics.median(base[lo])) / (hi - lo)
        for n in missing:
            estimate = statistics.median(base[hi]) + bslope * (n - hi)
            speedup = estimate / statistics.median(ours[n])
            target = f">= {TARGET_SPEEDUP:g}x" if n == TARGET_N else ""
            # An extrapolated baseline is never counted as met (or missed): the target stays open.
            section.add(Row(f"N={n}: speedup vs EXTRAPOLATED base (not counted)", Stats.of(ours[n]), Stats.of([estimate]),
                            ratio=speedup, ratio_label="speedup base/ours", note="baseline not run",
                            target=target, met=None))
            section.note(
                f"The baseline at N={n} was **not run** (it would take ~{estimate / 60:.0f} min); its "
                f"{estimate:.0f} s is a linear **extrapolation** from the measured N={lo} and N={hi} "
                f"baseline runs ({bslope * 1e3:.0f} ms per extra job); `python benchmarks/run.py --only B2` "
                "has the time to measure it."
            )

    missed = [n for n in sorted(ours) if statistics.median((w - n * sim) / n for w in ours[n]) > TARGET_OVERHEAD]
    if missed:
        parts = []
        for n in missed:
            overhead = statistics.median((w - n * sim) / n for w in ours[n])
            part = f"N={n}: {overhead * 1e3:.0f} ms"
            if ("ours", n) in first and ("ours", n) in rate:
                fixed = statistics.median(first[("ours", n)]) / n
                running = 1 / statistics.median(rate[("ours", n)])
                part += (f" = start-up to the first result spread over the jobs ({fixed * 1e3:.0f} ms) + "
                         f"~{running * 1e3:.0f} ms per job once running + the run's tail")
            parts.append(part)
        section.note(
            f"**Per-job overhead target (<= {TARGET_OVERHEAD * 1e3:.0f} ms) missed** at " + "; ".join(parts) + ". "
            "The start-up (Snakemake, DAG, the vQPU sidecar's start) shrinks per job as N grows; the running "
            "part does not, and grows with N: each job is Snakemake's own per-job scheduling and bookkeeping, "
            "whose cost rises with the number of jobs waiting (B4), plus a round trip to the vQPU (see *Where "
            "the time goes*). To meet the target the running part has to fall below "
            "it: fewer jobs per circuit (several circuits as pubs of one `qrun` payload: one job and one "
            "request for many circuits, as `workflows/sweep` does)."
        )
    _metrics_cost(ctx, section, ours_dir, circuits_dir)
    for row in section.rows:
        if row.met is False and row.target == f">= {TARGET_SPEEDUP:g}x":  # not the metrics row's target
            n = int(row.metric.split(":")[0][2:])
            text = f"**Speedup target missed at N={n}** ({row.ratio:.1f}x < {TARGET_SPEEDUP:g}x)."
            if ("ours", n) in rate and ("base", n) in rate:
                text += (f" Once running, the baseline takes {1 / statistics.median(rate[('base', n)]) * 1e3:.0f} ms per "
                         f"job (a Python process importing qiskit + qiskit-aer and transpiling) and ours "
                         f"{1 / statistics.median(rate[('ours', n)]) * 1e3:.0f} ms; ours also starts a vQPU first.")
            section.note(text)
    return section


METRICS_TARGET = 1.02


def _metrics_cost(ctx: Context, section: Section, ours_dir: Path, circuits_dir: Path) -> None:
    """The same N=200 run with per-task metrics (the default) and with --quantum-no-metrics,
    in alternating pairs; plus the cost of writing one record, measured in-process."""
    import tempfile

    from snakemake_executor_plugin_quantum.metrics import record

    # Single N=200 runs on a shared VM differ by up to ~10%, so a 2% target needs the median of
    # several pairs; pairs beyond three only if the suite's time budget allows.
    n, pairs = ctx.size((50, 2), (200, 5))
    walls: dict[str, list[float]] = {"with": [], "without": []}
    for r in range(pairs):
        if r >= 3 and not ctx.optional(2.2 * statistics.median(walls["with"]), f"B2 metrics pair {r + 1}"):
            pairs = r
            break
        for side in (["with", "without"] if r % 2 == 0 else ["without", "with"]):
            ctx.log(f"  B2 metrics {side} N={n} run {r + 1}")
            extra = () if side == "with" else ("--quantum-no-metrics",)
            walls[side].append(run_sampling(ours_dir, "ours", n, circuits_dir, timeout=1800, extra=extra).seconds)
    row = section.add(Row(f"N={n}: wall time with per-task metrics vs without", Stats.of(walls["with"]),
                          Stats.of(walls["without"]), base_name="--quantum-no-metrics", target=f"<= {METRICS_TARGET:g}x"))
    row.met = row.ratio is not None and row.ratio <= METRICS_TARGET
    with tempfile.TemporaryDirectory() as scratch:
        path = str(Path(scratch) / "m.jsonl")
        environ = {record.METRICS_VAR: path, record.JOB_VAR: json.dumps({"rule": "r", "jobid": 1, "wildcards": {"i": "0"}})}
        payload = {"program_id": "sampler", "parameters": {"pubs": [["OPENQASM 2.0;"]], "version": 2}}
        result = {"task_id": "t", "program": "sampler", "shots": 1024, "pubs": [{"shots": 1024, "parameter_sets": 1}],
                  "metadata": {"queued_seconds": 0.001, "run_seconds": 0.005, "active_qubits": [[0, 1, 2, 3, 4]]}}
        seconds = []
        for _ in range(2000):
            t0 = time.perf_counter()
            task = record.begin("vqpu", "vqpu", payload, {}, environ, client="inline")
            task.completed(result)
            seconds.append(time.perf_counter() - t0)
    section.add(Row("one metrics record: build and append", Stats.of(seconds), note="in-process, 2,000 records"))
    section.note(
        f"Per-task metrics: the N={n} run with recording vs without is {row.ratio:.3f}x (median of "
        f"{pairs} alternating pairs); writing one record costs {statistics.median(seconds) * 1e6:.0f} us, "
        f"{statistics.median(seconds) / (statistics.median(walls['with']) / n) * 100:.2f}% of a job's share of the wall time."
    )
    if row.met is False:
        section.note(f"**Metrics target missed ({row.ratio:.3f}x > {METRICS_TARGET:g}x):** with a record costing "
                     f"{statistics.median(seconds) * 1e6:.0f} us, a difference this size is run-to-run noise of this shared VM "
                     "rather than the recording itself; more pairs would narrow it.")


def _expected(store: dict[int, list[float]], n: int) -> float:
    """Seconds a run of size ``n`` should take: its median, else scaled from the largest smaller size."""
    if n in store:
        return statistics.median(store[n])
    smaller = [m for m in store if m < n]
    if not smaller:
        return float("inf")
    m = max(smaller)
    return statistics.median(store[m]) * n / m
