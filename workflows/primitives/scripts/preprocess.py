"""Pre-process (CPU): turn a circuit into a QRMI sampler or estimator payload.

Written the way QRMI's payload generators write them: the circuit is transpiled for
the target device (an ISA circuit on physical qubits), exported as OpenQASM 3, the
parameter values are taken in ``circuit.parameters`` order and the observables are
laid out on the physical qubits. A real QPU gets exactly this file; the simulator
runs only the qubits the circuit touches.
"""
# ruff: noqa: F821  (Snakemake gives scripts the `snakemake` object)

import json

import numpy as np
from qiskit import qasm2, qasm3
from qiskit.primitives.containers.estimator_pub import EstimatorPub
from qiskit.primitives.containers.sampler_pub import SamplerPub
from qiskit.providers.fake_provider import GenericBackendV2
from qiskit.quantum_info import SparsePauliOp
from qiskit.transpiler import CouplingMap, generate_preset_pass_manager


def dumps(circuit):
    return qasm3.dumps(circuit, disable_constants=True, allow_aliasing=True,
                       experimental=qasm3.ExperimentalFeatures.SWITCH_CASE_V1)


def isa(circuit, device_qubits):
    """The circuit for a generic line device with IBM's basis gates."""
    device = GenericBackendV2(num_qubits=device_qubits, basis_gates=["cz", "id", "rz", "sx", "x"],
                              coupling_map=CouplingMap.from_line(device_qubits), seed=11)
    return generate_preset_pass_manager(optimization_level=1, target=device.target, seed_transpiler=7).run(circuit)


def sampler(circuit, params):
    pub = SamplerPub.coerce((isa(circuit, params.device_qubits),), params.shots)
    payload = {"pubs": [[dumps(pub.circuit)]], "version": 2, "support_qiskit": False,
               "shots": params.shots, "options": {}}
    return payload, {"shots": params.shots}


def estimator(circuit, params):
    physical = isa(circuit, params.device_qubits)
    names = [p.name for p in circuit.parameters]
    sweep = np.linspace(0, 2 * np.pi, params.points)
    # Logical values in the circuit's parameter order; theta0 is swept, the rest fixed.
    values = np.array([[theta, *params.fixed] for theta in sweep])
    # One observable per row, broadcast against every parameter set: evs of shape (K, N).
    observables = [[SparsePauliOp(label).apply_layout(physical.layout)] for label in params.observables]
    pub = EstimatorPub.coerce((physical, observables, values))
    payload = {
        "pubs": [[dumps(pub.circuit), pub.observables.tolist(), pub.parameter_values.as_array(pub.circuit.parameters).tolist()]],
        "version": 2,
        "support_qiskit": False,
    }
    if params.default_shots:
        payload["options"] = {"default_shots": params.default_shots}
    meta = {"parameters": names, "values": values.tolist(), "observables": list(params.observables),
            "default_shots": params.default_shots}
    return payload, meta


def load(path):
    with open(path) as handle:
        text = handle.read()
    return qasm2.loads(text) if "OPENQASM 2" in text else qasm3.loads(text)


build = sampler if snakemake.rule == "preprocess_sampler" else estimator
payload, meta = build(load(snakemake.input[0]), snakemake.params)
with open(snakemake.output.payload, "w") as handle:
    json.dump({"program_id": "sampler" if build is sampler else "estimator", "parameters": payload}, handle)
with open(snakemake.output.meta, "w") as handle:
    json.dump(meta, handle, indent=1)
