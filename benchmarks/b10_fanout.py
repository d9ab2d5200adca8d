"""B10 wide fan-outs: 10,000 trivial shell jobs, 10,000 vQPU sampling jobs, and 500 vs 5,000.

All with `--profile profiles/local` (our executor, our scheduler, 2 cores), from nothing.
- Shell: N independent `touch` jobs.
- vQPU: N jobs `qrun ghz5.qasm --shots 200 -o out/{i}.json` on the embedded vQPU (each
  sent by the executor itself), the vQPU started and stopped inside the run.
- Scaling: the shell fan-out at 500 and 5,000 jobs; linear would be 10x the time.
The rate is N / wall time of the whole `snakemake` command (start-up included).
Snakemake's own greedy scheduler on the same kind of fan-out is in B4.
"""

from __future__ import annotations

from .common import (
    REPO,
    TOUCH_BODY,
    Context,
    Row,
    Section,
    Stats,
    command,
    count_files,
    fanout_workflow,
    reset_workflow,
    run_process,
)

TARGET_RATE = 100.0
TARGET_SCALING = 12.0
BODIES = {
    "shell": ("txt", TOUCH_BODY),
    "vqpu": ("json", '    resources: vqpu=1\n    shell: "qrun ghz5.qasm --shots 200 -o {output}"\n'),
}


def _workflow(ctx: Context, kind: str):
    ext, body = BODIES[kind]
    directory = fanout_workflow(ctx.workdir / f"b10-{kind}", body, ext)
    (directory / "ghz5.qasm").write_text((REPO / "circuits" / "ghz5.qasm").read_text())
    return directory


def _run(directory, n: int, log) -> tuple[float, float]:
    reset_workflow(directory)
    result = run_process([command("snakemake"), "--profile", str(REPO / "profiles" / "local"), "--config", f"count={n}"],
                         cwd=directory, timeout=1800, watch_rss=True, interval=0.5)
    done = count_files(directory / "out")()
    if done != n:
        raise RuntimeError(f"{directory.name}: {done} of {n} outputs")
    log(f"    {n} jobs in {result.seconds:.1f} s ({n / result.seconds:.0f} jobs/s), peak RSS {result.peak_rss_mb:.0f} MB")
    return result.seconds, result.peak_rss_mb


# Where the main thread of `snakemake` spends its time, by the first frame that names a part.
# Snakemake's own parts first: a frame of ours deeper down is counted where Snakemake called it.
PARTS = (
    ("job selection: this package's scheduler", "snakemake_scheduler_plugin_quantum"),
    # Frames of Snakemake's methods patched by snakemake_compat are named <locals>.<method>.
    ("job selection: remaining_jobs (listed only if read)", ".remaining_jobs ("),
    ("job selection: input sizes (of new jobs)", ".update_input_sizes ("),
    ("job selection: the jobs handed to a round (open_jobs)", ".open_jobs ("),
    ("job selection: validate_job (the jobs handed to a round)", "JobScheduler.validate_job"),
    ("rate limiter: a wake-up one timespan after each round", "reevalu"),
    ("starting jobs: prepare, print, submit to the pool", "JobScheduler.run "),
    ("finishing jobs: postprocess, metadata, DAG update", "JobScheduler._finish_jobs"),
    ("rest of the scheduling loop", "JobScheduler.schedule"),
    ("start-up: parse, DAG, plugins", ""),
)


# Mechanisms that run inside several of the parts above (a sample may count for several):
# what an upstream change would have to remove. (name, every marker the stack must hold,
# a marker it must not hold).
ACROSS = (
    ("asyncio.Runner.run for each step of each job (Workflow.async_run), its own cost", ("Workflow.async_run",), "Handle._run"),
    ("formatting the job's shell command (Job.shellcmd: for the log, again for the metadata)", ("Job.shellcmd",), None),
    ("job metadata and incomplete markers (persistence)", ("Persistence",), None),
    ("logging", ("Logger.",), None),
    ("a SIGINT handler swapped in and out for each step (signal.getsignal, signal.signal)", ("Runner.run", "signal.py"), None),
)


def _profile(ctx: Context, directory, n: int) -> tuple[dict[str, int], dict[str, int]]:
    """py-spy (--gil) on a run of ``n`` shell jobs: main-thread samples per part of Snakemake
    (PARTS, adding up to all), and per mechanism across parts (ACROSS)."""
    import shutil
    import subprocess
    import sys
    import tempfile

    if shutil.which("py-spy") is None:
        ctx.log("  B10 profile skipped: py-spy is not installed (pip install -e '.[bench]')")
        return {}, {}
    reset_workflow(directory)
    with tempfile.TemporaryDirectory() as scratch:
        raw = f"{scratch}/profile.txt"
        ctx.log(f"  B10 profile: py-spy on {n} shell jobs")
        subprocess.run(["py-spy", "record", "--gil", "--format", "raw", "--rate", "100", "--output", raw, "--",
                        sys.executable, "-m", "snakemake", "--profile", str(REPO / "profiles" / "local"), "--config", f"count={n}"],
                       cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=1800, check=True)
        shares: dict[str, int] = {}
        across = dict.fromkeys((name for name, _, _ in ACROSS), 0)
        with open(raw, encoding="utf-8") as handle:
            for line in handle:
                stack, _, count = line.rstrip().rpartition(" ")
                if not stack.startswith("_run_module_as_main"):
                    continue  # other threads: the job pool, our helpers
                part = next(name for name, marker in PARTS if marker in stack or not marker)
                shares[part] = shares.get(part, 0) + int(count)
                for name, needed, excluded in ACROSS:
                    if all(marker in stack for marker in needed) and not (excluded and excluded in stack):
                        across[name] += int(count)
    return shares, across


def run(ctx: Context) -> Section:
    section = Section("B10", "Wide fan-outs: 10,000 shell jobs, 10,000 vQPU jobs, 500 vs 5,000")
    big, small, mid = ctx.size((1000, 100, 500), (10_000, 500, 5_000))
    shell, vqpu = _workflow(ctx, "shell"), _workflow(ctx, "vqpu")
    ctx.log("  B10 warm-up (N=20 each, not measured)")
    _run(shell, 20, ctx.log)
    _run(vqpu, 20, ctx.log)
    walls: dict[str, float] = {}
    rss: dict[str, float] = {}
    for kind, directory, n in (("shell-small", shell, small), ("shell-mid", shell, mid),
                               ("shell-big", shell, big), ("vqpu-big", vqpu, big)):
        ctx.log(f"  B10 {kind}: {n} jobs")
        walls[kind], rss[kind] = _run(directory, n, ctx.log)
    for kind, label in (("shell-big", f"{big} shell jobs"), ("vqpu-big", f"{big} vQPU sampling jobs")):
        rate = big / walls[kind]
        section.add(Row(f"{label}: jobs/s end to end", Stats.of([rate]), unit="jobs/s",
                        target=f">= {TARGET_RATE:g} jobs/s", met=rate >= TARGET_RATE))
        section.add(Row(f"{label}: wall time", Stats.of([walls[kind]])))
        section.add(Row(f"{label}: peak RSS of snakemake", Stats.of([rss[kind]]), unit="MB"))
    scaling = walls["shell-mid"] / walls["shell-small"]
    section.add(Row(f"shell jobs: wall time {mid} vs {small}", Stats.of([walls["shell-mid"]]), Stats.of([walls["shell-small"]]),
                    base_name=f"{small} jobs", target=f"<= {TARGET_SCALING:g}x", met=scaling <= TARGET_SCALING))
    section.method = (
        "`snakemake --profile profiles/local` (executor quantum, scheduler quantum, 2 cores) from nothing each run "
        f"(outputs and `.snakemake` removed), one run per size after an unmeasured 20-job warm-up per workflow. "
        f"Shell: independent `touch` jobs at {small}, {mid} and {big}. vQPU: {big} jobs "
        "`qrun ghz5.qasm --shots 200 -o out/{i}.json` on the embedded vQPU, started and stopped inside the run. "
        "Rates are jobs / whole wall time, start-up included. Single runs: no min/max."
    )
    section.data.update(shell_rate=big / walls["shell-big"], vqpu_rate=big / walls["vqpu-big"], scaling=scaling)
    shares, across = _profile(ctx, shell, ctx.size(300, 3000))
    if shares:
        total = sum(shares.values())
        for part, samples in sorted(shares.items(), key=lambda kv: -kv[1]):
            section.add(Row(f"profile, {ctx.size(300, 3000)} shell jobs: {part}", Stats.of([100 * samples / total]), unit="%"))
        for name, samples in across.items():
            section.add(Row(f"profile, across parts: {name}", Stats.of([100 * samples / total]), unit="%"))
        section.data.update({f"profile_{k}": 100 * v / total for k, v in shares.items()})
        section.data.update({f"across_{k}": 100 * v / total for k, v in across.items()})
    for kind, label in (("shell-big", "shell"), ("vqpu-big", "vQPU")):
        rate = big / walls[kind]
        if rate < TARGET_RATE:
            text = f"**Target missed ({label}: {rate:.0f} < {TARGET_RATE:g} jobs/s).** See *Where the time goes* for the share of Snakemake's own per-job work."
            if kind == "vqpu-big":
                extra = 1000 * (walls["vqpu-big"] - walls["shell-big"]) / big
                text += (f" The same fan-out of `touch` jobs ran at {big / walls['shell-big']:.0f} jobs/s; each vQPU job took "
                         f"{extra:.1f} ms more: its simulation on the vQPU and the sender's work for it (the command parsed, "
                         "the request sent and awaited, the result file and the metrics record written, in a process "
                         "of its own), on the same 2 cores as Snakemake's main thread, which spends about as long on "
                         "each job as for a `touch` job. What would fix it: more cores, or fewer jobs per circuit "
                         "(several circuits as pubs of one `qrun` payload, as `workflows/sweep` does).")
            section.note(text)
    if scaling > TARGET_SCALING:
        section.note(f"**Target missed (scaling {scaling:.1f}x > {TARGET_SCALING:g}x).** Some per-job cost still grows "
                     "with the number of jobs: see *Where the time goes*.")
    return section
