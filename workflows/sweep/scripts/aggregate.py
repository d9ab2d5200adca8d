"""Aggregate the sweep: one row per circuit, checked against its exact probabilities.

For each circuit: the total variation distance (TVD) between the sampled and the exact
distribution, and the TVD that shot noise alone would give on average,
0.5 * sum_x sqrt(2 p_x (1 - p_x) / (pi * shots)). Their ratio is about 1 for a correct
simulator. GHZ circuits must give only all-zeros and all-ones; no circuit may give an
outcome of exact probability 0.
"""
# ruff: noqa: F821  (Snakemake gives scripts the `snakemake` object)

import json
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from snakemake_executor_plugin_quantum import results  # noqa: E402


def load(path):
    with open(path) as handle:
        return json.load(handle)


rows = []
tasks = []
for ideal_path, samples_path in zip(snakemake.input.ideal, snakemake.input.samples, strict=True):
    ideal, samples = load(ideal_path), results.load(samples_path)
    if samples.num_pubs != len(ideal["circuits"]):
        raise ValueError(f"{samples_path}: {samples.num_pubs} pub results for {len(ideal['circuits'])} circuits")
    tasks.append({"batch": ideal["batch"], "circuits": len(ideal["circuits"]), "task_id": samples.task_id,
                  "run_seconds": samples.metadata.get("run_seconds")})
    for pub, circuit in enumerate(ideal["circuits"]):
        counts = samples.counts(pub)
        shots = sum(counts.values())
        exact = circuit["probabilities"]
        outcomes = set(counts) | set(exact)
        tvd = 0.5 * sum(abs(counts.get(b, 0) / shots - exact.get(b, 0.0)) for b in outcomes)
        noise = 0.5 * sum(math.sqrt(2 * p * (1 - p) / (math.pi * shots)) for p in exact.values())
        impossible = sum(n for b, n in counts.items() if exact.get(b, 0.0) < 1e-9)
        n = circuit["qubits"]
        rows.append({
            "index": circuit["index"], "kind": circuit["kind"], "qubits": n, "depth": circuit["depth"],
            "shots": shots, "outcomes": len(counts), "tvd": tvd, "noise_tvd": noise,
            "impossible_shots": impossible,
            "all_equal_share": (counts.get("0" * n, 0) + counts.get("1" * n, 0)) / shots,
        })

rows.sort(key=lambda r: r["index"])
with open(snakemake.output.table, "w") as handle:
    columns = list(rows[0])
    handle.write("\t".join(columns) + "\n")
    for row in rows:
        handle.write("\t".join(f"{row[c]:.5f}" if isinstance(row[c], float) else str(row[c]) for c in columns) + "\n")

ghz = [r for r in rows if r["kind"] == "ghz"]
ratio = np.array([r["tvd"] / r["noise_tvd"] for r in rows if r["noise_tvd"] > 0])
summary = {
    "circuits": len(rows),
    "jobs": len(tasks),
    "shots": sum(r["shots"] for r in rows),
    "kinds": {kind: sum(r["kind"] == kind for r in rows) for kind in sorted({r["kind"] for r in rows})},
    "ghz_circuits": len(ghz),
    "ghz_all_correct": all(r["all_equal_share"] == 1.0 for r in ghz),
    "impossible_shots": sum(r["impossible_shots"] for r in rows),
    "mean_tvd": float(np.mean([r["tvd"] for r in rows])),
    "mean_tvd_over_noise": float(ratio.mean()) if ratio.size else None,
    "simulation_seconds": round(sum(t["run_seconds"] or 0 for t in tasks), 3),
    "tasks": tasks,
}
with open(snakemake.output.summary, "w") as handle:
    json.dump(summary, handle, indent=1)

fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
for n in sorted({r["qubits"] for r in rows}):
    chosen = [r for r in rows if r["qubits"] == n and r["kind"] == "random"]
    left.scatter([r["noise_tvd"] for r in chosen], [r["tvd"] for r in chosen], s=6, alpha=0.5, label=f"{n} qubits")
top = max(max(r["tvd"] for r in rows), max(r["noise_tvd"] for r in rows))
left.plot([0, top], [0, top], color="black", lw=1, ls="--", label="TVD = shot noise")
left.set_xlabel("TVD expected from shot noise")
left.set_ylabel("measured TVD to exact")
left.set_title(f"{summary['kinds'].get('random', 0)} random circuits")
left.legend(fontsize=8)
right.hist(ratio, bins=40, color="#8da0cb")
right.axvline(1.0, color="black", lw=1, ls="--")
right.set_xlabel("measured TVD / shot-noise TVD")
right.set_ylabel("circuits")
right.set_title(f"{len(rows)} circuits in {len(tasks)} jobs; GHZ all correct: {summary['ghz_all_correct']}")
fig.tight_layout()
fig.savefig(snakemake.output.plot, dpi=120)
