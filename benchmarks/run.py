"""Run the benchmarks, print a table and (re)write BENCHMARKS.md.

    python benchmarks/run.py [--quick] [--only B1,B2,...] [--output FILE] [--keep]

``--quick`` uses small sizes and few repeats (minutes, for checking that everything
works; its numbers are noisy). Only a full run rewrites BENCHMARKS.md and
benchmarks/last_run.json; ``--quick`` and ``--only`` print their table (and write
``--output FILE`` if given). The full run is meant for a quiet machine and stays
under 35 minutes on 2 cores. Benchmarks: B1 dispatch, B2 workflow throughput, B3 Prefect
peer, B4 scale (5,000 jobs), B5 vQPU concurrency, B6 qrun overhead, B7 300 shell jobs,
B8 Slurm (3 nodes; as root it brings the test cluster up), B9 run: jobs, B10 fan-outs
of up to 10,000 jobs with a profile, B11 vQPU limits (idle connections, deadlines).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # so ``benchmarks`` imports as a package

from benchmarks.common import (  # noqa: E402
    REPO,
    Context,
    LoadWatch,
    Section,
    dump_json,
    fmt_met,
    fmt_ratio,
    fmt_stats,
    machine_info,
)
from benchmarks.report import write_report  # noqa: E402

BENCHMARKS = {
    "B1": "b1_dispatch",
    "B2": "b2_throughput",
    "B3": "b3_prefect",
    "B4": "b4_scale",
    "B5": "b5_concurrency",
    "B6": "b6_qrun",
    "B7": "b7_shell",
    "B8": "b8_slurm",
    "B9": "b9_run_jobs",
    "B10": "b10_fanout",
    "B11": "b11_limits",
}
BUDGET_SECONDS = 35 * 60
# Seconds each benchmark needs at least in a full run (its repeats that always run), measured
# on the 2-core development VM (B5 and B10 from the full run of 2026-11-26 23:53 UTC: 126 s and
# 262 s; B10's earlier 790 left no budget for any extra repeat).
# Extra repeats run only while the later benchmarks keep these.
MINIMUM_SECONDS = {"B1": 35, "B2": 300, "B3": 240, "B4": 230, "B5": 130, "B6": 25, "B7": 40, "B8": 270, "B9": 120, "B10": 450, "B11": 60}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats (checks that everything runs)")
    parser.add_argument("--only", help=f"comma-separated benchmarks to run ({','.join(BENCHMARKS)})")
    parser.add_argument("--output", help="report to (re)write (default: BENCHMARKS.md for a full run; "
                        "--quick and --only runs write no report unless given one)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (workflows, logs)")
    args = parser.parse_args(argv)

    selected = list(BENCHMARKS)
    if args.only:
        selected = [s.strip().upper() for s in args.only.split(",") if s.strip()]
        unknown = [s for s in selected if s not in BENCHMARKS]
        if unknown:
            parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")

    # qrun and the vQPU must not pay for compiling the package (PYTHONDONTWRITEBYTECODE may be set).
    subprocess.run([sys.executable, "-m", "compileall", "-q", "snakemake_executor_plugin_quantum"], cwd=REPO, check=True)
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"

    info = machine_info()
    workdir = Path(tempfile.mkdtemp(prefix="quantum-bench-"))
    # Lane leases of our runs in the scratch directory: other users' runs never wait on ours.
    os.environ["SNAKEMAKE_QUANTUM_LEASE_DIR"] = str(workdir / "leases")
    t_start = time.monotonic()
    ctx = Context(quick=args.quick, workdir=workdir,
                  log=lambda text: print(f"{time.monotonic() - t_start:6.0f}s {text}", flush=True),
                  deadline=time.monotonic() + BUDGET_SECONDS - 30)
    command = "python benchmarks/run.py" + (" --quick" if args.quick else "") + (f" --only {','.join(selected)}" if args.only else "")
    print(f"{command}\nscratch: {workdir}", flush=True)
    started = time.perf_counter()
    sections: list[Section] = []
    loads: dict[str, float] = {}
    try:
        for i, key in enumerate(selected):
            ctx.reserve = sum(MINIMUM_SECONDS[later] for later in selected[i + 1:])
            module = importlib.import_module(f"benchmarks.{BENCHMARKS[key]}")
            print(f"[{key}] {module.__doc__.splitlines()[0]}", flush=True)
            t0 = time.perf_counter()
            with LoadWatch() as load:
                try:
                    section = module.run(ctx)
                except Exception as exc:  # one broken benchmark must not hide the others
                    section = Section(key, module.__doc__.splitlines()[0])
                    section.skipped = f"FAILED: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
                    traceback.print_exc()
            section.seconds = time.perf_counter() - t0
            loads[key] = load.peak
            sections.append(section)
            print(f"[{key}] done in {section.seconds:.0f} s (peak 1-min load {load.peak:.2f})", flush=True)
    finally:
        if args.keep:
            print(f"scratch kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    total = time.perf_counter() - started

    print()
    print(table(sections))
    print(f"\ntotal {total:.0f} s" + (f" (OVER the {BUDGET_SECONDS // 60}-minute budget)" if total > BUDGET_SECONDS and not args.quick else ""))
    partial = bool(args.quick or args.only)
    output = Path(args.output) if args.output else (None if partial else REPO / "BENCHMARKS.md")
    if output is not None:
        write_report(output, sections, info, command, total, args.quick, partial=bool(args.only), loads=loads)
        print(f"wrote {output}")
    raw = {s.id: {"title": s.title, "seconds": s.seconds, "skipped": s.skipped, "rows": [
        {"metric": r.metric, "unit": r.unit, "ours": list(r.ours.values) if r.ours else None,
         "base": list(r.base.values) if r.base else None, "ratio": r.ratio, "target": r.target, "met": r.met}
        for r in s.rows], "data": s.data} for s in sections}
    if not partial:  # the figures README and docs quote: only ever from a full run
        dump_json(HERE / "last_run.json", {"command": command, "machine": info, "total_seconds": total, "results": raw})
        from benchmarks.quotes import update as update_quotes

        changed = update_quotes()
        print(f"wrote {HERE / 'last_run.json'}; figures rewritten in: {', '.join(p.name for p in changed) or 'none'}")
    return 1 if any(s.skipped.startswith("FAILED") for s in sections) else 0


def table(sections: list[Section]) -> str:
    header = ("ID", "metric", "ours min/median/max", "baseline min/median/max", "ratio", "target", "met")
    rows = [header]
    for section in sections:
        if section.skipped:
            rows.append((section.id, section.title, "", "", "", "", section.skipped[:60]))
            continue
        for row in section.rows:
            rows.append((section.id, row.metric, row.display or fmt_stats(row.ours, row.unit), fmt_stats(row.base, row.unit),
                         fmt_ratio(row.ratio), row.target, fmt_met(row.met)))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    widths[1] = min(widths[1], 60)
    lines = []
    for i, r in enumerate(rows):
        lines.append("  ".join(str(c)[: widths[j]].ljust(widths[j]) for j, c in enumerate(r)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main(sys.argv[1:]))
    sys.exit(130)
