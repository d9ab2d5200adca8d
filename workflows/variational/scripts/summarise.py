"""The VQE runs against the exact ground energy: a summary and two plots."""
# ruff: noqa: F821  (Snakemake gives scripts the `snakemake` object)

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def load(path):
    with open(path) as handle:
        return json.load(handle)


reference = load(snakemake.input.hamiltonian)
exact = reference["exact_energy"]
runs = [load(path) for path in snakemake.input.runs]
landscape = load(snakemake.input.landscape)
best = min(runs, key=lambda run: run["energy"])

summary = {
    "bond_length_angstrom": reference["bond_length_angstrom"],
    "exact_energy": exact,
    "vqe_energy": best["energy"],
    "error": best["energy"] - exact,
    "theta": best["theta"],
    "total_energy": best["energy"] + reference["nuclear_repulsion"],
    "runs": [{k: run[k] for k in ("initial_theta", "optimizer", "resource", "converged", "theta", "energy", "error", "evaluations", "seconds")}
             for run in runs],
}
with open(snakemake.output.summary, "w") as handle:
    json.dump(summary, handle, indent=2)

# Optimisation trace: energy per evaluation, and the distance to the exact energy.
fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.5, 5.5), sharex=True)
for run in runs:
    steps = [t["evaluation"] for t in run["trace"]]
    energies = np.array([t["energy"] for t in run["trace"]])
    label = f"start θ={run['initial_theta']:g}: {run['energy']:.6f} Ha"
    line = top.plot(steps, energies, "o-", ms=3, label=label)[0]
    bottom.semilogy(steps, np.maximum(np.abs(energies - exact), 1e-12), "o-", ms=3, color=line.get_color())
top.axhline(exact, color="black", ls="--", lw=1, label=f"exact {exact:.6f} Ha")
top.set_ylabel("energy (Ha)")
top.set_title(f"VQE for H2 at {reference['bond_length_angstrom']} Å ({runs[0]['optimizer']} on {runs[0]['resource']['name']})")
top.legend(fontsize=8)
bottom.axhline(1e-2, color="grey", ls=":", lw=1)
bottom.set_xlabel("energy evaluation (one estimator task each)")
bottom.set_ylabel("|E − E_exact| (Ha)")
fig.tight_layout()
fig.savefig(snakemake.output.trace, dpi=120)

# The landscape the optimiser walked on.
fig, ax = plt.subplots(figsize=(6.5, 3.8))
ax.plot(landscape["theta"], landscape["energy"], color="#8da0cb", label="E(θ), one estimator sweep")
for run in runs:
    wrapped = [(t["theta"][0] + np.pi) % (2 * np.pi) - np.pi for t in run["trace"]]  # E is 2π-periodic
    ax.plot(wrapped, [t["energy"] for t in run["trace"]], ".", ms=5,
            label=f"VQE from θ={run['initial_theta']:g}")
ax.axhline(exact, color="black", ls="--", lw=1, label="exact ground energy")
ax.set_xlabel("θ (rad)")
ax.set_ylabel("energy (Ha)")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(snakemake.output.landscape, dpi=120)
