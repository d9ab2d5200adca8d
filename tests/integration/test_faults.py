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


# Slurm faults (a job cancelled from outside, slurmctld restarted, a node lost): test_slurm_faults.py


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
