"""Reading result documents back (results.load), on documents qrun really wrote."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import CIRCUITS, clean_env, command

from snakemake_executor_plugin_quantum import results
from snakemake_executor_plugin_quantum.errors import QuantumError

pytestmark = pytest.mark.slow

# theta = 0 leaves both qubits 0, theta = pi flips both: every count is known.
TWO_REGISTERS = (
    'OPENQASM 3.0; include "stdgates.inc"; input float[64] theta; qubit[2] q; bit[1] a; bit[1] b; '
    "rx(theta) q[0]; cx q[0], q[1]; a[0] = measure q[0]; b[0] = measure q[1];"
)
SWEEP = [[[0.0], [math.pi]], [[math.pi], [0.0]]]  # parameter sets of shape (2, 2)
EXPECTED_A = [[{"0": 20}, {"1": 20}], [{"1": 20}, {"0": 20}]]


def pulser_sequence() -> str:
    from pulser import Pulse, Register, Sequence
    from pulser.devices import DigitalAnalogDevice

    sequence = Sequence(Register({"q0": (-2.5, 0.0), "q1": (2.5, 0.0)}), DigitalAnalogDevice)
    sequence.declare_channel("rydberg", "rydberg_global")
    sequence.add(Pulse.ConstantPulse(400, 2, 0, 0), "rydberg")
    sequence.measure("ground-rydberg")
    return sequence.to_abstract_repr()


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with a sampler, an estimator and a Pulser document, from three qrun runs at once."""
    work = tmp_path_factory.mktemp("results")
    inputs = {
        "sampler": {"program_id": "sampler", "parameters": {
            "pubs": [[TWO_REGISTERS, SWEEP, 20], [(CIRCUITS / "ghz3_qasm2.qasm").read_text(), None, 50]],
            "options": {"simulator": {"seed_simulator": 7}}}},
        "estimator": {"program_id": "estimator", "parameters": {
            "pubs": [[(CIRCUITS / "h2_ansatz.qasm").read_text(), [["ZZ"], [{"XX": 0.5, "YY": 0.5}]], [[0.0], [math.pi / 2]]]]}},
        "pulser": {"sequence": json.loads(pulser_sequence()), "job_runs": 200, "seed": 3},
    }
    processes = []
    for name, payload in inputs.items():
        (work / f"{name}.in").write_text(json.dumps(payload))
        resource = "pulser" if name == "pulser" else "aer"
        processes.append(subprocess.Popen([command("qrun"), resource, str(work / f"{name}.in"), "-o", str(work / f"{name}.json")],
                                          env=clean_env(), stderr=subprocess.PIPE, text=True))
    for process in processes:
        _, stderr = process.communicate(timeout=180)
        assert process.returncode == 0, stderr
    return work


def test_sampler_counts_are_dicts_in_an_array_shaped_like_the_parameter_sets(documents: Path) -> None:
    counts = results.load(documents / "sampler.json").counts(register="a")
    assert isinstance(counts, np.ndarray) and counts.shape == (2, 2)
    assert counts.tolist() == EXPECTED_A


def test_sampler_counts_of_a_pub_without_parameters_are_one_dict(documents: Path) -> None:
    counts = results.load(documents / "sampler.json").counts(pub=1)
    assert isinstance(counts, dict) and set(counts) <= {"000", "111"} and sum(counts.values()) == 50


def test_a_pub_with_several_registers_needs_the_register_named(documents: Path) -> None:
    with pytest.raises(QuantumError, match=r"pub 0 has registers a, b; name one, e.g. counts\(register='a'\)$"):
        results.load(documents / "sampler.json").counts()


def test_sampler_document_reads_back_as_the_primitive_result(documents: Path) -> None:
    result = results.load(documents / "sampler.json")
    qiskit_result = result.to_qiskit()
    a, b = qiskit_result[0].data.a, qiskit_result[0].data.b
    assert a.shape == b.shape == (2, 2) and a.num_shots == 20
    assert [[a[i, j].get_counts() for j in range(2)] for i in range(2)] == EXPECTED_A
    assert qiskit_result[1].data.c.get_counts() == result.counts(pub=1)
    assert qiskit_result.metadata["task_id"] == result.task_id and qiskit_result.metadata["seed"] == 7


def test_estimator_values_are_arrays_shaped_like_the_pub(documents: Path) -> None:
    result = results.load(documents / "estimator.json")
    np.testing.assert_allclose(result.evs(), [[-1.0, -1.0], [0.0, 1.0]], atol=1e-9)  # ZZ, (XX+YY)/2 at 0 and pi/2
    assert result.stds().shape == (2, 2) and not result.stds().any()
    np.testing.assert_array_equal(result.to_qiskit()[0].data.evs, result.evs())


def test_pulser_counts_and_atoms(documents: Path) -> None:
    result = results.load(documents / "pulser.json")
    assert result.atoms == ["q0", "q1"] and result.shots == 200
    counts = result.counts()
    assert sum(counts.values()) == 200 and all(len(bits) == 2 for bits in counts)


def test_a_directory_loads_every_result_document_by_name(documents: Path) -> None:
    loaded = results.load(documents)
    assert list(loaded) == ["estimator.json", "pulser.json", "sampler.json"]
    assert [r.program for r in loaded.values()] == ["estimator", "pulser", "sampler"]


def test_a_json_file_that_is_not_a_result_document_is_refused(tmp_path: Path) -> None:
    (tmp_path / "payload.json").write_text(json.dumps({"program_id": "sampler", "parameters": {}}))
    with pytest.raises(QuantumError, match=r"payload.json is not a result document \(no \"schema\": \"snakemake-quantum-result/1\"\); qrun writes those$"):
        results.load(tmp_path)
