"""Write the QRMI task runner's example inputs, as QRMI's own generators make them.

Origin: qiskit-community/qrmi, ``examples/task_runner/qiskit/gen_sampler_inputs.py`` and
``gen_estimator_inputs.py``. Each writes two files for a backend: ``<program>_input_<backend>.json``
(``{"parameters": ..., "program_id": ...}``, the task runner's input) and
``<program>_input_<backend>_params_only.json`` (the same ``parameters`` alone, as
``json.dump(params, cls=RuntimeEncoder)`` leaves them). This script follows their recipe
step by step: a preset pass manager at optimization level 1 for the device target, the
same circuits (``efficient_su2`` with linear entanglement and ``measure_all``, random
parameter values, 10,000 shots; a ``QAOAAnsatz`` with reps=2 of 0.5·ZZ over the device's
coupling-map edges, parameter values [0.1, 0.2, 0.3, 0.4], ``resilience_level`` 1,
``options.default_shots`` 5000), the same OpenQASM 3 export flags and JSON keys.

What differs, so that the files need no IBM account and simulate in a CI budget: the
device is qiskit-ibm-runtime's ``FakeMarrakesh`` (the README's example backend, 156
qubits) instead of a live backend's configuration; the sampler ansatz has 6 qubits
instead of 127; the estimator's graph is the coupling map restricted to qubits 0..5
instead of the whole device; the random values come from a seeded generator; the
transpiler is seeded. Run from anywhere: ``python tests/data/qrmi_task_runner/generate.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from qiskit import qasm3
from qiskit.circuit.library import QAOAAnsatz, efficient_su2
from qiskit.primitives.containers.estimator_pub import EstimatorPub
from qiskit.primitives.containers.sampler_pub import SamplerPub
from qiskit.quantum_info import SparsePauliOp
from qiskit.transpiler import generate_preset_pass_manager
from qiskit_ibm_runtime import RuntimeEncoder
from qiskit_ibm_runtime.fake_provider import FakeMarrakesh

BACKEND = "fake_marrakesh"
QUBITS = 6
HERE = Path(__file__).resolve().parent


def export(circuit) -> str:
    return qasm3.dumps(circuit, disable_constants=True, allow_aliasing=True, experimental=qasm3.ExperimentalFeatures.SWITCH_CASE_V1)


def sampler_input(pm) -> dict:
    circuit = efficient_su2(QUBITS, entanglement="linear")
    circuit.measure_all()
    param_values = np.random.default_rng(2025).random(circuit.num_parameters)
    shots = 10000
    pub = SamplerPub.coerce((pm.run(circuit), param_values), shots)
    param_array = pub.parameter_values.as_array(pub.circuit.parameters).tolist()
    return {"pubs": [(export(pub.circuit), param_array)], "version": 2, "support_qiskit": False, "shots": shots, "options": {}}


def estimator_input(pm, target) -> dict:
    edges = [tuple(e) for e in target.build_coupling_map().get_edges() if max(e) < QUBITS]
    observable = SparsePauliOp.from_sparse_list([("ZZ", [i, j], 0.5) for i, j in edges], num_qubits=QUBITS)
    circuit = QAOAAnsatz(observable, reps=2)
    isa_circuit = pm.run(circuit)
    isa_observable = observable.apply_layout(isa_circuit.layout)
    pub = EstimatorPub.coerce((isa_circuit, isa_observable, [0.1, 0.2, 0.3, 0.4]))
    param_array = pub.parameter_values.as_array(pub.circuit.parameters).tolist()
    return {
        "pubs": [(export(pub.circuit), pub.observables.tolist(), param_array)],
        "version": 2,
        "support_qiskit": False,
        "resilience_level": 1,
        "options": {"default_shots": 5000},
    }


def dump(data: dict, filename: str) -> None:
    with open(HERE / filename, "w", encoding="utf-8") as handle:
        json.dump(data, handle, cls=RuntimeEncoder, indent=2)
        handle.write("\n")


def main() -> None:
    target = FakeMarrakesh().target
    pm = generate_preset_pass_manager(optimization_level=1, target=target, seed_transpiler=7)
    for program, params in (("sampler", sampler_input(pm)), ("estimator", estimator_input(pm, target))):
        dump({"parameters": params, "program_id": program}, f"{program}_input_{BACKEND}.json")
        dump(params, f"{program}_input_{BACKEND}_params_only.json")


if __name__ == "__main__":
    main()
