"""Faults on the Slurm test cluster: a job cancelled from outside, slurmctld restarted, a
cpu node's slurmd killed, the vQPU's node killed. Each run ends as promised (fails with a
clear message, or completes), leaves nothing queued, and the cluster is restored after."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    CIRCUITS,
    CLUSTER,
    REPO,
    assert_nothing_left,
    command,
    jobs_of_rule,
    restore_cluster,
    sacct_jobs,
    slurm_env,
    slurm_nodes,
    snakemake,
    squeue_ids,
    submitted_jobs,
    write_workflow,
)

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

PROFILE = str(REPO / "profiles" / "slurm")

LONG_JOBS = r'''
rule all:
    input: expand("slow{i}.txt", i=range(3))

rule slow:
    output: "slow{i}.txt"
    shell: "sleep 8; hostname > {output}"
'''


def _start(workdir: Path, env: dict[str, str], *args: str) -> subprocess.Popen:
    """Snakemake under profiles/slurm, in the background."""
    return subprocess.Popen([command("snakemake"), "--profile", PROFILE, *args], cwd=workdir, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for(what: str, check, timeout: float = 120, interval: float = 0.2):  # noqa: ANN001, ANN202 - a predicate
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)
    return found


def _running_on(env: dict[str, str], name_prefix: str = "") -> dict[str, str]:
    """Running jobs -> their node (only jobs whose name starts with ``name_prefix``)."""
    out = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i %j %N"], capture_output=True, text=True, env=env, timeout=60).stdout
    return {job: node for job, name, node in (line.split() for line in out.splitlines()) if name.startswith(name_prefix)}


def _steps(env: dict[str, str]) -> list[str]:
    return subprocess.run(["squeue", "-h", "-s", "-o", "%i"], capture_output=True, text=True, env=env, timeout=60).stdout.split()


@pytest.fixture
def restored() -> Iterator[None]:
    """Whatever the test kills comes back afterwards, for the tests after it."""
    yield
    restore_cluster()


def test_a_slurm_job_cancelled_from_outside_fails_the_run_and_a_rerun_completes(tmp_path: Path, slurm_cluster: dict[str, str]) -> None:
    env = slurm_env(slurm_cluster)
    workdir = write_workflow(tmp_path, LONG_JOBS)
    process = _start(workdir, env)
    victim = next(iter(_wait_for("a running job", lambda: _running_on(env))))
    subprocess.run(["scancel", victim], check=True, env=env)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode != 0
    assert f"SLURM-job '{victim}' failed" in stderr and "CANCELLED" in stderr
    assert not set(squeue_ids(env)) & set(submitted_jobs(stderr)[0])
    rerun = snakemake(workdir, "--profile", PROFILE, env=env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert all((workdir / f"slow{i}.txt").exists() for i in range(3))


WITH_A_VQPU = r'''
rule all:
    input: expand("slow{i}.txt", i=range(2)), "sampled.json"

rule slow:
    output: "slow{i}.txt"
    shell: "sleep 8; hostname > {output}"

rule sample:
    input: "slow0.txt"
    output: "sampled.json"
    resources: vqpu=1
    shell: "qrun ghz5.qasm --shots 100 -o {output}"
'''


def test_slurmctld_restarted_mid_run_does_not_disturb_the_run(tmp_path: Path, slurm_cluster: dict[str, str]) -> None:
    env = slurm_env(slurm_cluster)
    workdir = write_workflow(tmp_path, WITH_A_VQPU, {"ghz5.qasm": (CIRCUITS / "ghz5.qasm").read_text()})
    process = _start(workdir, env)
    # Once the slow jobs run their commands (a job step each: a step being created during
    # the restart stalls for minutes in srun's retries, so the sampling job comes after
    # them) and while the vQPU job runs: it must outlive the restart and serve the sampling.
    _wait_for("the jobs' steps", lambda: len([s for s in _steps(env) if s.endswith(".0")]) >= 2)
    subprocess.run([str(CLUSTER), "restart-ctld"], check=True, capture_output=True, timeout=300)
    _, stderr = process.communicate(timeout=280)
    assert process.returncode == 0, stderr[-3000:]  # the run itself completes: no rerun needed
    assert "Error in rule" not in stderr
    assert all((workdir / f"slow{i}.txt").exists() for i in range(2)) and (workdir / "sampled.json").exists()
    assert len(submitted_jobs(stderr)[1]) == 1, "the vQPU job was taken for lost and started again"
    assert_nothing_left(env)


TWO_JOBS = r'''
rule all:
    input: expand("host{i}.txt", i=range(2))

rule host:
    output: "host{i}.txt"
    shell: "sleep 2; hostname > {output}"
'''


@pytest.mark.slurm(nodes=3)
def test_a_cpu_node_losing_its_slurmd_fails_its_jobs_and_retries_finish_on_the_other(
    tmp_path: Path, slurm_cluster: dict[str, str], restored: None
) -> None:
    env = slurm_env(slurm_cluster)
    nodes = slurm_nodes(env)
    workdir = write_workflow(tmp_path, TWO_JOBS)
    process = _start(workdir, env, "--retries", "1")
    # At once, while the job's own Snakemake still starts (before srun launches its step).
    victim, node = next(iter(_wait_for("a job on a cpu node", lambda: _running_on(env)).items()))
    subprocess.run([str(CLUSTER), "kill-slurmd", node], check=True, capture_output=True, timeout=60)
    _, stderr = process.communicate(timeout=280)
    assert process.returncode == 0, stderr[-3000:]
    assert f"SLURM-job '{victim}' failed" in stderr, stderr[-3000:]
    jobs = sacct_jobs(env)
    assert jobs[victim].state == "FAILED" and jobs[victim].nodes == node
    done = [job for job in jobs_of_rule(stderr, "host") if jobs[job].state == "COMPLETED"]
    assert len(done) == 2 and all(jobs[job].nodes in set(nodes.cpu) - {node} for job in done), [jobs[j] for j in done]
    assert {(workdir / f"host{i}.txt").read_text().strip() for i in range(2)} == set(nodes.cpu) - {node}
    assert_nothing_left(env)


VQPU_ON_CPU = """resources:
  - name: sim
    type: vqpu
    environment: {QRMI_VQPU_ENGINE: aer, QRMI_VQPU_LANES: "1"}
    slurm: {partition: cpu}
"""
# The vQPU runs on a cpu node; everything else on the gpu node, so that only the vQPU
# dies with its node. 'gate' holds sample1 back until the test has killed that node.
BEFORE_AND_AFTER = r'''
rule all:
    input: "counts0.json", "counts1.json"

rule gate:
    output: "gate.txt"
    resources: slurm_partition="gpu"
    shell: "while [ ! -e open ]; do sleep 0.2; done; touch {output}"

rule sample0:
    output: "counts0.json"
    resources: vqpu=1, slurm_partition="gpu"
    shell: "qrun ghz5.qasm --shots 100 -o {output}"

rule sample1:
    input: "gate.txt"
    output: "counts1.json"
    resources: vqpu=1, slurm_partition="gpu"
    shell: "qrun ghz5.qasm --shots 100 -o {output}"
'''


@pytest.mark.slurm(nodes=3)
def test_the_jobs_after_the_vqpus_node_died_get_a_new_vqpu_on_another_node(
    tmp_path: Path, slurm_cluster: dict[str, str], restored: None
) -> None:
    env = slurm_env(slurm_cluster)
    nodes = slurm_nodes(env)
    workdir = write_workflow(tmp_path, BEFORE_AND_AFTER, {"ghz5.qasm": (CIRCUITS / "ghz5.qasm").read_text(), "qrmi_config.yaml": VQPU_ON_CPU})
    process = _start(workdir, env)
    _wait_for("the first result", (workdir / "counts0.json").exists, timeout=180)
    first, node = next(iter(_running_on(env, "vqpu-").items()))
    subprocess.run([str(CLUSTER), "kill-node", node], check=True, capture_output=True, timeout=60)
    # Until Slurm declares the node DOWN (14-20 s here) its vQPU job looks alive: jobs started
    # then fail to connect (with a clear line); the ones after it must get a new vQPU.
    _wait_for(f"{node} to be down", lambda: "down" in subprocess.run(
        ["sinfo", "-h", "-N", "-n", node, "-o", "%T"], capture_output=True, text=True, env=env).stdout, timeout=90, interval=0.5)
    (workdir / "open").touch()
    _, stderr = process.communicate(timeout=280)
    assert process.returncode == 0, stderr[-3000:]
    _, vqpus = submitted_jobs(stderr)
    jobs = sacct_jobs(env)
    assert vqpus[0] == first and jobs[first].state == "NODE_FAIL", jobs.get(first)
    assert len(vqpus) == 2 and jobs[vqpus[1]].nodes in set(nodes.cpu) - {node}, [jobs[v] for v in vqpus]
    assert f"vQPU 'sim' (Slurm job {first})" in stderr and "starting a new one" in stderr
    counts = json.loads((workdir / "counts1.json").read_text())["pubs"][0]["registers"]["meas"]["counts"]
    assert set(counts) <= {"00000", "11111"} and sum(counts.values()) == 100
    assert_nothing_left(env)
