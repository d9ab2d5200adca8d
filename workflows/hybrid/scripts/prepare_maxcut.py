"""CPU stage: a QAOA (p=1) MaxCut sampler payload with a whole (gamma, beta) grid in one pub.

One task per graph sweeps every grid point, so the vQPU parses and transpiles the
circuit once and binds new parameters for each point.
"""

import json

import numpy as np
from qiskit import qasm3
from qiskit.circuit.library import qaoa_ansatz
from qiskit.quantum_info import SparsePauliOp

GRAPHS = {
    "ring4": (4, [(0, 1), (1, 2), (2, 3), (3, 0)]),
    "ring6": (6, [(i, (i + 1) % 6) for i in range(6)]),
    "k4": (4, [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]),
}

nodes, edges = GRAPHS[snakemake.wildcards.graph]
cost = SparsePauliOp.from_sparse_list([("ZZ", [i, j], 1.0) for i, j in edges], num_qubits=nodes)
circuit = qaoa_ansatz(cost, reps=1)
circuit.measure_all()
grid = snakemake.params.grid
gammas = np.linspace(0, np.pi, grid)
betas = np.linspace(0, np.pi / 2, grid)
# circuit.parameters are (beta, gamma) in Qiskit's order; qasm3 declares inputs in that order.
names = [p.name for p in circuit.parameters]
values = np.array([[[b if "β" in name else g for name in names] for b in betas] for g in gammas])
payload = {
    "program_id": "sampler",
    "parameters": {"pubs": [[qasm3.dumps(circuit), values.tolist()]], "shots": snakemake.params.shots, "version": 2},
}
with open(snakemake.output.payload, "w") as handle:
    json.dump(payload, handle)
with open(snakemake.output.grid, "w") as handle:
    json.dump({"nodes": nodes, "edges": edges, "gammas": gammas.tolist(), "betas": betas.tolist()}, handle)
