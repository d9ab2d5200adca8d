"""B4 scale: a generated 5,000-job DAG: dry run, qplan, and running 5,000 trivial CPU jobs.

- Planning: a DAG of 4,000 CPU jobs (``touch``) and 1,000 vQPU jobs (``qrun``, each on
  one CPU job's output), plus ``all``. ``snakemake -n`` and ``qplan --json`` on it,
  alternating; wall time and peak RSS of each process.
- Running: 5,000 independent ``touch`` jobs with ``--executor quantum --cores 2`` and
  ``--executor local --cores 2``: peak RSS of the Snakemake process (psutil, sampled every
  0.25 s) and the steady job rate (outputs per second between 20% and 80% done, or over a
  fixed window when the run is time-boxed to stay within the suite's budget).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from pathlib import Path

from .b7_shell import touch_workflow
from .common import (
    Context,
    Row,
    Section,
    Stats,
    bench_env,
    command,
    count_files,
    output_times,
    reset_workflow,
    run_process,
    stop_process,
    vqpu_config,
)

TARGET_RATE = 50.0
SCHEDULERS = ("ilp", "greedy", "quantum")  # Snakemake's default, Snakemake's greedy, this package's
MIXED_SNAKEFILE = '''\
CPU = int(config["cpu"])
QUANTUM = int(config["quantum"])

rule all:
    input: expand("prep/{i}.txt", i=range(CPU)), expand("samples/{i}.json", i=range(QUANTUM))

rule prep:
    output: "prep/{i}.txt"
    shell: "touch {output}"

rule sample:
    input: "prep/{i}.txt"
    output: "samples/{i}.json"
    resources: vqpu=1, vqpu_name="bench"
    shell: "qrun circuit.qasm --shots 1024 -o {output}"
'''


def run(ctx: Context) -> Section:
    section = Section("B4", "Scale: a 5,000-job DAG (dry run, qplan, running 5,000 trivial jobs)")
    cpu, quantum = ctx.size((400, 100), (4000, 1000))
    plan_rounds = ctx.size(1, 3)  # rounds after the first only within the suite's time budget
    run_jobs = ctx.size(500, 5000)
    window = ctx.size(10.0, 15.0)  # seconds of job phase measured per side when time-boxed

    mixed = ctx.workdir / "b4-mixed"
    mixed.mkdir(parents=True, exist_ok=True)
    (mixed / "Snakefile").write_text(MIXED_SNAKEFILE)
    (mixed / "config.yaml").write_text(f"cpu: {cpu}\nquantum: {quantum}\n")
    (mixed / "qrmi_config.yaml").write_text(vqpu_config("bench"))
    (mixed / "circuit.qasm").write_text((Path(__file__).resolve().parent.parent / "circuits" / "ghz5.qasm").read_text())
    dry = [command("snakemake"), "-n", "--cores", "2", "--configfile", "config.yaml"]
    plan = [command("qplan"), "--json", "--config-file", "config.yaml"]
    times: dict[str, list[float]] = {"dry": [], "qplan": []}
    rss: dict[str, list[float]] = {"dry": [], "qplan": []}
    ctx.log("  B4 planning: warm-up on a 20-job DAG")
    (mixed / "config.yaml").write_text("cpu: 10\nquantum: 10\n")
    run_process(dry, cwd=mixed)
    run_process(plan, cwd=mixed)
    (mixed / "config.yaml").write_text(f"cpu: {cpu}\nquantum: {quantum}\n")
    for r in range(plan_rounds):
        if r and not ctx.optional(1.2 * (times["dry"][0] + times["qplan"][0]), f"B4 planning round {r + 1}"):
            break
        for name in (["dry", "qplan"] if r % 2 == 0 else ["qplan", "dry"]):
            ctx.log(f"  B4 {name} run {r + 1}")
            result = run_process(dry if name == "dry" else plan, cwd=mixed, watch_rss=True, interval=0.1)
            times[name].append(result.seconds)
            rss[name].append(result.peak_rss_mb)
    section.add(Row(f"{cpu + quantum}-job DAG: qplan --json vs snakemake -n", Stats.of(times["qplan"]),
                    Stats.of(times["dry"]), base_name="snakemake -n"))
    section.add(Row(f"{cpu + quantum}-job DAG: peak RSS, qplan vs snakemake -n", Stats.of(rss["qplan"]),
                    Stats.of(rss["dry"]), unit="MB"))

    # Running: flat fan-out of trivial jobs, each executor once per scheduler, time-boxed.
    directory = touch_workflow(ctx.workdir / "b4-run", run_jobs)
    measured: dict[tuple[str, str], dict[str, float]] = {}
    for scheduler in SCHEDULERS:
        for executor in ("quantum", "local"):
            ctx.log(f"  B4 running {run_jobs} touch jobs: --executor {executor} --scheduler {scheduler} (window {window:g} s)")
            measured[(executor, scheduler)] = _timeboxed(directory, executor, run_jobs, window, scheduler)
    for scheduler in SCHEDULERS:
        q, loc = measured[("quantum", scheduler)], measured[("local", scheduler)]
        label = f"{run_jobs} jobs, {scheduler} scheduler" + {"ilp": " (Snakemake's default)", "greedy": "",
                                                            "quantum": " (profiles/local)"}[scheduler]
        target = f">= {TARGET_RATE:g} jobs/s" if scheduler == "quantum" else ""
        section.add(Row(f"{label}: steady jobs/s", Stats.of([q["rate"]]), Stats.of([loc["rate"]]), unit="jobs/s",
                        base_name="--executor local", target=target,
                        met=(q["rate"] >= TARGET_RATE) if target else None))
        section.add(Row(f"{label}: peak RSS of snakemake", Stats.of([q["rss"]]), Stats.of([loc["rss"]]), unit="MB"))
        section.add(Row(f"{label}: start to first output", Stats.of([q["first"]]), Stats.of([loc["first"]])))
    section.method = (
        f"Planning: a DAG of {cpu} CPU jobs (`touch`) and {quantum} vQPU jobs (`qrun`, each needing one CPU "
        f"job's output) plus `all`; `snakemake -n --cores 2` (default output) and `qplan --json` on it, "
        f"{len(times['dry'])} alternating run(s) each after one warm-up each on a 20-job DAG; peak RSS sampled every 0.1 s. "
        f"Running: {run_jobs} independent `touch` jobs from nothing, `--cores 2`, once per executor with "
        "Snakemake's default scheduler (`ilp`), its `greedy` one and this package's `quantum` one (all with "
        "`--max-jobs-per-timespan 1000/1s`, as `profiles/local`); peak RSS of the "
        "`snakemake` process sampled every 0.25 s (psutil). The steady rate is outputs per second between "
        "20% and 80% done, from the outputs' modification times; a run not at 80% "
        f"{window:g} s after its first output is stopped there (SIGTERM, SIGKILL 5 s later, to its PID) and "
        "its rate is taken "
        "from the first output to the stop (said below; its peak RSS is up to the stop): running all "
        "5,000 jobs takes minutes per run here and would not fit the suite's time budget. Single runs: "
        "no min/max."
    )
    for (executor, scheduler), m in measured.items():
        if m["timeboxed"]:
            section.note(f"--executor {executor}, {scheduler}: time-boxed: {m['done']:.0f} of {run_jobs} jobs done in "
                         f"the {m['window']:.0f} s after the first output ({m['rate']:.1f} jobs/s).")
        else:
            section.note(f"--executor {executor}, {scheduler}: all {run_jobs} jobs in {m['seconds']:.1f} s "
                         f"(steady {m['rate']:.1f} jobs/s).")
    rates = {f"{scheduler}_{executor}": measured[(executor, scheduler)]["rate"] for executor, scheduler in measured}
    section.data.update(rates, jobs=run_jobs)
    qq, gq, iq = (measured[("quantum", s)]["rate"] for s in ("quantum", "greedy", "ilp"))
    section.note(
        f"`profiles/local` sets `scheduler: quantum` because of this benchmark: with {run_jobs} ready jobs our "
        f"scheduler ran {qq:.1f} jobs/s under our executor, Snakemake's greedy one {gq:.1f} and its default ILP one "
        f"{iq:.1f}. The greedy scheduler scores every ready job after each finished job; the ILP one solves an "
        "integer program over them; ours keeps them in queues across rounds and reads only the jobs that became "
        "ready. It orders jobs as greedy does (priority, then temp and input sizes); the ILP's temp-file-aware "
        "global choice is what a workflow that must delete large `temp()` files early would miss."
    )
    if qq < TARGET_RATE:
        section.note(f"**Target missed ({qq:.1f} < {TARGET_RATE:g} jobs/s).** What is left is Snakemake's own per-job "
                     "work; B10 profiles it (*Where the time goes*).")
    return section


def _timeboxed(directory: Path, executor: str, total: int, window: float, scheduler: str) -> dict[str, float]:
    """Run the touch workflow; stop it ``window`` s after its first output unless it is 80% done by then.

    Progress is polled (for the stop decision and RSS); the rates come from the outputs'
    modification times, which say exactly when each job's output appeared.
    """
    import psutil

    reset_workflow(directory)
    out = directory / "out"
    count = count_files(out)
    # A Snakemake stopped here leaves its temporary files (a directory of its own, the ILP
    # solver's files) behind: in this directory, removed below, not in /tmp.
    scratch = directory / "tmp"
    scratch.mkdir(exist_ok=True)
    started_wall = time.time()
    started = time.perf_counter()
    proc = subprocess.Popen([command("snakemake"), "--executor", executor, "--cores", "2", "--configfile", "config.yaml",
                             "--scheduler", scheduler, "--max-jobs-per-timespan", "1000/1s"],
                            cwd=directory, env=bench_env(TMPDIR=str(scratch)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    handle = psutil.Process(proc.pid)
    peak = 0
    first = None
    stopped_at = None
    try:
        while proc.poll() is None:
            time.sleep(0.25)
            now = time.perf_counter() - started
            with contextlib.suppress(psutil.Error):
                peak = max(peak, handle.memory_info().rss)
            done = count()
            if first is None and done >= 1:
                first = now
            if first is not None and now - first > window and done < 0.8 * total:
                stopped_at = time.time() - started_wall
                proc.send_signal(signal.SIGTERM)
                break
    finally:
        # Everything measured is in the outputs' mtimes: no need to wait for a graceful exit
        # (plain Snakemake took over a minute to act on SIGTERM here); SIGKILL after 5 s.
        stop_process(proc, timeout=5)
        shutil.rmtree(scratch, ignore_errors=True)
    seconds = time.perf_counter() - started
    times = output_times(out, started_wall)
    if not times:
        raise RuntimeError(f"--executor {executor}: no job finished")
    first_t = times[0]
    if stopped_at is not None:
        in_window = [t for t in times if t <= stopped_at]
        span = stopped_at - first_t
        return {"rate": (len(in_window) - 1) / span, "rss": peak / 2**20, "first": first_t, "timeboxed": 1,
                "done": len(in_window), "window": span, "seconds": seconds}
    if len(times) != total and proc.returncode != 0:
        raise RuntimeError(f"--executor {executor} exited {proc.returncode} after {len(times)} of {total} jobs")
    lo, hi = times[int(0.2 * (len(times) - 1))], times[int(0.8 * (len(times) - 1))]
    rate = (int(0.8 * (len(times) - 1)) - int(0.2 * (len(times) - 1))) / (hi - lo) if hi > lo else total / seconds
    return {"rate": rate, "rss": peak / 2**20, "first": first_t, "timeboxed": 0, "done": len(times), "window": 0,
            "seconds": seconds}
