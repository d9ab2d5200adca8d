"""The H2 qubit Hamiltonian at 0.735 Å and its exact ground-state energy.

STO-3G, Jordan-Wigner then parity mapping with the two-qubit reduction: the standard
five-term, two-qubit Hamiltonian (electronic energy, in Hartree; add the nuclear
repulsion for the total energy).
"""
# ruff: noqa: F821  (Snakemake gives scripts the `snakemake` object)

import json

import numpy as np
from qiskit.quantum_info import SparsePauliOp

TERMS = [
    ("II", -1.052373245772859),
    ("IZ", 0.39793742484318045),
    ("ZI", -0.39793742484318045),
    ("ZZ", -0.01128010425623538),
    ("XX", 0.18093119978423156),
]
NUCLEAR_REPULSION = 0.7199689944489797  # Hartree, at 0.735 Å

hamiltonian = SparsePauliOp.from_list(TERMS)
eigenvalues = np.linalg.eigvalsh(hamiltonian.to_matrix())
with open(snakemake.output[0], "w") as handle:
    json.dump({
        "bond_length_angstrom": 0.735,
        "terms": TERMS,
        "nuclear_repulsion": NUCLEAR_REPULSION,
        "exact_energy": float(eigenvalues[0]),
        "exact_total_energy": float(eigenvalues[0]) + NUCLEAR_REPULSION,
        "spectrum": eigenvalues.tolist(),
    }, handle, indent=1)
