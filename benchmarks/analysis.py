"""Where the time goes: paragraphs that put numbers from several benchmarks side by side.

Every sentence is built from medians measured in this run; a paragraph is left out when
a benchmark it needs did not run.
"""

from __future__ import annotations

from .common import Section


def _pick_n(data: dict[str, float], prefix: str, wanted: int = 200) -> int | None:
    sizes = sorted(int(k[len(prefix):]) for k in data if k.startswith(prefix))
    if not sizes:
        return None
    return wanted if wanted in sizes else sizes[-1]


def paragraphs(sections: list[Section]) -> list[str]:
    data = {s.id: s.data for s in sections if not s.skipped and s.data}
    b1, b2, b4, b6, b7 = (data.get(k) for k in ("B1", "B2", "B4", "B6", "B7"))
    out: list[str] = []

    if b2:
        n = _pick_n(b2, "ours_rate_")
        if n is not None:
            per_job = 1 / b2[f"ours_rate_{n}"]
            text = (f"**Per sampling job.** In B2 (N={n}) ours finishes a job every {per_job * 1e3:.0f} ms once running "
                    f"(first to last result, 2 jobs at a time); the simulation itself is {b2['sim'] * 1e3:.1f} ms.")
            if b7 and "quantum_rate" in b7:
                text += (f" A trivial `touch` job costs {1e3 / b7['quantum_rate']:.0f} ms through the same executor "
                         f"(B7, {b7['count']:.0f} jobs): Snakemake's own per-job scheduling and bookkeeping plus a `bash`.")
            if b6:
                text += (f" B2's jobs start no process: the executor sends a plain `qrun` command's request itself. "
                         f"As a process (`--quantum-qrun-subprocess`, or any command with shell syntax) one `qrun` "
                         f"would add {b6['qrun'] * 1e3:.0f} ms (B6): {b6['floor'] * 1e3:.0f} ms the Python "
                         f"interpreter, {(b6['imports'] - b6['floor']) * 1e3:.0f} ms importing our modules, "
                         f"{(b6['qrun'] - b6['imports']) * 1e3:.0f} ms the request and the rest.")
            out.append(text)
        n = _pick_n(b2, "ours_first_")
        if n is not None:
            first = b2[f"ours_first_{n}"]
            text = f"**Fixed cost.** Ours reaches its first result {first:.1f} s after `snakemake` starts (B2, N={n})."
            if b1 and "vqpu_start" in b1:
                share = b1["vqpu_start"] / first
                text += (f" Starting a vQPU by itself took {b1['vqpu_start']:.1f} s in B1 (`vqpu serve` to its event "
                         "file: importing qiskit and qiskit-aer, then warming the lane worker processes; a separate "
                         "start, so the two figures are not additive)")
                text += ": the sidecar's start is most of that fixed cost." if share > 0.5 else "."
            if b7 and "quantum_first" in b7:
                text += f" Snakemake itself shows a trivial job's first output after {b7['quantum_first']:.1f} s (B7)."
            wall = b2.get("ours_wall_200")
            if wall:
                text += (f" At N=200 the fixed part is {first / wall * 100:.0f}% of ours' {wall:.1f} s wall time, "
                         f"{first / 200 * 1e3:.0f} ms per job when spread over the jobs.")
            out.append(text)

    if b4:
        text = (f"**Wide DAGs.** With {b4['jobs']:.0f} ready jobs Snakemake's default ILP scheduler sustained "
                f"{b4['ilp_quantum']:.1f} jobs/s under our executor and {b4['ilp_local']:.1f} under the local one; "
                f"the greedy scheduler {b4['greedy_quantum']:.1f} and {b4['greedy_local']:.1f}")
        if "quantum_quantum" in b4:
            text += (f"; this package's scheduler (`profiles/local`) {b4['quantum_quantum']:.1f} and "
                     f"{b4.get('quantum_local', float('nan')):.1f}")
        text += " (B4)."
        same = abs(b4["ilp_quantum"] - b4["ilp_local"]) <= 0.25 * b4["ilp_local"]
        if same and b4.get("quantum_quantum", b4["greedy_quantum"]) > 1.5 * b4["ilp_quantum"]:
            text += " Our executor's per-job hook is not what limits wide workflows; Snakemake's job selection is."
        elif not same:
            text += (f" Under the same scheduler our executor runs at {b4['ilp_quantum'] / b4['ilp_local']:.2f}x the "
                     "local executor's rate.")
        out.append(text)

    b10 = data.get("B10")
    if b10:
        shares = sorted(((k[len("profile_"):], v) for k, v in b10.items() if k.startswith("profile_")), key=lambda kv: -kv[1])
        text = (f"**10,000 jobs.** `profiles/local` ran {b10['shell_rate']:.0f} trivial shell jobs/s and "
                f"{b10['vqpu_rate']:.0f} vQPU sampling jobs/s end to end; 10x the jobs took {b10['scaling']:.1f}x "
                "the time (B10).")
        if shares:
            text += (" Of the main thread's time in the profiled run: "
                     + "; ".join(f"{part} {share:.0f}%" for part, share in shares[:5]) + ".")
        across = {k[len("across_"):]: v for k, v in b10.items() if k.startswith("across_")}
        if across:
            text += (" Across those parts, Snakemake's own mechanisms take: "
                     + "; ".join(f"{name} {share:.0f}%" for name, share in across.items()) + ".")
        if shares:
            text += (" Inside Snakemake, each job is prepared, printed and finished one by one on the main "
                     "thread, and each step is a separate "
                     "`asyncio.Runner.run` call (a task and a SIGINT-handler swap each; this package makes the "
                     "handler look-ups cheap and formats a job's shell command once for its log, `snakemake_compat`). "
                     "Upstream changes that would remove most of what a plugin cannot: a job's asynchronous steps in "
                     "one call, its shell command formatted once for the log and the metadata, its resources read "
                     "once, and jobs started and finished in batches.")
        out.append(text)
    return out
