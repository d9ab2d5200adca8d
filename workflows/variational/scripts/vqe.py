"""VQE: scipy minimises the energy; each evaluation is one estimator task on the vQPU.

A plain Qiskit program: ``EstimatorV2()`` finds the vQPU the job was given in the
QRMI job environment, so the same script runs against a QPU by changing the rule's
resources.
"""
# ruff: noqa: F821  (Snakemake gives scripts the `snakemake` object)

import json
import time

from qiskit import qasm3
from qiskit.quantum_info import SparsePauliOp
from scipy.optimize import minimize

from snakemake_executor_plugin_quantum.primitives import EstimatorV2

with open(snakemake.input.hamiltonian) as handle:
    reference = json.load(handle)
hamiltonian = SparsePauliOp.from_list([tuple(term) for term in reference["terms"]])
with open(snakemake.input.ansatz) as handle:
    ansatz = qasm3.loads(handle.read())

trace = []
resource = {}
started = time.perf_counter()
with EstimatorV2(default_precision=snakemake.params.precision) as estimator:

    def energy(x):
        results = estimator.run([(ansatz, hamiltonian, list(x))]).result()
        resource.update(results.metadata["resource"])
        result = results[0]
        value = float(result.data.evs)
        trace.append({"evaluation": len(trace) + 1, "theta": [float(v) for v in x], "energy": value,
                      "std": float(result.data.stds)})
        return value

    found = minimize(energy, [snakemake.params.theta0], method=snakemake.params.optimizer, tol=snakemake.params.tol,
                     options={"maxiter": snakemake.params.maxiter})

with open(snakemake.output[0], "w") as handle:
    json.dump({
        "initial_theta": snakemake.params.theta0,
        "optimizer": snakemake.params.optimizer,
        "resource": resource,
        "converged": bool(found.success),
        "message": str(found.message),
        "theta": float(found.x[0]),
        "energy": float(found.fun),
        "exact_energy": reference["exact_energy"],
        "error": float(found.fun) - reference["exact_energy"],
        "evaluations": len(trace),
        "seconds": round(time.perf_counter() - started, 3),
        "trace": trace,
    }, handle, indent=1)
