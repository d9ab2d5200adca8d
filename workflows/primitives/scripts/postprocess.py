"""Post-process (CPU): read a qrun result, write a table and a plot.

Next to each measured value the table gives the exact one from a state-vector
calculation of the logical circuit, so the table doubles as a check of the run.
"""
# ruff: noqa: F821  (Snakemake gives scripts the `snakemake` object)

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from qiskit import qasm2, qasm3  # noqa: E402
from qiskit.quantum_info import SparsePauliOp, Statevector  # noqa: E402


def load_json(path):
    with open(path) as handle:
        return json.load(handle)


def load_circuit(path):
    with open(path) as handle:
        text = handle.read()
    return qasm2.loads(text) if "OPENQASM 2" in text else qasm3.loads(text)


def sampler(result, circuit):
    (register,) = result["pubs"][0]["registers"].values()
    counts = register["counts"]
    shots = sum(counts.values())
    exact = Statevector(circuit.remove_final_measurements(inplace=False)).probabilities_dict()
    outcomes = sorted(set(counts) | {k for k, p in exact.items() if p > 1e-12})
    rows = [(b, counts.get(b, 0), counts.get(b, 0) / shots, exact.get(b, 0.0)) for b in outcomes]
    with open(snakemake.output.table, "w") as handle:
        handle.write("outcome\tcount\tprobability\texact\n")
        handle.writelines(f"{b}\t{n}\t{p:.4f}\t{e:.4f}\n" for b, n, p, e in rows)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r[2] for r in rows], 0.4, label=f"sampled ({shots} shots)", color="#fc8d62")
    ax.bar(x + 0.2, [r[3] for r in rows], 0.4, label="exact", color="#8da0cb")
    ax.set_xticks(x, [r[0] for r in rows])
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability")
    ax.set_title(f"Sampler on {result['resource']['name']}")
    ax.legend()
    return fig


def estimator(result, meta, circuit):
    pub = result["pubs"][0]
    evs, stds = np.array(pub["evs"]), np.array(pub["stds"])  # (observables, parameter sets)
    values = np.array(meta["values"])
    labels = meta["observables"]
    states = [Statevector(circuit.assign_parameters(dict(zip(circuit.parameters, v, strict=True)))) for v in values]
    exact = np.array([[s.expectation_value(SparsePauliOp(label)).real for s in states] for label in labels])
    with open(snakemake.output.table, "w") as handle:
        handle.write("\t".join(["theta0", *(f"{label}\t{label}_std\t{label}_exact" for label in labels)]) + "\n")
        for j, v in enumerate(values):
            cells = [f"{v[0]:.4f}"] + [f"{evs[k, j]:.4f}\t{stds[k, j]:.4f}\t{exact[k, j]:.4f}" for k in range(len(labels))]
            handle.write("\t".join(cells) + "\n")
    fig, ax = plt.subplots(figsize=(7, 3.8))
    fine = np.linspace(values[0, 0], values[-1, 0], 200)
    fine_states = [Statevector(circuit.assign_parameters(dict(zip(circuit.parameters, [t, *values[0, 1:]], strict=True)))) for t in fine]
    for k, label in enumerate(labels):
        line = ax.plot(fine, [s.expectation_value(SparsePauliOp(label)).real for s in fine_states], lw=1, alpha=0.6)[0]
        ax.errorbar(values[:, 0], evs[k], yerr=stds[k], fmt="o", ms=3, color=line.get_color(), label=f"⟨{label}⟩")
    ax.set_xlabel("θ0 (rad)")
    ax.set_ylabel("expectation value")
    shots = meta.get("default_shots")
    ax.set_title(f"Estimator on {result['resource']['name']}" + (f", {shots} shots per value" if shots else ", exact"))
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


result = load_json(snakemake.input.result)
circuit = load_circuit(snakemake.input.circuit)
if result["program"] == "sampler":
    fig = sampler(result, circuit)
else:
    fig = estimator(result, load_json(snakemake.input.meta), circuit)
fig.tight_layout()
fig.savefig(snakemake.output.plot, dpi=120)
