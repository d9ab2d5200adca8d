"""Slurm mode on the real test cluster (tests/slurm/cluster.sh), on any number of nodes.

A hybrid workflow across nodes (vQPU job, GPU stage, everything ended) is in
test_slurm_nodes.py; faults are in test_slurm_faults.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
from conftest import (
    CIRCUITS,
    CLUSTER,
    REPO,
    command,
    sacct_jobs,
    slurm_env,
    slurm_nodes,
    snakemake,
    squeue_ids,
    submitted_jobs,
    write_workflow,
)
from snakemake.common.tests import TestWorkflowsLocalStorageBase
from snakemake.settings.types import ResourceSettings

from snakemake_executor_plugin_quantum import ExecutorSettings

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

PROFILE = str(REPO / "profiles" / "slurm")


HYBRID = r'''
rule all:
    input: "post.txt"

rule prepare:
    output: "circ{i}.qasm"
    shell: "cp ghz5.qasm {output}"

rule sample:
    input: "circ{i}.qasm"
    output: "counts{i}.json"
    resources: vqpu=1
    shell: "qrun {input} --shots 200 -o {output}"

rule post:
    input: expand("counts{i}.json", i=range(2))
    output: "post.txt"
    resources: gpu=1, slurm_partition="gpu"
    shell: "cat {input} | python -c 'import json,sys; print(sum(1 for _ in sys.stdin))' > {output}"
'''


QPU_CONFIG = """resources:
  - name: qpu_sim
    type: qiskit-aer
    slurm: {gres: qpu}
    environment:
      QRMI_AER_SEED: "3"
      QRMI_SECRET_PROBE: "s3cr3t-probe-value"
"""
THREE_QPU = r'''
rule all:
    input: expand("q{i}.txt", i=range(3))

rule qpu:
    output: "q{i}.txt"
    resources: qpu=1, qpu_name="qpu_sim", slurm_partition="gpu"  # the node with the qpu GRES
    shell: "sleep 6; env | grep -E '^(QRMI_JOB|qpu_sim_QRMI_JOB_ACQUISITION_TOKEN|qpu_sim_QRMI_SECRET)' | sort > {output}"
'''


def test_qpu_jobs_never_exceed_the_gres_and_see_the_qrmi_environment(tmp_path: Path, slurm_cluster: dict[str, str]) -> None:
    workdir = write_workflow(tmp_path, THREE_QPU, {"qrmi_config.yaml": QPU_CONFIG})
    result = snakemake(workdir, "--profile", PROFILE, env=slurm_env(slurm_cluster))
    assert result.returncode == 0, result.stderr[-4000:]
    envs = [dict(line.split("=", 1) for line in (workdir / f"q{i}.txt").read_text().splitlines()) for i in range(3)]
    for env in envs:
        assert env["QRMI_JOB_QPU_RESOURCES"] == "qpu_sim" and env["QRMI_JOB_QPU_TYPES"] == "qiskit-aer"
        assert env["qpu_sim_QRMI_SECRET_PROBE"] == "s3cr3t-probe-value"
    assert len({env["qpu_sim_QRMI_JOB_ACQUISITION_TOKEN"] for env in envs}) == 1, "one acquisition per run"
    ids, _ = submitted_jobs(result.stderr)
    jobs = sacct_jobs(slurm_env(slurm_cluster))
    rows = [jobs[job] for job in ids]
    assert len(rows) == 3 and all("gres/qpu=1" in r.tres for r in rows)
    spans = [(datetime.fromisoformat(r.start), datetime.fromisoformat(r.end)) for r in rows]
    for moment, _ in spans:
        assert sum(1 for start, end in spans if start <= moment < end) <= 2, "more than two qpu jobs ran at once"
    assert any(sum(1 for s, e in spans if s <= m < e) == 2 for m, _ in spans), "two jobs should share the two qpus"
    # The secret travelled in the export file, never on a command line.
    for job in ids:
        shown = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, env=slurm_env(slurm_cluster)).stdout
        assert "s3cr3t-probe-value" not in shown
    assert "s3cr3t-probe-value" not in result.stderr + result.stdout


SPANK = r'''
rule all:
    input: "spank.json", "spank_env.txt"

rule run:
    output: "spank.json"
    resources: qpu=1, qpu_name="aer_sim"
    shell: "qrun ghz5.qasm --shots 100 -o {output}"

rule env:
    output: "spank_env.txt"
    resources: qpu=1, qpu_name="aer_sim"
    shell: "env | grep -E '^QRMI_JOB_QPU' | sort > {output}"
'''
SPANK_CONFIG = """resources:
  - name: aer_sim
    type: qiskit-aer
"""


def test_spank_mode_passes_qpu_and_the_plugin_sets_the_environment(tmp_path: Path, slurm_cluster: dict[str, str]) -> None:
    workdir = write_workflow(tmp_path, SPANK, {"ghz5.qasm": (CIRCUITS / "ghz5.qasm").read_text(), "qrmi_config.yaml": SPANK_CONFIG})
    result = snakemake(workdir, "--profile", PROFILE, "--quantum-slurm-qpu-mode", "spank", env=slurm_env(slurm_cluster))
    assert result.returncode == 0, result.stderr[-4000:]
    env = dict(line.split("=", 1) for line in (workdir / "spank_env.txt").read_text().splitlines())
    # Set by the SPANK plugin in the batch step and inherited by the rule's srun step. (The
    # slurm jobstep drops SLURM_* variables before srun, so the legacy names do not arrive.)
    assert env["QRMI_JOB_QPU_RESOURCES"] == "aer_sim" and env["QRMI_JOB_QPU_TYPES"] == "qiskit-aer"
    counts = json.loads((workdir / "spank.json").read_text())["pubs"][0]["registers"]["meas"]["counts"]
    assert set(counts) <= {"00000", "11111"}


FAILING = r'''
rule all:
    input: "never.txt"

rule broken:
    output: "never.txt"
    shell: "echo 'the job says why' >&2; exit 3"
'''


def test_a_failing_slurm_job_fails_the_run_with_its_error_and_log(tmp_path: Path, slurm_cluster: dict[str, str]) -> None:
    workdir = write_workflow(tmp_path, FAILING)
    result = snakemake(workdir, "--profile", PROFILE, env=slurm_env(slurm_cluster))
    assert result.returncode != 0
    assert "Error in rule broken" in result.stderr and "failed, SLURM status is: 'FAILED'" in result.stderr
    logs = re.findall(r"log: (\S+?/slurm_logs/\S+?\.log)", result.stderr)
    assert logs and "the job says why" in Path(logs[0]).read_text()


LONG = r'''
rule all:
    input: expand("long{i}.txt", i=range(3)), "sampled.json"

rule long:
    output: "long{i}.txt"
    shell: "sleep 300; touch {output}"

rule sample:
    output: "sampled.json"
    resources: vqpu=1
    shell: "sleep 300; qrun ghz5.qasm -o {output}"
'''


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_cancels_every_slurm_job_of_the_run(tmp_path: Path, slurm_cluster: dict[str, str], sig: signal.Signals) -> None:
    workdir = write_workflow(tmp_path, LONG, {"ghz5.qasm": (CIRCUITS / "ghz5.qasm").read_text()})
    before = set(squeue_ids(slurm_env(slurm_cluster)))
    process = subprocess.Popen(
        [command("snakemake"), "--profile", PROFILE], cwd=workdir, env=slurm_env(slurm_cluster),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 120
    while len(set(squeue_ids(slurm_env(slurm_cluster))) - before) < 3:  # jobs and the vQPU submitted
        assert time.monotonic() < deadline, "jobs were never submitted"
        time.sleep(0.5)
    process.send_signal(sig)
    process.communicate(timeout=120)
    deadline = time.monotonic() + 30
    while set(squeue_ids(slurm_env(slurm_cluster))) - before:
        assert time.monotonic() < deadline, f"still queued: {set(squeue_ids(slurm_env(slurm_cluster))) - before}"
        time.sleep(0.5)
    assert not (workdir / ".snakemake" / "quantum" / "vqpu" / "vqpu.json").exists()


def test_without_slurmdbd_status_falls_back_to_squeue(tmp_path: Path, slurm_cluster: dict[str, str]) -> None:
    """Last in the file: it restarts the cluster without accounting, then restores it."""
    env = {**os.environ, "SLURM_TEST_ACCOUNTING": "none"}
    nodes = slurm_nodes(slurm_cluster)
    up = [str(CLUSTER), "up", "--nodes", str(len(nodes.cpu + nodes.gpu))]
    subprocess.run([str(CLUSTER), "down"], check=True, capture_output=True, timeout=300)
    try:
        subprocess.run(up, check=True, capture_output=True, timeout=600, env=env)
        workdir = write_workflow(tmp_path, HYBRID, {"ghz5.qasm": (CIRCUITS / "ghz5.qasm").read_text()})
        result = snakemake(workdir, "--profile", PROFILE, env=slurm_env(slurm_cluster), timeout=600)
        assert result.returncode == 0, result.stderr[-4000:]
        assert "status through squeue" in result.stderr
        assert (workdir / "post.txt").exists()
    finally:
        subprocess.run([str(CLUSTER), "down"], capture_output=True, timeout=300)
        subprocess.run(up, check=True, capture_output=True, timeout=600)


class TestWorkflowsOnSlurm(TestWorkflowsLocalStorageBase):
    """Snakemake's executor-plugin harness (simple and groups workflows) in Slurm mode."""

    __test__ = True

    @pytest.fixture(autouse=True)
    def _on_the_cluster(self, slurm_cluster: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
        for key, value in slurm_cluster.items():
            monkeypatch.setenv(key, value)
        self.get_executor_settings()  # the harness reads common_settings before asking for them

    def get_executor(self) -> str:
        return "quantum"

    def get_executor_settings(self) -> ExecutorSettings:
        return ExecutorSettings(classical="slurm", slurm_init_seconds=1, slurm_status_interval=1)

    def get_resource_settings(self) -> ResourceSettings:
        return ResourceSettings(default_resources={"slurm_account": "quantum", "runtime": 10, "mem_mb": 500})
