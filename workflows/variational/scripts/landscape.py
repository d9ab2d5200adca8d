"""E(theta) on a grid: the whole sweep is one estimator task (one pub, many parameter sets)."""
# ruff: noqa: F821  (Snakemake gives scripts the `snakemake` object)

import json

import numpy as np
from qiskit import qasm3
from qiskit.quantum_info import SparsePauliOp

from snakemake_executor_plugin_quantum.primitives import EstimatorV2

with open(snakemake.input.hamiltonian) as handle:
    reference = json.load(handle)
hamiltonian = SparsePauliOp.from_list([tuple(term) for term in reference["terms"]])
with open(snakemake.input.ansatz) as handle:
    ansatz = qasm3.loads(handle.read())

thetas = np.linspace(-np.pi, np.pi, snakemake.params.points)
with EstimatorV2(default_precision=snakemake.params.precision) as estimator:
    result = estimator.run([(ansatz, hamiltonian, thetas.reshape(-1, 1))]).result()[0]
with open(snakemake.output[0], "w") as handle:
    json.dump({"theta": thetas.tolist(), "energy": result.data.evs.tolist(), "std": result.data.stds.tolist()}, handle)
