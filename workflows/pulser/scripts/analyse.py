"""Analysis: Rydberg fraction and crystal probability against the final detuning."""
# ruff: noqa: F821  (Snakemake gives scripts the `snakemake` object)

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

deltas = snakemake.params.deltas
results = []
for path in snakemake.input:
    with open(path) as handle:
        results.append(json.load(handle))
atoms = len(results[0]["atoms"])
crystal = "".join("1" if i % 2 == 0 else "0" for i in range(atoms))  # 101..., the antiferromagnet
outcomes = sorted({b for r in results for b in r["counts"]}, key=lambda b: (b.count("1"), b))

rows = []
for delta, result in zip(deltas, results, strict=True):
    counts, shots = result["counts"], result["shots"]
    fraction = sum(b.count("1") * n for b, n in counts.items()) / (shots * atoms)
    rows.append({"final_detuning": delta, "shots": shots, "rydberg_fraction": round(fraction, 4),
                 "p_crystal": round(counts.get(crystal, 0) / shots, 4), "counts": counts})
with open(snakemake.output.summary, "w") as handle:
    json.dump({"atoms": atoms, "crystal": crystal, "resource": results[0]["resource"], "sweep": rows}, handle, indent=1)

fig, ax = plt.subplots(figsize=(6, 3.6))
ax.plot(deltas, [r["rydberg_fraction"] for r in rows], "o-", color="#8da0cb", label="Rydberg fraction")
ax.plot(deltas, [r["p_crystal"] for r in rows], "s-", color="#fc8d62", label=f"P({crystal})")
ax.set_ylim(0, 1.02)
ax.set_xlabel("final detuning δ (rad/µs)")
ax.set_ylabel("probability")
ax.set_title(f"{atoms}-atom chain, adiabatic sweep ({results[0]['resource']['name']})")
ax.legend()
fig.tight_layout()
fig.savefig(snakemake.output.rydberg, dpi=120)

probabilities = np.array([[r["counts"].get(b, 0) / r["shots"] for r in rows] for b in outcomes])
fig, ax = plt.subplots(figsize=(6.5, 0.35 * len(outcomes) + 1.6))
image = ax.imshow(probabilities, aspect="auto", cmap="magma", vmin=0, vmax=1)
ax.set_xticks(range(len(deltas)), [f"{d:g}" for d in deltas])
ax.set_yticks(range(len(outcomes)), outcomes)
ax.set_xlabel("final detuning δ (rad/µs)")
ax.set_ylabel("outcome (1 = Rydberg)")
fig.colorbar(image, ax=ax, label="probability")
fig.tight_layout()
fig.savefig(snakemake.output.counts, dpi=120)
