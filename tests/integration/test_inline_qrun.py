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
    input: expand("out/{i}.json", i=range(6)), "logged.json", "printed.json"

rule sample:
    output: "out/{i}.json"
    resources: vqpu=1
    shell: "qrun ghz5.qasm --shots 200 -o {output}"

rule logged:
    output: "logged.json"
    log: "logs/logged.txt"
    resources: vqpu=1
    shell: "qrun ghz5.qasm --shots 200 -o {output} 2> {log}"

rule printed:
    output: "printed.json"
    resources: vqpu=1
    shell: "qrun ghz5.qasm --shots 200 > {output}"
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
    # No shell and no qrun process, also for the rule whose log is a redirection.
    assert not marker.exists()
    assert (workdir / "logs" / "logged.txt").read_text() == ""
    inline_counts = [_counts(workdir / "out" / f"{i}.json") for i in range(6)]
    inline_printed = (workdir / "printed.json").read_text()

    processes = snakemake(workdir, "--executor", "quantum", "--cores", "2", "--forceall", "--quantum-qrun-subprocess", env=env)
    assert processes.returncode == 0, processes.stderr[-3000:]
    assert len(marker.read_text().splitlines()) == 8, "--quantum-qrun-subprocess runs every qrun as a process"
    assert (workdir / "logs" / "logged.txt").read_text() == "", "qrun prints nothing on success"
    process_counts = [_counts(workdir / "out" / f"{i}.json") for i in range(6)]

    for counts in inline_counts + process_counts:
        assert set(counts) <= {"00000", "11111"} and sum(counts.values()) == 200
    # One file, both ways: the same keys in the same document shape.
    inline_doc = json.loads((workdir / "logged.json").read_text())
    assert set(json.loads((workdir / "out" / "0.json").read_text())) == set(inline_doc)
    # Printed to a file (no -o): the same document, laid out as qrun prints it.
    printed = (workdir / "printed.json").read_text()
    assert inline_printed.endswith("}\n") and printed.endswith("}\n")
    assert set(json.loads(inline_printed)) == set(json.loads(printed)) == set(inline_doc)
    assert [len(line) - len(line.lstrip()) for line in inline_printed.splitlines()[:3]] == [
        len(line) - len(line.lstrip()) for line in printed.splitlines()[:3]]
    assert not [p for p in workdir.rglob("*.tmp")]


BROKEN = r'''
rule all:
    input: "bad.json"

rule bad:
    output: "bad.json"
    resources: vqpu=1
    shell: "qrun broken.qasm --shots 10 -o {output}"
'''
BROKEN_LOGGED = r'''
rule all:
    input: "bad.json", "bad-stdout.json"

rule bad:
    output: "bad.json"
    log: "logs/bad.txt"
    resources: vqpu=1
    shell: "qrun broken.qasm --shots 10 -o {output} 2> {log}"

rule bad_stdout:
    output: "bad-stdout.json"
    log: "logs/bad-stdout.txt"
    resources: vqpu=1
    shell: "qrun broken.qasm --shots 10 > {output} 2>> {log}"
'''
BROKEN_QASM = 'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[1] q;\nfrobnicate q[0];\n'


def test_an_inline_qrun_error_reads_as_qrun_and_leaves_nothing(tmp_path: Path) -> None:
    workdir, env, marker = _workflow(tmp_path)
    (workdir / "Snakefile").write_text(BROKEN)
    (workdir / "broken.qasm").write_text(BROKEN_QASM)
    before = set(quantum_processes())
    result = snakemake(workdir, "--executor", "quantum", "--cores", "1", env=env)
    assert result.returncode != 0
    assert "qrun: error: pub 0: invalid OpenQASM 3: " in result.stderr and "Error in rule bad" in result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists(), "the failing job ran inline"
    assert not (workdir / "bad.json").exists()
    assert set(quantum_processes()) <= before
    assert not list((workdir / ".snakemake" / "quantum" / "vqpu").glob("*.json"))


def test_an_inline_qrun_error_goes_to_the_log_it_is_redirected_to_as_from_a_qrun_process(tmp_path: Path) -> None:
    workdir, env, marker = _workflow(tmp_path)
    (workdir / "Snakefile").write_text(BROKEN_LOGGED)
    (workdir / "broken.qasm").write_text(BROKEN_QASM)
    logs = {}
    for mode in ((), ("--quantum-qrun-subprocess",)):
        result = snakemake(workdir, "--executor", "quantum", "--cores", "2", "--keep-going", *mode, env=env)
        assert result.returncode != 0
        assert "qrun: error:" not in result.stderr, "the error is in the logs, not on the terminal"
        assert "Traceback" not in result.stderr
        assert not (workdir / "bad.json").exists() and not (workdir / "bad-stdout.json").exists()
        logs[mode] = {name: (workdir / "logs" / name).read_text() for name in ("bad.txt", "bad-stdout.txt")}
        assert marker.exists() == bool(mode), "inline first, qrun processes second"
    inline, processes = logs.values()
    assert inline == processes
    assert inline["bad.txt"].startswith("qrun: error: pub 0: invalid OpenQASM 3: ")
    assert inline["bad-stdout.txt"] == inline["bad.txt"]  # Snakemake removed the old log: 2>> appends to nothing


BATCHED = r'''
rule all:
    input: expand("out/{i}.json", i=range(16))

rule sample:
    input: "c/{i}.qasm"
    output: "out/{i}.json"
    resources: vqpu=1, vqpu_name="one"
    shell: "qrun {input} --shots 300 -o {output}"
'''
ONE_LANE = "resources:\n  - name: one\n    type: vqpu\n    environment: {QRMI_VQPU_ENGINE: aer, QRMI_VQPU_LANES: '1', QRMI_AER_SEED: '11'}\n"


def _circuit(i: int) -> str:
    return ('OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[3];\ncreg c[3];\n'
            f"h q[0];\nry({0.1 * (i + 1):.3f}) q[1];\ncx q[0],q[2];\nmeasure q -> c;\n")


def test_tasks_waiting_for_a_busy_vqpu_go_together_with_the_results_they_would_get_alone(tmp_path: Path) -> None:
    """Six jobs at once on a one-lane vQPU: those waiting are sent as one request, and each
    job's counts equal those of the same task sent alone (same seed, same circuit)."""
    counts = {}
    for name, extra in (("batched", []), ("alone", ["--quantum-vqpu-batch", "1"])):
        files = {f"c/{i}.qasm": _circuit(i) for i in range(16)} | {"qrmi_config.yaml": ONE_LANE}
        workdir = write_workflow(tmp_path / name, BATCHED, files)
        result = snakemake(workdir, "--executor", "quantum", "--cores", "6", *extra)
        assert result.returncode == 0, result.stderr[-3000:]
        counts[name] = {i: json.loads((workdir / "out" / f"{i}.json").read_text())["pubs"][0]["registers"]["c"]["counts"]
                        for i in range(16)}
        (metrics_file,) = (workdir / ".snakemake" / "quantum" / "metrics").glob("*.jsonl")
        batches = [json.loads(line).get("batch", 1) for line in metrics_file.read_text().splitlines()]
        assert len(batches) == 16
        if name == "batched":
            assert max(batches) > 1, f"no task waited for the busy vQPU together with another: {batches}"
        else:
            assert set(batches) == {1}
    assert counts["batched"] == counts["alone"]
