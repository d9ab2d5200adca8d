"""qrun end to end: real processes, real Aer and Pulser, QRMI-format payloads."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import qrmi_payloads as gen
from conftest import (
    CIRCUITS,
    Service,
    clean_env,
    command,
    qrun,
    quantum_processes,
    start_service,
    stop_service,
)

pytestmark = pytest.mark.slow


def counts_of(result: dict, pub: int = 0) -> dict[str, int]:
    (register,) = result["pubs"][pub]["registers"].values()
    return register["counts"]


def test_ghz5_on_aer_gives_only_all_zeros_and_all_ones(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    result = qrun("aer", str(CIRCUITS / "ghz5.qasm"), "-o", str(out), "--shots", "2000")
    assert result.returncode == 0, result.stderr
    counts = counts_of(json.loads(out.read_text()))
    assert set(counts) <= {"00000", "11111"} and sum(counts.values()) == 2000
    assert min(counts.values()) > 800  # both outcomes, about half each


def test_qasm2_circuit_runs(tmp_path: Path) -> None:
    result = qrun("aer", str(CIRCUITS / "ghz3_qasm2.qasm"), "--shots", "300")
    assert result.returncode == 0, result.stderr
    assert set(counts_of(json.loads(result.stdout))) <= {"000", "111"}


def test_qrmi_task_runner_argument_form_with_positional_output(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    result = qrun("aer", str(CIRCUITS / "bell.qasm"), str(out))
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text())["program"] == "sampler"


@pytest.mark.parametrize("encoded_arrays", [False, True], ids=["list-arrays", "runtime-encoded-arrays"])
def test_isa_sampler_payload_matches_exact_probabilities(tmp_path: Path, encoded_arrays: bool) -> None:
    from qiskit.circuit.library import efficient_su2

    circuit = efficient_su2(4, entanglement="linear", reps=3)  # 32 parameters: order matters past 10
    circuit.measure_all()
    values = np.random.default_rng(3).uniform(0, np.pi, circuit.num_parameters)
    payload, isa = gen.sampler_payload(circuit, values, shots=8000, encoded_arrays=encoded_arrays)
    path = tmp_path / "sampler_input.json"
    path.write_text(json.dumps(payload))
    out = tmp_path / "out.json"
    result = qrun("aer", str(path), "-o", str(out), timeout=180)
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    assert len(doc["metadata"]["active_qubits"][0]) == 4  # 133-qubit ISA circuit, 4 simulated
    exact = gen.exact_probabilities(circuit, values)
    assert gen.within_sigmas(counts_of(doc), exact, 8000) == []


def test_isa_estimator_payload_matches_exact_expectation_values(tmp_path: Path) -> None:
    from qiskit.circuit.library import qaoa_ansatz
    from qiskit.quantum_info import SparsePauliOp, Statevector

    cost = SparsePauliOp.from_sparse_list([("ZZ", [0, 1], 0.5), ("ZZ", [1, 2], 0.5), ("ZZ", [2, 3], 0.5)], num_qubits=4)
    circuit = qaoa_ansatz(cost, reps=2)
    values = [0.1, 0.2, 0.3, 0.4]
    payload, isa = gen.estimator_payload(circuit, cost, values, default_shots=10_000)
    path = tmp_path / "estimator_input.json"
    path.write_text(json.dumps(payload))
    result = qrun("aer", str(path), timeout=180)
    assert result.returncode == 0, result.stderr
    pub = json.loads(result.stdout)["pubs"][0]
    exact = Statevector(circuit.assign_parameters(values)).expectation_value(cost).real
    assert pub["precision"] == pytest.approx(0.01)
    assert abs(pub["evs"] - exact) <= 5 * pub["stds"]


def test_estimator_without_precision_is_exact(tmp_path: Path) -> None:
    payload = {"program_id": "estimator", "parameters": {"pubs": [[(CIRCUITS / "h2_ansatz.qasm").read_text(), [["ZI", "IZ", "XX"]], [[[0.3]], [[1.1]]]]]}}
    path = tmp_path / "est.json"
    path.write_text(json.dumps(payload))
    result = qrun("aer", str(path))
    assert result.returncode == 0, result.stderr
    evs = np.array(json.loads(result.stdout)["pubs"][0]["evs"])
    theta = np.array([[0.3], [1.1]])
    # |psi> = cos(t/2)|01> + sin(t/2)|10> (qubit 0 rightmost): <ZI> = cos t, <IZ> = -cos t, <XX> = sin t
    expected = np.hstack([np.cos(theta), -np.cos(theta), np.sin(theta)])
    assert evs.shape == (2, 3) and np.allclose(evs, expected, atol=1e-9)


def pulser_sequence() -> str:
    from pulser import Pulse, Register, Sequence
    from pulser.devices import DigitalAnalogDevice

    register = Register({"q0": (-2.5, -2.5), "q1": (2.5, -2.5), "q2": (-2.5, 2.5)})
    sequence = Sequence(register, DigitalAnalogDevice)
    sequence.declare_channel("rydberg", "rydberg_global")
    sequence.add(Pulse.ConstantPulse(400, 2, 0, 0), "rydberg")
    sequence.measure("ground-rydberg")
    return sequence.to_abstract_repr()


def test_pulser_payload_as_string_and_as_object_give_the_same_counts(tmp_path: Path) -> None:
    text = pulser_sequence()
    outputs = []
    for form, sequence in (("string", text), ("object", json.loads(text))):
        path = tmp_path / f"{form}.json"
        path.write_text(json.dumps({"sequence": sequence, "job_runs": 500}))
        result = qrun("pulser", str(path), env=clean_env(pulser_QRMI_PULSER_SEED="11"), timeout=180)
        assert result.returncode == 0, result.stderr
        outputs.append(json.loads(result.stdout))
    assert outputs[0]["counts"] == outputs[1]["counts"]
    assert sum(outputs[0]["counts"].values()) == 500


QRMI_EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "qrmi_task_runner"


@pytest.fixture(scope="module")
def vqpu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One warm Aer vQPU, seeded, in the default event directory of a home of its own."""
    home = tmp_path_factory.mktemp("home")
    service = start_service("sim", home / ".cache" / "snakemake-quantum" / "vqpu", "--engine", "aer", "--lanes", "1",
                            env=clean_env(HOME=str(home), sim_QRMI_AER_SEED="7"), shared=True)
    yield service
    stop_service(service)


@pytest.mark.parametrize("program", ["sampler", "estimator"])
def test_qrmi_example_input_gives_the_same_result_without_program_id(vqpu: Service, program: str) -> None:
    """QRMI's generators write each input twice: for the task runner, and as bare parameters."""
    results = []
    for name in (f"{program}_input_fake_marrakesh.json", f"{program}_input_fake_marrakesh_params_only.json"):
        result = qrun(str(QRMI_EXAMPLES / name), env=vqpu.job_env())
        assert result.returncode == 0, result.stderr
        results.append(json.loads(result.stdout))
    with_id, bare = results
    assert bare["program"] == with_id["program"] == program
    assert bare["pubs"] == with_id["pubs"]
    key = "evs" if program == "estimator" else "registers"
    assert with_id["pubs"][0][key], "a real result, not an empty one"


# ---------------------------------------------------------------------- bad input

WIDE_T = 'OPENQASM 3.0; include "stdgates.inc"; qubit[40] q; bit[40] c; ' + " ".join(f"h q[{i}]; t q[{i}];" for i in range(40)) + " c = measure q;"
PARAM = 'OPENQASM 3.0; include "stdgates.inc"; input float[64] a; qubit[1] q; bit[1] c; rx(a) q[0]; c[0] = measure q[0];'


def primitive(program: str, *pub: object, **parameters: object) -> dict:
    return {"program_id": program, "parameters": {"pubs": [list(pub)], **parameters}}


BAD_INPUTS = {
    "non-json": ('{"program_id": ', "is not valid JSON"),
    "empty-file": ("", "is empty"),
    "unknown-program": (primitive("optimizer", "x"), "'optimizer' is not one of"),
    "missing-pubs": ({"program_id": "sampler", "parameters": {"shots": 10}}, "pubs must be a non-empty list"),
    "qasm-syntax": ('OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[2] q;\nh q[0]\ncx q[0], q[1];\n', "syntax error at line"),
    "undefined-gate": ('OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[1] q;\nbit[1] c;\nwiggle q[0];\nc[0] = measure q[0];\n', "gate 'wiggle' is not defined"),
    "too-many-qubits": (primitive("sampler", WIDE_T), "40 active qubits exceed"),
    "zero-shots": (primitive("sampler", PARAM, [0.1], 0), "shots: must be a positive integer, got 0"),
    "negative-shots": (primitive("sampler", PARAM, [0.1], shots=-3), "got -3"),
    "fractional-shots": (primitive("sampler", PARAM, [0.1], shots=2.5), "got 2.5"),
    "wrong-parameter-count": (primitive("sampler", PARAM, [0.1, 0.2]), "the circuit has 1 parameters but parameter_values give 2"),
    "observable-size": (primitive("estimator", PARAM, "ZZZ", [0.1]), "observables act on 3 qubits but the circuit has 1"),
    "invalid-pulser": ({"sequence": {"version": "1", "name": "broken"}, "job_runs": 10}, "invalid Pulser sequence"),
    "zero-job-runs": ({"sequence": {"version": "1"}, "job_runs": 0}, "job_runs"),
    "deeply-nested": ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
}


# Inputs only the simulator library itself can judge: refusing them costs its import (Pulser's
# is seconds), and nothing more. Every other bad input is refused before that import.
NEEDS_THE_LIBRARY = {"invalid-pulser": "import pulser"}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_fails_fast_with_one_line_and_no_output(tmp_path: Path, case: str) -> None:
    content, message = BAD_INPUTS[case]
    limit = 5.0
    if case in NEEDS_THE_LIBRARY:  # measured now, under the same load as the qrun below
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", NEEDS_THE_LIBRARY[case]], check=True, capture_output=True)
        limit = max(limit, time.monotonic() - started + 1.5)
    text = content if isinstance(content, str) else json.dumps(content)
    suffix = ".qasm" if text.startswith("OPENQASM") else ".json"
    path = tmp_path / f"input{suffix}"
    path.write_text(text)
    resource = "pulser" if "pulser" in case or "job-runs" in case else "aer"
    out = tmp_path / "out.json"
    result = qrun(resource, str(path), "-o", str(out))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert result.seconds < limit, f"took {result.seconds:.1f} s (limit {limit:.1f} s)"
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [path], "no temp file may be left behind"


def imported_modules(stderr: str) -> list[str]:
    """The modules a run under ``PYTHONPROFILEIMPORTTIME=1`` imported (its children's too)."""
    return [line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")]


def test_in_process_aer_imports_no_other_packages_transpiler_plugins(tmp_path: Path) -> None:
    """Building the pass manager must not import every installed transpiler plugin:
    qiskit-ibm-runtime's alone was ~1.6 s of a ~2.5 s qrun, and bad input then took
    longer than the 5 s above under CI load."""
    pytest.importorskip("qiskit_ibm_runtime")  # the plugin whose import we would notice
    result = qrun("aer", str(CIRCUITS / "bell.qasm"), "--shots", "50", env=clean_env(PYTHONPROFILEIMPORTTIME="1"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["program"] == "sampler"
    imported = imported_modules(result.stderr)
    assert "qiskit_aer" in imported, "the import profile reached the simulating child"
    assert not [name for name in imported if name.startswith("qiskit_ibm_runtime")]


def test_a_payload_our_own_checks_refuse_never_imports_the_simulator(tmp_path: Path) -> None:
    """Pulser's import is seconds; a payload the QRMI schema refuses must not wait for it."""
    path = tmp_path / "input.json"
    path.write_text(json.dumps(BAD_INPUTS["zero-job-runs"][0]))
    result = qrun("pulser", str(path), "-o", str(tmp_path / "out.json"), env=clean_env(PYTHONPROFILEIMPORTTIME="1"))
    assert result.returncode == 2 and "job_runs" in result.stderr
    imported = imported_modules(result.stderr)
    assert "jsonschema" in imported, "the import profile reached the child that checks the payload"
    assert not [name for name in imported if name.startswith("pulser")]


def test_absurdly_large_input_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    with open(path, "wb") as handle:
        handle.truncate(65 * 2**20)  # sparse: costs no disk
    result = qrun("aer", str(path), "-o", str(tmp_path / "out.json"))
    assert result.returncode == 2 and "is 65 MiB; the limit is 64 MiB" in result.stderr
    assert result.seconds < 5


def test_unknown_resource_lists_the_known_ones() -> None:
    result = qrun("nosuch", str(CIRCUITS / "bell.qasm"))
    assert result.returncode == 2
    assert "unknown resource 'nosuch'" in result.stderr and "known resources: aer, pulser, vqpu, vqpu_pulser" in result.stderr


def test_vqpu_started_by_hand_is_a_resource_outside_a_job(vqpu: Service) -> None:
    """The README's `vqpu serve sim`, then `qrun sim ...`, with no config naming `sim`."""
    home = vqpu.event_dir.parents[2]  # the fixture's default event dir: HOME/.cache/snakemake-quantum/vqpu
    result = qrun("sim", str(CIRCUITS / "bell.qasm"), "--shots", "100", env=clean_env(HOME=str(home)))
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["resource"] == {"name": "sim", "type": "vqpu"}
    assert set(counts_of(doc)) <= {"00", "11"}


def test_input_then_output_without_o_says_what_was_meant(tmp_path: Path) -> None:
    (tmp_path / "ghz5.qasm").write_text((CIRCUITS / "ghz5.qasm").read_text())
    result = qrun("ghz5.qasm", "out.json", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "qrun: error: 'ghz5.qasm' is a file, not a resource name; to write the result to out.json use: qrun ghz5.qasm -o out.json\n"
    assert os.listdir(tmp_path) == ["ghz5.qasm"]


def test_bad_shots_option_is_rejected() -> None:
    result = qrun("aer", str(CIRCUITS / "bell.qasm"), "--shots", "0")
    assert result.returncode == 2 and "--shots must be a positive integer" in result.stderr


# ------------------------------------------------------------ stop and timeout

def slow_circuit(path: Path, qubits: int = 20, layers: int = 300) -> Path:
    """Seconds of simulation; OpenQASM 2 because its parser is instant even for 12k gates."""
    rng = np.random.default_rng(0)
    lines = ["OPENQASM 2.0;", 'include "qelib1.inc";', f"qreg q[{qubits}];", f"creg c[{qubits}];"]
    for _ in range(layers):
        lines += [f"rx({rng.uniform(0, math.pi):.4f}) q[{i}];" for i in range(qubits)]
        lines += [f"cx q[{i}], q[{i + 1}];" for i in range(qubits - 1)]
    lines.append("measure q -> c;")
    path.write_text("\n".join(lines))
    return path


def test_timeout_stops_the_task_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    result = qrun("aer", str(slow_circuit(tmp_path / "slow.qasm")), "-o", str(out), "--timeout", "1")
    assert result.returncode == 4, result.stderr
    assert "did not finish within 1 s" in result.stderr
    assert not out.exists()


# Aer runs it for as long as it is let (with `h q[0];` after the reset it ends at once).
NEVER_ENDS = (CIRCUITS / "never_ends.qasm").read_text()


@pytest.mark.parametrize(
    ("env", "source"),
    [
        ({"QRMI_JOB_QPU_RESOURCES": "aer", "QRMI_JOB_QPU_TYPES": "qiskit-aer", "aer_QRMI_JOB_TIMEOUT_SECONDS": "2"}, "the job's time limit aer_QRMI_JOB_TIMEOUT_SECONDS"),
        ({"aer_QRMI_TASK_TIMEOUT": "2"}, "aer's QRMI_TASK_TIMEOUT"),
    ],
    ids=["job-time-limit", "task-timeout-setting"],
)
def test_task_that_never_ends_is_stopped_at_its_deadline_leaving_nothing(tmp_path: Path, env: dict, source: str) -> None:
    circuit = tmp_path / "never.qasm"
    circuit.write_text(NEVER_ENDS)
    out = tmp_path / "out.json"
    args = [str(circuit), "-o", str(out)] if "QRMI_JOB_QPU_RESOURCES" in env else ["aer", str(circuit), "-o", str(out)]
    result = qrun(*args, env=clean_env(**env), timeout=60)
    assert result.returncode == 4, result.stderr
    assert result.stderr.startswith(f"qrun: error: the task on aer did not finish within 2 s ({source}")
    assert result.stderr.strip().count("\n") == 0
    assert result.seconds < 10, f"took {result.seconds:.1f} s"
    assert os.listdir(tmp_path) == ["never.qasm"], "no output and no temporary file"
    assert not [p for p in quantum_processes() if str(circuit) in p], "the simulating child must be gone"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_the_task_and_exits_non_zero(tmp_path: Path, sig: signal.Signals) -> None:
    out = tmp_path / "out.json"
    process = subprocess.Popen(
        [command("qrun"), "aer", str(slow_circuit(tmp_path / "slow.qasm")), "-o", str(out)],
        env=clean_env(), stderr=subprocess.PIPE, text=True,
    )
    time.sleep(3)  # qiskit imported, task running
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 128 + sig, stderr
    assert f"stopped by {sig.name}" in stderr and "cancelled" in stderr
    assert not out.exists()
    assert os.listdir(tmp_path) == ["slow.qasm"]


def test_many_pubs_with_mixed_shots_and_parameters_each_get_their_own_counts(tmp_path: Path) -> None:
    flip = 'OPENQASM 3.0; include "stdgates.inc"; input float[64] a; qubit[1] q; bit[1] c; rx(a) q[0]; c[0] = measure q[0];'
    pubs = [[(CIRCUITS / "ghz5.qasm").read_text(), None, 100], [flip, [[0.0], [math.pi]], 100],
            [(CIRCUITS / "bell.qasm").read_text(), None, 50], [flip, [math.pi], 30]]
    path = tmp_path / "many.json"
    path.write_text(json.dumps({"program_id": "sampler", "parameters": {"pubs": pubs, "shots": 10}}))
    result = qrun("aer", str(path))
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    ghz, swept, bell, flipped = doc["pubs"]
    assert sum(counts_of(doc, 0).values()) == 100 and set(counts_of(doc, 0)) <= {"00000", "11111"}
    assert swept["shape"] == [2] and swept["registers"]["c"]["counts"] == [{"0": 100}, {"1": 100}]
    assert set(bell["registers"]["c"]["counts"]) <= {"00", "11"} and sum(bell["registers"]["c"]["counts"].values()) == 50
    assert flipped["registers"]["c"]["counts"] == {"1": 30}
    assert doc["shots"] == 100 + 200 + 50 + 30


def test_circuit_files_take_parameter_values_on_the_command_line() -> None:
    result = qrun("aer", str(CIRCUITS / "h2_ansatz.qasm"), "--program", "estimator", "--observables", "ZI,IZ,XX", "--parameters", "[0.3]")
    assert result.returncode == 0, result.stderr
    assert np.allclose(json.loads(result.stdout)["pubs"][0]["evs"], [math.cos(0.3), -math.cos(0.3), math.sin(0.3)])
    bad = qrun("aer", str(CIRCUITS / "h2_ansatz.qasm"), "--program", "estimator", "--observables", "ZI", "--parameters", "[0.3")
    assert bad.returncode == 2 and "--parameters is not valid JSON" in bad.stderr


def test_a_fake_device_noise_model_shows_its_noise(tmp_path: Path) -> None:
    (tmp_path / "qrmi_config.yaml").write_text("resources:\n  - name: noisy\n    type: qiskit-aer\n    environment: {QRMI_AER_NOISE_MODEL: fake_manila_v2, QRMI_AER_SEED: '5'}\n")
    result = qrun("noisy", str(CIRCUITS / "ghz3_qasm2.qasm"), "--shots", "4000", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    counts = counts_of(doc)
    ideal = (counts.get("000", 0) + counts.get("111", 0)) / 4000
    assert doc["metadata"]["noise_model"] == "fake_manila_v2"
    assert 0.6 < ideal < 0.995, f"a noisy GHZ-3 keeps most but not all of its weight on 000/111, got {ideal:.3f}"
    unknown = qrun("noisy", str(CIRCUITS / "bell.qasm"), cwd=tmp_path, env=clean_env(noisy_QRMI_AER_NOISE_MODEL="fake_nowhere"))
    assert unknown.returncode == 2 and "is not a fake IBM device" in unknown.stderr
