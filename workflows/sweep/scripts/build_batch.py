"""Build one batch of small random circuits as ONE sampler payload (one pub per circuit).

    python build_batch.py BATCH --first I --count N --seed S --shots K --qasm 2|3 -o PAYLOAD --ideal IDEAL

Circuit ``i`` of the sweep is drawn from a generator seeded with ``(seed, i)``, so a
circuit does not depend on how the sweep is cut into batches. Most circuits are random
layers of one-qubit gates and CNOTs on 3-5 qubits; a share are GHZ states, whose
outcomes are known (only all-zeros and all-ones). The exact outcome probabilities of
every circuit go to IDEAL, for the aggregation to compare the samples with.
"""

import argparse
import json

import numpy as np
from qiskit import QuantumCircuit, qasm2, qasm3
from qiskit.quantum_info import Statevector

ONE_QUBIT = ("h", "sx", "s", "t", "x")


def ghz(n):
    circuit = QuantumCircuit(n)
    circuit.h(0)
    for i in range(n - 1):
        circuit.cx(i, i + 1)
    return circuit


def random_layers(n, depth, rng):
    circuit = QuantumCircuit(n)
    for _ in range(depth):
        for q in range(n):
            gate = rng.choice(ONE_QUBIT + ("ry", "rz"))
            if gate in ("ry", "rz"):
                getattr(circuit, gate)(float(rng.uniform(0, 2 * np.pi)), q)
            else:
                getattr(circuit, gate)(q)
        order = rng.permutation(n)
        for a, b in zip(order[::2], order[1::2], strict=False):  # odd n: one qubit idles
            circuit.cx(int(a), int(b))
    return circuit


def circuit_for(index, seed, ghz_fraction, max_depth):
    rng = np.random.default_rng([seed, index])
    n = int(rng.integers(3, 6))
    if rng.random() < ghz_fraction:
        return "ghz", ghz(n)
    return "random", random_layers(n, int(rng.integers(1, max_depth + 1)), rng)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("batch", type=int)
    parser.add_argument("--first", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shots", type=int, default=256)
    parser.add_argument("--ghz-fraction", type=float, default=0.2)
    parser.add_argument("--max-depth", type=int, default=6)
    parser.add_argument("--qasm", choices=("2", "3"), default="2")
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--ideal", required=True)
    args = parser.parse_args()

    pubs, ideal = [], []
    for index in range(args.first, args.first + args.count):
        kind, circuit = circuit_for(index, args.seed, args.ghz_fraction, args.max_depth)
        probabilities = Statevector(circuit).probabilities_dict(decimals=12)
        circuit.measure_all()
        text = qasm2.dumps(circuit) if args.qasm == "2" else qasm3.dumps(circuit)
        pubs.append([text])
        ideal.append({"index": index, "kind": kind, "qubits": circuit.num_qubits, "depth": circuit.depth(),
                      "probabilities": {b: p for b, p in probabilities.items() if p > 0}})
    with open(args.output, "w") as handle:
        json.dump({"program_id": "sampler", "parameters": {"pubs": pubs, "shots": args.shots, "version": 2}}, handle)
    with open(args.ideal, "w") as handle:
        json.dump({"batch": args.batch, "shots": args.shots, "circuits": ideal}, handle)


if __name__ == "__main__":
    main()
