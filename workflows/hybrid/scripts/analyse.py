"""GPU-tagged stage: turn the samples into figures and a summary.

GHZ: the share of all-zeros and all-ones outcomes (1 for an ideal GHZ state).
QAOA MaxCut: the mean cut over the (gamma, beta) grid, and the best cut found
against the exact optimum. Rydberg atoms: the excited fraction against pulse length.
"""

import itertools
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from snakemake_executor_plugin_quantum import results  # noqa: E402


def load(path):
    with open(path) as handle:
        return json.load(handle)


def cut(bits, edges):
    return sum(bits[-1 - i] != bits[-1 - j] for i, j in edges)


def mean_cut(counts, edges):
    return sum(cut(b, edges) * c for b, c in counts.items()) / sum(counts.values())


summary = {"gpu": os.environ.get("CUDA_VISIBLE_DEVICES", "none")}

# GHZ ---------------------------------------------------------------------
sizes, ideal = [], []
for path in snakemake.input.ghz:
    counts = results.load(path).counts()
    n = len(next(iter(counts)))
    total = sum(counts.values())
    sizes.append(n)
    ideal.append((counts.get("0" * n, 0) + counts.get("1" * n, 0)) / total)
summary["ghz"] = {str(n): round(share, 4) for n, share in zip(sizes, ideal, strict=True)}
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.bar([str(n) for n in sizes], ideal, color="#fc8d62")
ax.set_ylim(0, 1.05)
ax.set_xlabel("qubits")
ax.set_ylabel("P(0…0) + P(1…1)")
ax.set_title("GHZ states sampled on vqpu_ghz")
fig.tight_layout()
fig.savefig(snakemake.output.ghz, dpi=120)

# QAOA MaxCut -------------------------------------------------------------
graphs = list(zip(snakemake.input.maxcut, snakemake.input.grids, strict=True))
fig, axes = plt.subplots(1, len(graphs), figsize=(4.2 * len(graphs), 3.8), squeeze=False)
summary["maxcut"] = {}
for ax, (sample_path, grid_path) in zip(axes[0], graphs, strict=True):
    grid = load(grid_path)
    edges = [tuple(e) for e in grid["edges"]]
    nodes = grid["nodes"]
    optimum = max(cut("".join(b), edges) for b in itertools.product("01", repeat=nodes))
    per_point = results.load(sample_path).counts()  # counts per (gamma, beta), an array of the grid's shape
    mean = np.array([mean_cut(point, edges) for point in per_point.flat]).reshape(per_point.shape)
    best_found = max(cut(b, edges) for point in per_point.flat for b in point)
    name = os.path.basename(sample_path)[len("maxcut_"):-len(".json")]
    summary["maxcut"][name] = {"optimum": optimum, "best_sampled": best_found, "best_mean_cut": round(float(mean.max()), 4)}
    image = ax.imshow(mean, origin="lower", aspect="auto", cmap="viridis",
                      extent=[grid["betas"][0], grid["betas"][-1], grid["gammas"][0], grid["gammas"][-1]])
    ax.set_xlabel("β")
    ax.set_ylabel("γ")
    ax.set_title(f"{name}: optimum {optimum}, best mean {mean.max():.2f}")
    fig.colorbar(image, ax=ax, label="mean cut")
fig.tight_layout()
fig.savefig(snakemake.output.maxcut, dpi=120)

# Rydberg -------------------------------------------------------------------
durations, excited = [], []
for path in snakemake.input.rydberg:
    result = results.load(path)
    counts = result.counts()
    shots = sum(counts.values())
    atoms = len(result.atoms)
    durations.append(int(os.path.basename(path)[len("rydberg_"):-len(".json")]))
    excited.append(sum(b.count("1") * c for b, c in counts.items()) / (shots * atoms))
order = np.argsort(durations)
summary["rydberg"] = {str(durations[i]): round(excited[i], 4) for i in order}
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(np.array(durations)[order], np.array(excited)[order], "o-", color="#8da0cb")
ax.set_xlabel("pulse duration (ns)")
ax.set_ylabel("Rydberg fraction")
ax.set_title("2x2 atom square under a global pulse (vqpu_atoms)")
fig.tight_layout()
fig.savefig(snakemake.output.rydberg, dpi=120)

with open(snakemake.output.summary, "w") as handle:
    json.dump(summary, handle, indent=2)
