"""The Aer engine's own choices, checked against Aer itself."""

from __future__ import annotations

import pytest

from snakemake_executor_plugin_quantum.engines.aer import SMALL_DENSE_QUBITS, AerEngine, AerOptions
from snakemake_executor_plugin_quantum.payloads.parse import parse_payload

pytestmark = pytest.mark.slow

SEED = 11


def ghz(n: int) -> str:
    lines = ['OPENQASM 2.0;', 'include "qelib1.inc";', f"qreg q[{n}];", f"creg c[{n}];", "h q[0];"]
    lines += [f"cx q[{i}],q[{i + 1}];" for i in range(n - 1)]
    return "\n".join([*lines, "measure q -> c;"])


def counts_by_aer(method: str, circuit: object, shots: int) -> dict[str, int]:
    from qiskit_aer import AerSimulator

    simulator = AerSimulator(method=method, max_parallel_threads=1)
    return simulator.run(circuit, shots=shots, seed_simulator=SEED).result().get_counts()


@pytest.mark.parametrize("width", [5, SMALL_DENSE_QUBITS + 2])
def test_a_small_clifford_circuit_is_sampled_as_a_statevector_and_a_wide_one_as_aer_chooses(width: int) -> None:
    # Aer's automatic choice runs any Clifford circuit with the stabilizer method; small ones
    # sample faster as a statevector. The counts for a seed tell which method ran.
    engine = AerEngine(AerOptions(seed=SEED, threads=1))
    task = parse_payload({"program_id": "sampler", "parameters": {"pubs": [[ghz(width)]], "shots": 256}})
    prepared = engine.check(task)
    body, _ = engine.run(task, prepared)
    got = body["pubs"][0]["registers"]["c"]["counts"]
    runnable = prepared[0].runnable
    dense, stabilizer = counts_by_aer("statevector", runnable, 256), counts_by_aer("stabilizer", runnable, 256)
    assert dense != stabilizer, "this seed cannot tell the methods apart"
    assert got == (dense if width <= SMALL_DENSE_QUBITS else stabilizer)


def test_a_configured_method_is_kept_for_small_circuits() -> None:
    engine = AerEngine(AerOptions(method="stabilizer", seed=SEED, threads=1))
    task = parse_payload({"program_id": "sampler", "parameters": {"pubs": [[ghz(5)]], "shots": 256}})
    prepared = engine.check(task)
    body, _ = engine.run(task, prepared)
    assert body["pubs"][0]["registers"]["c"]["counts"] == counts_by_aer("stabilizer", prepared[0].runnable, 256)


def test_pubs_of_both_sizes_in_one_task_get_the_counts_each_gets_alone() -> None:
    engine = AerEngine(AerOptions(seed=SEED, threads=1))
    small, wide = ghz(4), ghz(SMALL_DENSE_QUBITS + 2)

    def counts(pubs: list[list[str]]) -> list[dict[str, int]]:
        task = parse_payload({"program_id": "sampler", "parameters": {"pubs": pubs, "shots": 128}})
        body, _ = engine.run(task, engine.check(task))
        return [pub["registers"]["c"]["counts"] for pub in body["pubs"]]

    assert counts([[small], [wide]])[0] == counts([[small]])[0]
    assert sum(counts([[small], [wide]])[1].values()) == 128


@pytest.mark.parametrize("parse", [True, False])
def test_warm_up_pays_the_estimators_first_use_too(parse: bool) -> None:
    # A VQE's first energy runs inline in a vQPU's front end: Aer's primitives are imported by then.
    import subprocess
    import sys

    program = ("import sys\nfrom snakemake_executor_plugin_quantum.engines.aer import AerEngine\n"
               f"AerEngine(dedicated=True).warm_up(parse={parse})\n"
               "print('qiskit_aer.primitives.estimator_v2' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "True", result.stderr[-2000:]
