"""Payload parsing, RuntimeEncoder decoding, circuit loading and observable restriction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from snakemake_executor_plugin_quantum.errors import PayloadError, ResourceLimitError
from snakemake_executor_plugin_quantum.payloads import circuits, encoding, observables
from snakemake_executor_plugin_quantum.payloads.inputs import (
    apply_shots,
    decode_json,
    qasm_payload,
    read_input,
)
from snakemake_executor_plugin_quantum.payloads.model import Limits, PrimitiveTask, PulserTask
from snakemake_executor_plugin_quantum.payloads.parse import parse_payload
from snakemake_executor_plugin_quantum.payloads.programs import pub_program

BELL = 'OPENQASM 3.0; include "stdgates.inc"; qubit[2] q; bit[2] c; h q[0]; cx q[0], q[1]; c = measure q;'


def sampler(**parameters) -> dict:
    return {"program_id": "sampler", "parameters": {"pubs": [[BELL]], "version": 2, **parameters}}


def test_sampler_payload_defaults_to_qiskit_1024_shots() -> None:
    task = parse_payload(sampler())
    assert isinstance(task, PrimitiveTask) and task.shots == 1024


def test_shots_come_from_top_level_or_default_shots() -> None:
    assert parse_payload(sampler(shots=77)).shots == 77
    assert parse_payload(sampler(options={"default_shots": 33})).shots == 33


def test_bare_string_pubs_are_accepted_as_qrmi_writes_them() -> None:
    task = parse_payload({"program_id": "sampler", "parameters": {"pubs": [BELL], "shots": 5}})
    assert task.pubs[0].circuit == BELL


def test_pub_with_null_parameter_values_and_shots() -> None:
    task = parse_payload({"program_id": "sampler", "parameters": {"pubs": [[BELL, None, 12]]}})
    assert task.pubs[0].shots == 12 and task.total_shots == 12


def test_estimator_precision_follows_default_shots() -> None:
    task = parse_payload({"program_id": "estimator", "parameters": {"pubs": [[BELL, "ZZ"]], "options": {"default_shots": 10000}}})
    assert task.precision == pytest.approx(0.01)


def test_hardware_only_options_are_reported_not_failed_on() -> None:
    task = parse_payload(sampler(options={"twirling": {"enable_gates": True}, "dynamical_decoupling": {"enable": True}}))
    assert task.ignored_options == ("dynamical_decoupling", "twirling")


def test_seed_from_simulator_options() -> None:
    assert parse_payload(sampler(options={"simulator": {"seed_simulator": 42}})).seed == 42


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([1, 2], "must be a JSON object"),
        ({}, "neither a Qiskit primitive"),
        ({"program_id": "optimizer", "parameters": {"pubs": [[BELL]]}}, "'optimizer' is not one of"),
        ({"program_id": "sampler"}, "'parameters' is a required property"),
        ({"program_id": "sampler", "parameters": {}}, "pubs must be a non-empty list"),
        ({"program_id": "sampler", "parameters": {"pubs": []}}, "pubs must be a non-empty list"),
        (sampler(shots=0), "shots: must be a positive integer, got 0"),
        (sampler(shots=-5), "must be a positive integer"),
        (sampler(shots=2.5), "must be a positive integer, got 2.5"),
        (sampler(shots="100"), "must be a positive integer"),
        (sampler(shots=True), "must be a positive integer"),
        (sampler(version=1), "only version 2"),
        ({"program_id": "sampler", "parameters": {"pubs": [[BELL, None, 0]]}}, "pub 0 shots"),
        ({"program_id": "sampler", "parameters": {"pubs": [[1]]}}, "circuit must be an OpenQASM string"),
        ({"program_id": "sampler", "parameters": {"pubs": [[BELL, None, 1, 2]]}}, "sampler pub is"),
        ({"program_id": "estimator", "parameters": {"pubs": [[BELL]]}}, "estimator pub is"),
        ({"program_id": "estimator", "parameters": {"pubs": [[BELL, []]]}}, "observables must be"),
        ({"program_id": "estimator", "parameters": {"pubs": [[BELL, "ZZ", None, -1]]}}, "precision: must be a non-negative"),
        ({"sequence": {}, "job_runs": 0}, "job_runs"),
        ({"sequence": "{not json", "job_runs": 5}, "string is not valid JSON"),
        ({"sequence": {}, "job_runs": 1.5}, "job_runs"),
        ({"human_qir": "x", "input_params": {}}, "run only on alice-bob-felis"),
    ],
)
def test_bad_payloads_fail_with_one_line_naming_the_problem(payload: object, message: str) -> None:
    with pytest.raises(PayloadError) as info:
        parse_payload(payload)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_shot_limit_is_a_resource_limit() -> None:
    with pytest.raises(ResourceLimitError, match="exceeds this resource's limit of 100 shots"):
        parse_payload(sampler(shots=101), Limits(max_shots=100))


def test_pulser_sequence_may_be_object_or_string() -> None:
    sequence = {"version": "1", "register": [], "channels": {}}
    as_object = parse_payload({"sequence": sequence, "job_runs": 10})
    as_string = parse_payload({"sequence": json.dumps(sequence), "job_runs": 10})
    assert isinstance(as_object, PulserTask) and isinstance(as_string, PulserTask)
    assert json.loads(as_object.sequence) == json.loads(as_string.sequence) == sequence


def test_runtime_encoder_arrays_and_circuits_decode() -> None:
    from qiskit import QuantumCircuit
    from qiskit_ibm_runtime import RuntimeEncoder

    circuit = QuantumCircuit(1)
    circuit.h(0)
    document = json.loads(json.dumps({"a": np.arange(6.0).reshape(2, 3), "c": circuit, "z": 1 + 2j}, cls=RuntimeEncoder))
    decoded = encoding.decode(document)
    assert np.array_equal(decoded["a"], np.arange(6.0).reshape(2, 3))
    assert decoded["c"] == circuit
    assert decoded["z"] == 1 + 2j


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"__type__": "ndarray", "__value__": "!!!"}, "not valid base64"),
        ({"__type__": "ndarray", "__value__": "AAAA"}, "not a valid .npy"),
        ({"__type__": "Result", "__value__": {}}, "unsupported RuntimeEncoder type 'Result'"),
    ],
)
def test_corrupt_encoded_values_are_payload_errors(value: dict, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        encoding.decode([value])


def test_parameters_bind_in_input_declaration_order_past_ten() -> None:
    """qasm3 export renames θ[10] to _θ_10_, which sorts before _θ_2_; the inputs keep the order."""
    from qiskit import qasm3
    from qiskit.circuit.library import efficient_su2

    circuit = efficient_su2(2, reps=3)  # 16 parameters θ[0..15]
    loaded = circuits.load_circuit(qasm3.dumps(circuit))
    assert [p.name for p in loaded.parameters] == [f"_θ_{i}_" for i in range(16)]
    values = np.linspace(0.1, 1.6, 16)
    bound = loaded.circuit.assign_parameters(dict(zip(loaded.parameters, values, strict=True)))
    from qiskit.quantum_info import Statevector

    assert Statevector(bound).equiv(Statevector(circuit.assign_parameters(values)))


def test_wrong_parameter_count_is_named() -> None:
    loaded = circuits.load_circuit('OPENQASM 3.0; include "stdgates.inc"; input float[64] a; input float[64] b; qubit[1] q; rx(a) q[0]; rz(b) q[0];')
    with pytest.raises(PayloadError, match="the circuit has 2 parameters but parameter_values give 3 per set"):
        circuits.bindings(loaded, [1, 2, 3], "pub 0", 100)
    with pytest.raises(PayloadError, match="no parameter_values"):
        circuits.bindings(loaded, None, "pub 0", 100)
    assert circuits.bindings(loaded, [[1, 2], [3, 4], [5, 6]], "pub 0", 100).shape == (3,)


def test_isa_circuit_compacts_to_its_active_qubits() -> None:
    text = 'OPENQASM 3.0; include "stdgates.inc"; bit[2] meas; rz(0.5) $60; sx $60; cz $60, $61; barrier $60, $61, $62; meas[0] = measure $60; meas[1] = measure $61;'
    loaded = circuits.load_circuit(text)
    assert loaded.physical and loaded.circuit.num_qubits == 63
    compact = circuits.compact(loaded.circuit)
    assert compact.active == (60, 61) and compact.circuit.num_qubits == 2 and compact.width == 63


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('OPENQASM 3.0; include "stdgates.inc"; qubit[2] q; h q[0]; cx q[0] q[1];', "syntax error at line 1 column"),
        ('OPENQASM 3.0; include "stdgates.inc"; qubit[2] q; frobnicate q[0];', "gate 'frobnicate' is not defined"),
        ('OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; frob q[0];', "invalid OpenQASM 2"),
    ],
)
def test_bad_qasm_is_one_line_payload_error(text: str, message: str) -> None:
    with pytest.raises(PayloadError) as info:
        circuits.load_circuit(text, "pub 0")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_observables_on_idle_qubits_reduce_exactly() -> None:
    """<Z> on an idle qubit is 1 and <X> is 0: the reduced observable has the same value."""
    from qiskit import QuantumCircuit
    from qiskit.quantum_info import SparsePauliOp, Statevector

    full = QuantumCircuit(5)
    full.h(1)
    full.cx(1, 3)
    op = SparsePauliOp.from_list([("ZIZII", 0.5), ("IXIXI", 2.0), ("XZIZI", 7.0), ("IIIIZ", 1.5)])
    exact = Statevector(full).expectation_value(op).real
    compact = circuits.compact(full)
    terms = {label: coeff.real for label, coeff in op.to_list()}
    reduced = observables.restrict(observables.coerce(terms, "pub 0"), compact.active, 5, False, "pub 0")
    reduced_op = SparsePauliOp.from_list(list(reduced.tolist().items()))
    assert compact.active == (1, 3)
    assert Statevector(compact.circuit).expectation_value(reduced_op).real == pytest.approx(exact)


def test_observable_size_mismatch_is_named() -> None:
    with pytest.raises(PayloadError, match="observables act on 3 qubits but the circuit has 2"):
        observables.restrict(observables.coerce("ZZZ", "pub 0"), (0, 1), 2, False, "pub 0")


def test_json_nesting_and_syntax_errors_are_clean() -> None:
    with pytest.raises(PayloadError, match="nested too deeply"):
        decode_json("[" * 200_000 + "]" * 200_000)
    with pytest.raises(PayloadError, match="not valid JSON"):
        decode_json("{'single': 'quotes'}")


def test_circuit_file_becomes_a_sampler_payload_and_shots_apply() -> None:
    payload = qasm_payload(BELL, shots=10)
    assert payload == {"program_id": "sampler", "parameters": {"pubs": [[BELL]], "version": 2, "shots": 10}}
    pulser = {"sequence": {}, "job_runs": 3}
    apply_shots(pulser, 50)
    assert pulser["job_runs"] == 50


# ------------------------------------------------ bare primitive inputs (no program_id)

QRMI_EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "qrmi_task_runner"
EST = ["ZZ", {"ZZ": 0.5, "XX": -1}, ["ZZ", "XX"], [[{"ZZ": 1.0}]], {"__type__": "ObservablesArray", "__value__": ["ZZ"]}]


@pytest.mark.parametrize("program", ["sampler", "estimator"])
def test_qrmi_params_only_input_reads_as_the_task_runner_input(program: str) -> None:
    bare = read_input(str(QRMI_EXAMPLES / f"{program}_input_fake_marrakesh_params_only.json"))
    assert bare == read_input(str(QRMI_EXAMPLES / f"{program}_input_fake_marrakesh.json"))
    assert bare["program_id"] == program


@pytest.mark.parametrize(
    ("pub", "program"),
    [
        (BELL, "sampler"),
        ([BELL], "sampler"),
        ([BELL, None, 100], "sampler"),
        ([BELL, [0.1, 0.2]], "sampler"),
        ([BELL, [[0.1], [2]], 10], "sampler"),
        ([BELL, {"__type__": "ndarray", "__value__": "eJwLZQ=="}], "sampler"),
        ([BELL, {"__type__": "ndarray", "__value__": [["ZZ"]]}], "estimator"),
        *[([BELL, observables], "estimator") for observables in EST],
        ([BELL, "ZZ", [0.3], 0.01], "estimator"),
        ([BELL, [], None, None], "estimator"),
        ([BELL, []], None),
        ([BELL, [[]]], None),
        ([BELL, 0.5], None),
        ([BELL, [True]], None),
        ([BELL, {"__type__": "complex", "__value__": [1, 0]}], None),
    ],
)
def test_pub_shape_decides_the_program_only_when_unambiguous(pub: object, program: str | None) -> None:
    assert pub_program(pub) == program


def test_undecidable_bare_input_names_the_program_flag(tmp_path: Path) -> None:
    path = tmp_path / "params.json"
    path.write_text(json.dumps({"pubs": [[BELL, []]], "version": 2}))
    with pytest.raises(PayloadError, match=r"fit both primitives; say which with --program sampler or --program estimator$"):
        read_input(str(path))
    assert read_input(str(path), program="estimator")["program_id"] == "estimator"


def test_program_flag_that_contradicts_the_pubs_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "params.json"
    path.write_text(json.dumps({"pubs": [[BELL, [0.1]], [BELL, "ZZ", [0.2]]]}))
    with pytest.raises(PayloadError, match="pub 0 is a sampler pub .* but pub 1 is an estimator pub"):
        read_input(str(path), program="sampler")
    path.write_text(json.dumps({"pubs": [[BELL, "ZZ", [0.2]]]}))
    with pytest.raises(PayloadError, match=r"^--program sampler was given, but pub 0 of .* is an estimator pub .*; use --program estimator$"):
        read_input(str(path), program="sampler")


def test_payload_with_pubs_but_no_program_id_says_so() -> None:
    with pytest.raises(PayloadError, match="payload has pubs but no program_id"):
        parse_payload({"pubs": [[BELL]], "version": 2})


# ------------------------------------------------ parameter values are real numbers

PARAM = 'OPENQASM 3.0; include "stdgates.inc"; input float[64] a; qubit[1] q; bit[1] c; rx(a) q[0]; c[0] = measure q[0];'
NOT_REAL = [
    (["0.1"], "parameter_values[0] is the string '0.1'"),
    ([[0.2], ["0.1"]], "parameter_values[1][0] is the string '0.1'"),
    ([True], "parameter_values[0] is the boolean true"),
    ([float("nan")], "parameter_values[0] is NaN"),
    ([[0.1], [float("inf")]], "parameter_values[1][0] is infinity"),
    ([None], "parameter_values[0] is null"),
    ({"a": 0.1}, "parameter_values is an object"),
    (np.array(["0.1"]), "parameter_values[0] is the string '0.1'"),
    (np.array([[True], [False]]), "parameter_values[0][0] is the boolean true"),
    (np.array([[0.5], [-np.inf]]), "parameter_values[1][0] is -infinity"),
    (np.array([0.5, "x"], dtype=object), "parameter_values[1] is the string 'x'"),
    (np.array([1 + 2j]), "parameter_values[0] is the complex number (1+2j)"),
]


@pytest.mark.parametrize("program", ["sampler", "estimator"])
@pytest.mark.parametrize(("values", "message"), NOT_REAL, ids=[m.split(" is ")[1] + f"-{type(v).__name__}" for v, m in NOT_REAL])
def test_parameter_values_that_are_not_real_numbers_are_refused_naming_the_pub(program: str, values: object, message: str) -> None:
    from qiskit_ibm_runtime import RuntimeEncoder

    bad = [PARAM, values] if program == "sampler" else [PARAM, "Z", values]
    # As a file would carry them: JSON (arrays RuntimeEncoder-encoded), NaN and Infinity included.
    pubs = json.loads(json.dumps([[PARAM, [0.3]] if program == "sampler" else [PARAM, "Z", [0.3]], bad], cls=RuntimeEncoder))
    with pytest.raises(PayloadError) as info:
        parse_payload({"program_id": program, "parameters": {"pubs": pubs}})
    assert str(info.value) == f"pub 1: {message}; parameter values must be real numbers"


@pytest.mark.parametrize("values", [[0.1], [[1], [-2.5]], np.array([[0.1], [2.0]]), np.array([[3]], dtype=np.int64)], ids=["list", "nested", "float-array", "int-array"])
def test_integer_and_float_parameter_values_are_accepted(values: object) -> None:
    from qiskit_ibm_runtime import RuntimeEncoder

    pubs = json.loads(json.dumps([[PARAM, values]], cls=RuntimeEncoder))
    task = parse_payload({"program_id": "sampler", "parameters": {"pubs": encoding.decode(pubs)}})
    assert np.asarray(task.pubs[0].parameter_values, dtype=float).size == np.asarray(values).size
