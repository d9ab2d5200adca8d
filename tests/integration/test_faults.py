"""Fault injection: each fault ends with a clear error, nothing orphaned, no partial
output, and a rerun that completes. (kill -9 of a vQPU, SIGINT/SIGTERM to Snakemake and
SIGTERM to qrun are in test_sidecars.py, test_executor.py and test_qrun.py.)"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    CIRCUITS,
    CLUSTER,
    REPO,
    clean_env,
    command,
    qrun,
    quantum_processes,
    snakemake,
    start_service,
    stop_service,
    write_workflow,
)

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def full_filesystem(path: Path, size: str = "12k") -> Iterator[Path]:
    """A real filesystem with almost no room (tmpfs; needs root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs needs root")
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


def test_enospc_while_writing_a_result_fails_cleanly_and_leaves_nothing(tmp_path: Path, aer_vqpu) -> None:
    wide = 'OPENQASM 3.0; include "stdgates.inc"; qubit[12] q; bit[12] c; ' + " ".join(f"h q[{i}];" for i in range(12)) + " c = measure q;"
    circuit = tmp_path / "wide.qasm"
    circuit.write_text(wide)
    with full_filesystem(tmp_path / "full") as full:
        out = full / "result.json"
        result = qrun(str(circuit), "--shots", "20000", "-o", str(out), env=aer_vqpu.job_env())
        assert result.returncode != 0
        assert "cannot write" in result.stderr and "No space left on device" in result.stderr
        assert result.stderr.strip().count("\n") == 0
        assert list(full.iterdir()) == [], "no partial output and no temp file"
    rerun = qrun(str(circuit), "--shots", "20000", "-o", str(tmp_path / "result.json"), env=aer_vqpu.job_env())
    assert rerun.returncode == 0


IBM_CONFIG = """resources:
  - name: heron
    type: ibm-quantum-system
    environment:
      QRMI_IBM_QS_ENDPOINT: "{url}"
      QRMI_IBM_QS_IAM_ENDPOINT: "{url}"
      QRMI_IBM_QS_IAM_APIKEY: "not-a-real-key"
      QRMI_IBM_QS_SERVICE_CRN: "crn:v1:test"
      QRMI_IBM_QS_AWS_ACCESS_KEY_ID: "a"
      QRMI_IBM_QS_AWS_SECRET_ACCESS_KEY: "b"
      QRMI_IBM_QS_S3_ENDPOINT: "{url}"
      QRMI_IBM_QS_S3_BUCKET: "bucket"
      QRMI_IBM_QS_S3_REGION: "region"
"""
ON_QPU = r'''
rule all:
    input: "first.txt", "qpu.json"

rule first:
    output: "first.txt"
    shell: "touch {output}"

rule on_qpu:
    input: "first.txt"
    output: "qpu.json"
    resources: qpu=1, qpu_name="heron"
    shell: "qrun ghz5.qasm -o {output}"
'''


FAKE_CONFIG = """resources:
  - name: device
    type: python:fakes.fake_qpu:FakeQPU
    environment:
      QRMI_FAKE_ACQUIRE: {mode}
"""
ON_DEVICE = ON_QPU.replace('qpu_name="heron"', 'qpu_name="device"')


@pytest.mark.parametrize(("mode", "message"), [("fail", "rule on_qpu: device: acquire refused: the device is in maintenance"),
                                               ("hang", "rule on_qpu: acquiring 'device' did not finish within 4 s")])
def test_a_qpu_whose_acquire_fails_or_hangs_fails_its_job_cleanly(tmp_path: Path, mode: str, message: str) -> None:
    workdir = write_workflow(tmp_path, ON_DEVICE, {"ghz5.qasm": "", "qrmi_config.yaml": FAKE_CONFIG.format(mode=mode)})
    env = clean_env(PYTHONPATH=str(REPO / "tests"))
    started = time.monotonic()
    result = snakemake(workdir, "--executor", "quantum", "--cores", "2", "--quantum-acquire-timeout", "4", env=env, timeout=300)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-2000:]
    assert (workdir / "first.txt").exists() and not (workdir / "qpu.json").exists()
    assert time.monotonic() - started < 60


def test_a_qpu_endpoint_that_refuses_fails_the_job_in_one_line(tmp_path: Path) -> None:
    pytest.importorskip("qrmi")
    workdir = write_workflow(tmp_path, ON_QPU, {"ghz5.qasm": (CIRCUITS / "ghz5.qasm").read_text(),
                                                 "qrmi_config.yaml": IBM_CONFIG.format(url="http://127.0.0.1:1")})
    result = snakemake(workdir, "--executor", "quantum", "--cores", "2", timeout=300)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("qrun: error:")]
    assert len(errors) == 1 and "heron: task start failed" in errors[0], result.stderr[-2000:]
    assert "not-a-real-key" not in result.stderr
    assert not (workdir / "qpu.json").exists()
    assert not [p for p in quantum_processes() if str(workdir) in p]


# ------------------------------------------------------------------ Slurm faults

LONG_JOBS = r'''
rule all:
    input: expand("slow{i}.txt", i=range(3))

rule slow:
    output: "slow{i}.txt"
    shell: "sleep 12; echo done > {output}"
'''


def _start_long_jobs_on_slurm(tmp_path: Path, slurm_cluster: dict[str, str]) -> tuple[Path, dict[str, str], subprocess.Popen]:
    """LONG_JOBS under profiles/slurm, in the background, status checks at most 3 s apart."""
    workdir = write_workflow(tmp_path, LONG_JOBS)
    env = clean_env(**slurm_cluster, SNAKEMAKE_QUANTUM_SLURM_MAX_STATUS_INTERVAL="3")
    process = subprocess.Popen([command("snakemake"), "--profile", str(REPO / "profiles" / "slurm")], cwd=workdir, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return workdir, env, process


def _submitted(stderr: str) -> list[str]:
    return [line.split("SLURM jobid ")[1].split()[0] for line in stderr.splitlines() if "submitted with SLURM jobid" in line]


@pytest.mark.slurm
def test_a_slurm_job_cancelled_from_outside_fails_the_run_and_a_rerun_completes(tmp_path: Path, slurm_cluster: dict[str, str]) -> None:
    workdir, env, process = _start_long_jobs_on_slurm(tmp_path, slurm_cluster)
    deadline = time.monotonic() + 60
    victim = None
    while victim is None:
        assert time.monotonic() < deadline
        running = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i %j"], capture_output=True, text=True, env=env).stdout.split("\n")
        victim = next((line.split()[0] for line in running if line.strip() and not line.split()[1].startswith("vqpu")), None)
        time.sleep(0.5)
    subprocess.run(["scancel", victim], check=True, env=env)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode != 0
    assert f"SLURM-job '{victim}' failed" in stderr and "CANCELLED" in stderr
    leftover = set(subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, env=env).stdout.split()) & set(_submitted(stderr))
    assert not leftover
    rerun = snakemake(workdir, "--profile", str(REPO / "profiles" / "slurm"), env=env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert all((workdir / f"slow{i}.txt").read_text().strip() == "done" for i in range(3))


@pytest.mark.slurm
def test_slurmctld_restarted_mid_run_does_not_lose_the_run(tmp_path: Path, slurm_cluster: dict[str, str]) -> None:
    workdir, env, process = _start_long_jobs_on_slurm(tmp_path, slurm_cluster)
    time.sleep(6)  # jobs submitted and running
    subprocess.run([str(CLUSTER), "restart-ctld"], check=True, capture_output=True, timeout=300)
    _, stderr = process.communicate(timeout=600)
    if process.returncode != 0:  # a lost status must fail cleanly, and the rerun finish the work
        rerun = snakemake(workdir, "--profile", str(REPO / "profiles" / "slurm"), env=env)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert all((workdir / f"slow{i}.txt").read_text().strip() == "done" for i in range(3))
    assert not set(subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, env=env).stdout.split()) & set(_submitted(stderr))


# ------------------------------------------------------------------ concurrency

SHARED = r'''
rule all:
    input: expand("{{run}}_{{i}}.json", run=["{run}"], i=range(6))

rule sample:
    output: "{{run}}_{{i}}.json", "{{run}}_{{i}}.span"
    resources: vqpu=1, vqpu_name="shared"
    params: shots=lambda wc: {shots} + int(wc.i)
    shell: "start=$(date +%s.%N); qrun ghz{n}.qasm --shots {{params.shots}} -o {{output[0]}}; sleep 0.3; echo $start $(date +%s.%N) > {{output[1]}}"
'''


def test_two_runs_share_a_vqpu_without_mixing_results_and_within_its_lanes(tmp_path: Path) -> None:
    service = start_service("shared", tmp_path / "events", "--lanes", "2")
    try:
        config = f"resources:\n  - name: shared\n    type: vqpu\n    lanes: 1\n    environment:\n      QRMI_VQPU_EVENT_FILE: {service.event_file}\n"
        runs = []
        for run, n, shots in (("a", 3, 100), ("b", 5, 500)):
            ghz = "\n".join(["OPENQASM 3.0;", 'include "stdgates.inc";', f"qubit[{n}] q;", f"bit[{n}] c;", "h q[0];", *[f"cx q[{i}], q[{i + 1}];" for i in range(n - 1)], "c = measure q;"])
            workdir = write_workflow(tmp_path / run, SHARED.format(run=run, n=n, shots=shots), {f"ghz{n}.qasm": ghz, "qrmi_config.yaml": config})
            runs.append((run, n, shots, workdir, subprocess.Popen(
                [command("snakemake"), "--executor", "quantum", "--cores", "3", "--quantum-lease-dir", str(tmp_path / "leases")],
                cwd=workdir, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)))
        task_ids = set()
        spans = []  # (start, end) of every job of both runs
        for run, n, shots, workdir, process in runs:
            _, stderr = process.communicate(timeout=300)
            assert process.returncode == 0, stderr[-3000:]
            for i in range(6):
                result = json.loads((workdir / f"{run}_{i}.json").read_text())
                counts = result["pubs"][0]["registers"]["c"]["counts"]
                assert set(counts) <= {"0" * n, "1" * n}, "a result from the other run"
                assert sum(counts.values()) == shots + i
                task_ids.add(result["task_id"])
                spans.append(tuple(map(float, (workdir / f"{run}_{i}.span").read_text().split())))
        assert len(task_ids) == 12
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert start >= end - 0.01, "the shared vQPU's single lane was held by two jobs at once"
    finally:
        stop_service(service)
