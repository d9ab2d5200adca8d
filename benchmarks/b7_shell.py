"""B7 300 trivial shell jobs: ``--executor quantum`` vs ``--executor local``, same cores.

A workflow of 300 independent ``touch`` jobs (no quantum resources), run from nothing
by each executor with ``--cores 2`` and Snakemake's default scheduler, in alternating
runs. This is the cost of our executor's hooks on plain classical jobs.
"""

from __future__ import annotations

from .common import (
    Context,
    Row,
    Section,
    Stats,
    command,
    count_files,
    fanout_workflow,
    phases,
    reset_workflow,
    run_process,
)

TARGET = 1.5


def touch_workflow(directory, count: int):
    fanout_workflow(directory)
    (directory / "config.yaml").write_text(f"count: {count}\n")
    return directory


def run_touch(directory, executor: str, count: int, extra: list[str] | None = None, watch_rss: bool = False):
    reset_workflow(directory)
    result = run_process(
        [command("snakemake"), "--executor", executor, "--cores", "2", "--configfile", "config.yaml", *(extra or [])],
        cwd=directory, outputs=directory / "out", watch_rss=watch_rss, timeout=1800,
    )
    done = count_files(directory / "out")()
    if done != count:
        raise RuntimeError(f"{executor}: {done} of {count} outputs")
    return result


def run(ctx: Context) -> Section:
    section = Section("B7", "300 trivial shell jobs: --executor quantum vs --executor local")
    count = 300
    rounds = ctx.size(1, 3)  # rounds after the first only within the suite's time budget
    directory = touch_workflow(ctx.workdir / "b7", count)
    ctx.log("  B7 warm-up (N=20 each, not measured)")
    (directory / "config.yaml").write_text("count: 20\n")
    for executor in ("quantum", "local"):
        run_touch(directory, executor, 20)
    (directory / "config.yaml").write_text(f"count: {count}\n")
    times: dict[str, list[float]] = {"quantum": [], "local": []}
    rates: dict[str, list[float]] = {"quantum": [], "local": []}
    firsts: dict[str, list[float]] = {"quantum": [], "local": []}
    for r in range(rounds):
        if r and not ctx.optional(1.2 * (times["quantum"][0] + times["local"][0]), f"B7 round {r + 1}"):
            break
        for executor in (["quantum", "local"] if r % 2 == 0 else ["local", "quantum"]):
            ctx.log(f"  B7 {executor} run {r + 1}")
            result = run_touch(directory, executor, count)
            times[executor].append(result.seconds)
            first, rate = phases(result, count)
            if rate is not None:
                rates[executor].append(rate)
            if first is not None:
                firsts[executor].append(first)
    section.method = (
        f"{count} independent `touch` jobs, `snakemake --cores 2` with the default scheduler, from nothing "
        f"(outputs and `.snakemake` removed) each run; {len(times['local'])} run(s) per executor, alternating, after one "
        "unmeasured 20-job warm-up run each. No job asks for quantum resources: this is what our "
        "executor's per-job hooks cost on plain classical work."
    )
    q, loc = Stats.of(times["quantum"]), Stats.of(times["local"])
    section.data.update(quantum_wall=q.median, local_wall=loc.median, count=count)
    if rates["quantum"]:
        section.data["quantum_rate"] = Stats.of(rates["quantum"]).median
    if firsts["quantum"]:
        section.data["quantum_first"] = Stats.of(firsts["quantum"]).median
    row = section.add(Row(f"{count} jobs: wall time", q, loc, base_name="--executor local", target=f"<= {TARGET:g}x"))
    row.met = row.ratio is not None and row.ratio <= TARGET
    if rates["quantum"] and rates["local"]:
        section.add(Row(f"{count} jobs: jobs/s, first to last output", Stats.of(rates["quantum"]),
                        Stats.of(rates["local"]), unit="jobs/s"))
    section.note(
        f"Median {q.median:.1f} s (quantum) vs {loc.median:.1f} s (local): {(q.median - loc.median) / count * 1e3:+.1f} ms "
        "per job. Both executors run shell jobs in the same thread pool of the Snakemake process; most of "
        "either wall time is Snakemake's own scheduling and bookkeeping per job (see B4 for the scheduler's share)."
    )
    if row.met is False:
        section.note(f"**Target missed ({row.ratio:.2f}x > {TARGET:g}x):** our per-job hook (request lookup, "
                     "environment overlay, leases) costs more than it should on jobs that need no quantum resource.")
    return section
