"""Payloads made the way QRMI's own generator scripts make them.

QRMI's ``gen_sampler_inputs.py`` / ``gen_estimator_inputs.py`` transpile for a real
device target at optimization level 1, export with
``qasm3.dumps(..., disable_constants=True, allow_aliasing=True, experimental=SWITCH_CASE_V1)``,
take parameter values from ``pub.parameter_values.as_array(pub.circuit.parameters)``
and observables from ``pub.observables.tolist()``, and write JSON with
qiskit-ibm-runtime's ``RuntimeEncoder``. We do the same against FakeTorino (133 qubits).
"""

from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np


@functools.cache
def device() -> Any:
    from qiskit_ibm_runtime.fake_provider import FakeTorino

    return FakeTorino()


@functools.cache
def pass_manager() -> Any:
    from qiskit.transpiler import generate_preset_pass_manager

    return generate_preset_pass_manager(optimization_level=1, target=device().target)


def dumps(circuit: Any) -> str:
    from qiskit import qasm3

    return qasm3.dumps(circuit, disable_constants=True, allow_aliasing=True, experimental=qasm3.ExperimentalFeatures.SWITCH_CASE_V1)


def encode(document: dict) -> dict:
    """Round-trip through RuntimeEncoder, as the generators write files."""
    from qiskit_ibm_runtime import RuntimeEncoder

    return json.loads(json.dumps(document, cls=RuntimeEncoder))


def sampler_payload(circuit: Any, parameter_values: Any = None, shots: int = 4000, encoded_arrays: bool = False) -> tuple[dict, Any]:
    """(payload, isa_circuit) for a SamplerV2 job on the fake device."""
    from qiskit.primitives.containers.sampler_pub import SamplerPub

    isa = pass_manager().run(circuit)
    pub = SamplerPub.coerce((isa, parameter_values) if parameter_values is not None else (isa,), shots)
    qasm = dumps(pub.circuit)
    if circuit.num_parameters:
        values = pub.parameter_values.as_array(pub.circuit.parameters)
        pubs = [(qasm, values if encoded_arrays else values.tolist())]
    else:
        pubs = [(qasm,)]
    payload = {"pubs": pubs, "version": 2, "support_qiskit": False, "shots": shots, "options": {}}
    return {"program_id": "sampler", "parameters": encode(payload)}, isa


def estimator_payload(circuit: Any, observable: Any, parameter_values: Any, default_shots: int | None = None, encoded_arrays: bool = False) -> tuple[dict, Any]:
    from qiskit.primitives.containers.estimator_pub import EstimatorPub

    isa = pass_manager().run(circuit)
    isa_observable = observable.apply_layout(isa.layout)
    pub = EstimatorPub.coerce((isa, isa_observable, parameter_values))
    values = pub.parameter_values.as_array(pub.circuit.parameters)
    payload: dict[str, Any] = {
        "pubs": [(dumps(pub.circuit), pub.observables.tolist(), values if encoded_arrays else values.tolist())],
        "version": 2,
        "support_qiskit": False,
        "resilience_level": 1,
    }
    if default_shots:
        payload["options"] = {"default_shots": default_shots}
    return {"program_id": "estimator", "parameters": encode(payload)}, isa


def exact_probabilities(circuit: Any, parameter_values: Any = None) -> dict[str, float]:
    from qiskit.quantum_info import Statevector

    bound = circuit.assign_parameters(parameter_values) if parameter_values is not None else circuit
    return Statevector(bound.remove_final_measurements(inplace=False)).probabilities_dict()


def within_sigmas(counts: dict[str, int], probabilities: dict[str, float], shots: int, sigmas: float = 5.0) -> list[str]:
    """Outcomes whose count is outside ``sigmas`` binomial standard deviations."""
    bad = []
    for outcome in set(counts) | {k for k, p in probabilities.items() if p > 0}:
        p = probabilities.get(outcome, 0.0)
        expected = shots * p
        sigma = max(np.sqrt(shots * p * (1 - p)), 1.0)
        if abs(counts.get(outcome, 0) - expected) > sigmas * sigma:
            bad.append(f"{outcome}: {counts.get(outcome, 0)} vs {expected:.1f}±{sigma:.1f}")
    return bad
