"""Plain ``qrun`` jobs on a vQPU run inside the executor: same outputs, same errors, no process."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import CIRCUITS, clean_env, command, quantum_processes, snakemake, write_workflow

pytestmark = pytest.mark.slow

SWEEP = r'''
rule all:
    input: expand("out/{i}.json", i=range(6)), "logged.json"

rule sample:
    output: "out/{i}.json"
    resources: vqpu=1
    shell: "qrun ghz5.qasm --shots 200 -o {output}"

rule logged:
    output: "logged.json"
    log: "logs/logged.txt"
    resources: vqpu=1
    shell: "qrun ghz5.qasm --shots 200 -o {output} 2> {log}"
'''

# A `qrun` first on PATH that notes each process start, then runs the real one.
SHIM = '#!/bin/sh\necho "$@" >> "{marker}"\nexec "{real}" "$@"\n'


def _workflow(tmp_path: Path) -> tuple[Path, dict[str, str], Path]:
    workdir = write_workflow(tmp_path / "wf", SWEEP, {"ghz5.qasm": (CIRCUITS / "ghz5.qasm").read_text()})
    shims, marker = tmp_path / "shims", tmp_path / "qrun-processes.txt"
    shims.mkdir()
    (shims / "qrun").write_text(SHIM.format(marker=marker, real=command("qrun")))
    (shims / "qrun").chmod(0o755)
    env = clean_env()
    env["PATH"] = f"{shims}{os.pathsep}{env['PATH']}"
    return workdir, env, marker


def _counts(path: Path) -> dict[str, int]:
    return json.loads(path.read_text())["pubs"][0]["registers"]["meas"]["counts"]


def test_plain_qrun_jobs_run_inline_and_match_qrun_processes(tmp_path: Path) -> None:
    workdir, env, marker = _workflow(tmp_path)
    inline = snakemake(workdir, "--executor", "quantum", "--cores", "2", env=env)
    assert inline.returncode == 0, inline.stderr[-3000:]
    # Only the rule with a redirection needed a shell and a qrun process.
    assert marker.read_text().splitlines() == ["ghz5.qasm --shots 200 -o logged.json"]
    inline_counts = [_counts(workdir / "out" / f"{i}.json") for i in range(6)]

    marker.unlink()
    processes = snakemake(workdir, "--executor", "quantum", "--cores", "2", "--forceall", "--quantum-qrun-subprocess", env=env)
    assert processes.returncode == 0, processes.stderr[-3000:]
    assert len(marker.read_text().splitlines()) == 7, "--quantum-qrun-subprocess runs every qrun as a process"
    process_counts = [_counts(workdir / "out" / f"{i}.json") for i in range(6)]

    for counts in inline_counts + process_counts:
        assert set(counts) <= {"00000", "11111"} and sum(counts.values()) == 200
    # One file, both ways: the same keys in the same document shape.
    inline_doc = json.loads((workdir / "logged.json").read_text())
    assert set(json.loads((workdir / "out" / "0.json").read_text())) == set(inline_doc)
    assert not [p for p in workdir.rglob("*.tmp")]


BROKEN = r'''
rule all:
    input: "bad.json"

rule bad:
    output: "bad.json"
    resources: vqpu=1
    shell: "qrun broken.qasm --shots 10 -o {output}"
'''


def test_an_inline_qrun_error_reads_as_qrun_and_leaves_nothing(tmp_path: Path) -> None:
    workdir, env, marker = _workflow(tmp_path)
    (workdir / "Snakefile").write_text(BROKEN)
    (workdir / "broken.qasm").write_text('OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[1] q;\nfrobnicate q[0];\n')
    before = set(quantum_processes())
    result = snakemake(workdir, "--executor", "quantum", "--cores", "1", env=env)
    assert result.returncode != 0
    assert "qrun: error: pub 0: invalid OpenQASM 3: " in result.stderr and "Error in rule bad" in result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists(), "the failing job ran inline"
    assert not (workdir / "bad.json").exists()
    assert set(quantum_processes()) <= before
    assert not list((workdir / ".snakemake" / "quantum" / "vqpu").glob("*.json"))
