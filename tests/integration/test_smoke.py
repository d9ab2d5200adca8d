"""One small hybrid workflow end to end: the inner loop's check (make test-fast) that the
executor, a vQPU sidecar, qrun, a forked run: job and the primitives work together."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import CIRCUITS, quantum_processes, snakemake, write_workflow

pytestmark = pytest.mark.slow

SMOKE = r'''
rule all:
    input: "summary.json"

rule prepare:
    output: "ghz.qasm"
    shell: "cp {CIRCUIT} {output}"

rule sample:
    input: "ghz.qasm"
    output: "counts.json"
    resources: vqpu=1
    shell: "qrun {input} --shots 500 -o {output}"

rule summarise:
    input: "counts.json"
    output: "summary.json"
    resources: qpu=1, qpu_name="aer"
    run:
        import json
        from qiskit import QuantumCircuit
        from snakemake_executor_plugin_quantum.primitives import SamplerV2
        counts = json.load(open(input[0]))["pubs"][0]["registers"]["meas"]["counts"]
        bell = QuantumCircuit(2)
        bell.h(0)
        bell.cx(0, 1)
        bell.measure_all()
        check = SamplerV2(seed=1).run([bell], shots=100).result()[0].data.meas.get_counts()
        json.dump({"ghz": counts, "bell": check}, open(output[0], "w"))
'''


def test_a_small_hybrid_workflow_runs_end_to_end_and_leaves_nothing_running(tmp_path: Path) -> None:
    workdir = write_workflow(tmp_path, SMOKE.replace("{CIRCUIT}", str(CIRCUITS / "ghz5.qasm")))
    result = snakemake(workdir, "--profile", str(Path(__file__).resolve().parents[2] / "profiles" / "local"))
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((workdir / "summary.json").read_text())
    assert set(summary["ghz"]) <= {"00000", "11111"} and sum(summary["ghz"].values()) == 500
    assert set(summary["bell"]) <= {"00", "11"} and sum(summary["bell"].values()) == 100
    assert not [p for p in quantum_processes() if str(workdir) in p]
    assert not (workdir / ".snakemake" / "quantum" / "vqpu" / "vqpu.json").exists()
