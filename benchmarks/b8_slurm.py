"""B8 Slurm on 3 nodes: 20 classical jobs plus a sampling stage, ``--executor quantum``
(Slurm mode, the stage through a vQPU job on the gpu node) vs plain ``--executor slurm``
(the same stage simulated in each job: what a workflow does without this plugin).

Same Snakefile on both sides: COUNT independent ``touch`` jobs, then SAMPLES jobs that each
sample GHZ-5 (1024 shots) after one of them, ``qrun vqpu ...`` (ours: the warm vQPU, a
Slurm job on the gpu partition started when the run starts) or ``qrun aer ...`` (in-process
Aer, imported by every job). Same default resources and status settings on both sides
(first check after 1 s, then 2 s, through sacct), ``--jobs`` = everything at once,
alternating runs. Needs the 3-node test cluster (tests/slurm/cluster.sh up --nodes 3): as
root it is brought up (installing Slurm on a fresh machine) if no cluster is up, and stopped
again at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from .common import (
    CIRCUITS,
    REPO,
    Context,
    Row,
    Section,
    Stats,
    bench_env,
    command,
    count_files,
    reset_workflow,
    run_process,
)

TARGET = 1.1
CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
SLURM_CONF = os.environ.get("SLURM_TEST_DIR", "/tmp/snakemake-quantum-slurm") + "/slurm.conf"
RESOURCES = ["--default-resources", "slurm_account=quantum", "slurm_partition=cpu", "runtime=10", "mem_mb=500"]
SNAKEFILE = '''\
COUNT, SAMPLES = int(config["count"]), int(config["samples"])

rule all:
    input: expand("out/{i}.txt", i=range(COUNT)), expand("counts/{j}.json", j=range(SAMPLES))

rule touch:
    output: "out/{i}.txt"
    shell: "touch {output}"

rule sample:
    input: "out/{j}.txt"
    output: "counts/{j}.json"
    resources: vqpu=1  # only --executor quantum reads it
    shell: "qrun {config[resource]} ghz5.qasm --shots 1024 -o {output}"
'''
CONFIG = """resources:
  - name: vqpu
    type: vqpu
    environment: {QRMI_VQPU_ENGINE: aer, QRMI_VQPU_LANES: "2", QRMI_AER_SEED: "1234"}
    slurm: {partition: gpu}
  - name: aer
    type: qiskit-aer
    environment: {QRMI_AER_SEED: "1234"}
"""


def _slurm(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, env={**os.environ, "SLURM_CONF": SLURM_CONF})


def cluster_reason() -> str:
    """Why the 3-node cluster cannot be used ('' if it can)."""
    if _slurm(str(CLUSTER), "status").returncode != 0:
        return "the Slurm test cluster is not up (tests/slurm/cluster.sh status failed)"
    partitions: dict[str, set[str]] = {}
    for line in _slurm("sinfo", "-h", "-N", "-o", "%N %P").stdout.splitlines():
        node, partition = line.split()
        partitions.setdefault(node, set()).add(partition.rstrip("*"))
    cpu = [n for n, p in partitions.items() if "gpu" not in p]
    if len(cpu) < 2 or len(partitions) == len(cpu):
        return f"needs 2 cpu nodes and a gpu node, the cluster up has {sorted(partitions)} (cluster.sh down; up --nodes 3)"
    return ""


def run(ctx: Context) -> Section:
    section = Section("B8", "Slurm, 3 nodes: 20 classical jobs + a sampling stage, quantum executor (vQPU job) vs plain slurm executor")
    root = os.geteuid() == 0
    if shutil.which("sinfo") is None and not root:  # as root, cluster.sh up installs Slurm
        section.skipped = "skipped: the Slurm client is not installed (run as root to install it)"
        return section
    started = False
    if root and (shutil.which("sinfo") is None or _slurm(str(CLUSTER), "status").returncode != 0):
        ctx.log("  B8: bringing up the 3-node test cluster")
        up = _slurm(str(CLUSTER), "up", "--nodes", "3", timeout=900)  # a first start installs Slurm
        started = up.returncode == 0
        if not started:
            section.skipped = f"skipped: cluster.sh up --nodes 3 failed: {(up.stderr.strip().splitlines() or ['?'])[-1]}"
            return section
    try:
        reason = cluster_reason()
        if reason:
            section.skipped = f"skipped: {reason}"
            return section
        return _measure(ctx, section)
    finally:
        if started:
            _slurm(str(CLUSTER), "down")


def _measure(ctx: Context, section: Section) -> Section:
    count, samples = 20, ctx.size(2, 4)
    rounds = ctx.size(1, 2)  # the second round only within the suite's time budget
    directory = ctx.workdir / "b8"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Snakefile").write_text(SNAKEFILE)
    (directory / "qrmi_config.yaml").write_text(CONFIG)
    (directory / "ghz5.qasm").write_text((CIRCUITS / "ghz5.qasm").read_text())
    env = bench_env(SLURM_CONF=SLURM_CONF)
    common = [command("snakemake"), "--jobs", str(count + samples), *RESOURCES, "--latency-wait", "10",
              "--config", f"count={count}", f"samples={samples}"]
    sides = {
        "quantum": [*common, "resource=vqpu", "--executor", "quantum", "--quantum-classical", "slurm",
                    "--quantum-slurm-init-seconds", "1", "--quantum-slurm-status-interval", "2",
                    "--quantum-slurm-status-command", "sacct"],
        "slurm": [*common, "resource=aer", "--executor", "slurm", "--slurm-init-seconds-before-status-checks", "1",
                  "--seconds-between-status-checks", "2", "--slurm-status-command", "sacct"],
    }
    times: dict[str, list[float]] = {"quantum": [], "slurm": []}
    for r in range(rounds):
        if r and not ctx.optional(1.2 * (times["quantum"][0] + times["slurm"][0]), f"B8 round {r + 1}"):
            break
        for side in (["quantum", "slurm"] if r % 2 == 0 else ["slurm", "quantum"]):
            ctx.log(f"  B8 {side} run {r + 1}")
            reset_workflow(directory)
            for stale in (directory / "counts").glob("*"):
                stale.unlink()
            result = run_process(sides[side], cwd=directory, env=env, timeout=600, log=ctx.workdir / f"b8-{side}-{r}.log")
            done = count_files(directory / "out")(), count_files(directory / "counts")()
            if done != (count, samples):
                raise RuntimeError(f"{side}: {done[0]} of {count} classical outputs, {done[1]} of {samples} samples")
            times[side].append(result.seconds)
    section.method = (
        f"{count} independent `touch` jobs, then {samples} jobs that each sample GHZ-5 (1024 shots) after one of "
        "them, on the 3-node test cluster (2 cpu nodes, 1 gpu node, each a host with its own address, all on the "
        f"same 2 cores). Ours: `--executor quantum --quantum-classical slurm`, the samples through a warm vQPU "
        "(a Slurm job on the gpu partition, submitted when the run starts). Baseline: `--executor slurm`, the "
        "same jobs with `qrun aer` (Aer in each job's process). `--jobs "
        f"{count + samples}`, default resources `slurm_account=quantum slurm_partition=cpu runtime=10 mem_mb=500`, "
        "status through sacct, first check after 1 s and then after 2 s on both sides; while no job finishes, the "
        "slurm plugin adds 10 s to the wait per check, ours doubles it (up to 60 s). "
        f"{len(times['slurm'])} run(s) per side, alternating, each from nothing."
    )
    q, s = Stats.of(times["quantum"]), Stats.of(times["slurm"])
    row = section.add(Row(f"{count} jobs + {samples} samples: wall time", q, s, base_name="--executor slurm", target=f"<= {TARGET:g}x"))
    row.met = row.ratio is not None and row.ratio <= TARGET
    section.note(f"Median {q.median:.1f} s vs {s.median:.1f} s. Both sides submit the classical jobs through the same "
                 "slurm plugin code; ours adds the vQPU job (it warms up while the classical jobs run), saves "
                 "each sampling job its simulator import, and sees a finished job sooner when it ends just after a "
                 "status check.")
    if row.met is False:
        section.note(f"**Target missed ({row.ratio:.2f}x > {TARGET:g}x).** With only {len(times['slurm'])} run(s) per side "
                     "on a shared 2-core machine, part of this may be noise (when a status check falls decides when a "
                     "stage is seen finished); a persistent gap would point at the vQPU job's start (Slurm scheduling "
                     "plus the simulator's import) on the path of the sampling stage.")
    return section
