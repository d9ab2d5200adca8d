"""B9 run: jobs: trivial ones vs shell jobs, and EstimatorV2 in run: vs qrun as shell jobs.

- Trivial: N `run:` jobs (each writes a small file in Python) vs N `shell:` `touch` jobs,
  both with `--profile profiles/local` (`--executor quantum`). Snakemake's local executor
  spawns a new Snakemake per `run:` job; ours forks it from a warm job parent.
- EstimatorV2: N `run:` jobs, each builds a Bell circuit and estimates <ZZ> with
  `EstimatorV2` on a vQPU (`resources: vqpu=1`), vs the same N estimations as
  `shell: "qrun bell.qasm --program estimator --observables ZZ -o ..."` jobs (which the
  executor sends to the vQPU itself). Both start their vQPU inside the measured run.
- Context: a few `run:` jobs the old way (`--quantum-spawn-run-jobs`: a Snakemake per job).
"""

from __future__ import annotations

from .common import (
    REPO,
    TOUCH_BODY,
    Context,
    Measured,
    Row,
    Section,
    Stats,
    command,
    count_files,
    fanout_workflow,
    reset_workflow,
    run_process,
)

TARGET = 1.5
TRIVIAL = {
    "run": '    run:\n        with open(output[0], "w") as f:\n            f.write(wildcards.i)\n',
    "shell": TOUCH_BODY,
}
ESTIMATE = {
    "run": (
        "    resources: vqpu=1\n"
        "    run:\n"
        "        import json\n"
        "        from qiskit import QuantumCircuit\n"
        "        from qiskit.quantum_info import SparsePauliOp\n"
        "        from snakemake_executor_plugin_quantum.primitives import EstimatorV2\n"
        "        qc = QuantumCircuit(2)\n"
        "        qc.h(0)\n"
        "        qc.cx(0, 1)\n"
        "        evs = EstimatorV2().run([(qc, SparsePauliOp('ZZ'))]).result()[0].data.evs\n"
        "        json.dump(float(evs), open(output[0], 'w'))\n"
    ),
    "shell": (
        "    resources: vqpu=1\n"
        '    shell: "qrun bell.qasm --program estimator --observables ZZ -o {output}"\n'
    ),
}
BELL = 'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[2] q;\nh q[0];\ncx q[0], q[1];\n'


def _workflow(ctx: Context, name: str, body: str):
    directory = fanout_workflow(ctx.workdir / f"b9-{name}", body)
    (directory / "bell.qasm").write_text(BELL)
    return directory


def _run(directory, n: int, extra: tuple[str, ...] = ()) -> Measured:
    reset_workflow(directory)
    result = run_process([command("snakemake"), "--profile", str(REPO / "profiles" / "local"), *extra, "--config", f"count={n}"],
                         cwd=directory, timeout=1200, outputs=directory / "out")
    done = count_files(directory / "out")()
    if done != n:
        raise RuntimeError(f"{directory.name}: {done} of {n} outputs")
    return result


def run(ctx: Context) -> Section:
    section = Section("B9", "run: jobs without a Snakemake per job: trivial and EstimatorV2")
    trivial_n, estimate_n, spawn_n = ctx.size((20, 40, 4), (100, 200, 10))
    rounds = ctx.size(1, 3)
    directories = {key: _workflow(ctx, key, body) for key, body in
                   {"trivial-run": TRIVIAL["run"], "trivial-shell": TRIVIAL["shell"],
                    "estimate-run": ESTIMATE["run"], "estimate-shell": ESTIMATE["shell"]}.items()}
    # key -> (workflow, extra arguments); context: the same run: jobs in threads (Snakemake's own option)
    sides = {key: (directory, ()) for key, directory in directories.items()}
    sides["estimate-threads"] = (directories["estimate-run"], ("--force-use-threads",))
    ctx.log("  B9 warm-up (N=4 each, not measured)")
    for directory, extra in sides.values():
        _run(directory, 4, extra)
    times: dict[str, list[float]] = {key: [] for key in sides}
    cpu: dict[str, list[tuple[float, float]]] = {key: [] for key in sides}  # (user, system) seconds per job
    for r in range(rounds):
        if r and not ctx.optional(1.2 * sum(t[0] for t in times.values()), f"B9 round {r + 1}"):
            break
        order = list(sides) if r % 2 == 0 else list(reversed(sides))
        for key in order:
            n = trivial_n if key.startswith("trivial") else estimate_n
            ctx.log(f"  B9 {key} N={n} run {r + 1}")
            directory, extra = sides[key]
            measured = _run(directory, n, extra)
            times[key].append(measured.seconds)
            cpu[key].append((measured.user_seconds / n, measured.system_seconds / n))
    ctx.log(f"  B9 context: {spawn_n} run: jobs with --quantum-spawn-run-jobs")
    spawned = _run(directories["trivial-run"], spawn_n, ("--quantum-spawn-run-jobs",)).seconds
    trivial = section.add(Row(f"{trivial_n} trivial jobs: run: vs shell:", Stats.of(times["trivial-run"]),
                              Stats.of(times["trivial-shell"]), base_name="shell: touch", target=f"<= {TARGET:g}x"))
    trivial.met = trivial.ratio is not None and trivial.ratio <= TARGET
    estimate = section.add(Row(f"{estimate_n} estimations: EstimatorV2 in run: vs qrun shell:", Stats.of(times["estimate-run"]),
                               Stats.of(times["estimate-shell"]), base_name="shell: qrun", target=f"<= {TARGET:g}x"))
    estimate.met = estimate.ratio is not None and estimate.ratio <= TARGET
    threads = section.add(Row(f"{estimate_n} estimations: run: with --force-use-threads vs qrun shell:",
                              Stats.of(times["estimate-threads"]), Stats.of(times["estimate-shell"]), base_name="shell: qrun"))
    per_spawned = spawned / spawn_n
    per_forked = Stats.of(times["trivial-run"]).median / trivial_n
    section.add(Row(f"wall time per run: job, {spawn_n} spawned (--quantum-spawn-run-jobs) vs {trivial_n} forked",
                    Stats.of([per_forked]), Stats.of([per_spawned]), base_name="spawned"))
    for kind, index in (("user", 0), ("kernel", 1)):
        section.add(Row(f"{kind} CPU per estimation (all processes): run: vs qrun shell:",
                        Stats.of([c[index] for c in cpu["estimate-run"]]), Stats.of([c[index] for c in cpu["estimate-shell"]]),
                        base_name="shell: qrun"))
    section.method = (
        f"Each side from nothing (outputs and `.snakemake` removed), `snakemake --profile profiles/local` (2 cores), "
        f"{len(times['trivial-run'])} round(s), sides in alternating order, after one unmeasured 4-job warm-up each. "
        f"Trivial: {trivial_n} `run:` jobs that write a file vs {trivial_n} `touch` shell jobs. EstimatorV2: "
        f"{estimate_n} `run:` jobs that build a Bell circuit and estimate <ZZ> with our `EstimatorV2` on the "
        f"embedded vQPU vs {estimate_n} `qrun bell.qasm --program estimator --observables ZZ` shell jobs on the "
        "same vQPU (sent by the executor itself); each run starts and stops its vQPU. Context: "
        f"{spawn_n} trivial `run:` jobs with `--quantum-spawn-run-jobs` (Snakemake's own way: a new "
        "`python -m snakemake` per job), and the EstimatorV2 `run:` jobs with Snakemake's `--force-use-threads` "
        "(each in a thread of the `snakemake` process: no process per job, and no process's isolation), "
        "in the same rounds."
    )
    section.note(
        f"A spawned `run:` job costs {per_spawned:.2f} s of wall time here; a forked one {per_forked * 1e3:.0f} ms "
        f"({per_spawned / per_forked:.0f}x less). The job parent holds the parsed workflow and, for jobs with "
        "quantum resources, qiskit and the primitives; each job is a fork of it running Snakemake's `run_wrapper`."
    )
    kernel = {key: Stats.of([c[1] for c in cpu[key]]).median for key in ("estimate-run", "estimate-shell")}
    user = {key: Stats.of([c[0] for c in cpu[key]]).median for key in ("estimate-run", "estimate-shell")}
    section.note(
        f"CPU per estimation, all processes of the run together (Snakemake, job parent and its children, vQPU): "
        f"`run:` {user['estimate-run'] * 1e3:.0f} ms user + {kernel['estimate-run'] * 1e3:.0f} ms kernel, `qrun` shell "
        f"{user['estimate-shell'] * 1e3:.0f} ms user + {kernel['estimate-shell'] * 1e3:.0f} ms kernel. The kernel time "
        "of a `run:` job is mostly its process: forking the job parent (Snakemake, the workflow and qiskit in memory) "
        "and tearing the copy down again; the job parent forks spare children ahead and each reports its status "
        "before it exits, so this is off each job's path, but on 2 busy cores it is still CPU the jobs share."
    )
    for row in (trivial, estimate):
        if row.met is False:
            section.note(f"**Target missed ({row.metric.rstrip(':')}: {row.ratio:.2f}x > {TARGET:g}x).** A forked job pays "
                         "for its process (the kernel time above) and builds its payload from a `QuantumCircuit` in "
                         "Python; a plain `qrun` job is a request the run's sender process makes for it, no process of its own.")
    if estimate.met is False and threads.ratio is not None:
        section.note(f"In threads (`--force-use-threads`, Snakemake's own option) the same `run:` jobs take {threads.ratio:.2f}x "
                     "the `qrun` shell jobs: the process per job is the difference. They then share the `snakemake` "
                     "process, its modules and globals, so the default stays a process per job.")
    section.data.update(trivial_ratio=trivial.ratio or 0, estimate_ratio=estimate.ratio or 0, spawned=per_spawned,
                        forked=per_forked)
    return section
