"""qmetrics: the quantum tasks of a past run: summary, CSV, plots for a report.

    qmetrics [RUN] [-d DIRECTORY] [--csv FILE|-] [--plot DIRECTORY] [--list]

RUN is a metrics file or a run id (a file name in ``.snakemake/quantum/metrics/``
without ``.jsonl``); default: ``$SNAKEMAKE_QUANTUM_METRICS`` (inside a run), else the
latest run of the working directory. See docs/metrics.md.

Exit codes: 0 done; 2 no such run or bad arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import UsageError
from ..metrics.record import METRICS_VAR
from .common import run_command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qmetrics", description="Show the quantum tasks of a Snakemake run.")
    parser.add_argument("run", nargs="?", help="metrics file or run id (default: this run, else the latest)")
    parser.add_argument("-d", "--directory", default=".", help="the workflow's working directory (default: .)")
    parser.add_argument("--csv", metavar="FILE", help="write every task as a CSV row to FILE ('-': stdout)")
    parser.add_argument("--plot", metavar="DIRECTORY", help="write the timeline and task-time plots (PNG) into DIRECTORY")
    parser.add_argument("--list", action="store_true", help="list the runs that have metrics")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def main(argv: list[str]) -> int:
    from ..metrics import summary

    args = _parser().parse_args(argv)
    runs = summary.run_files(args.directory)
    if args.list:
        for path in runs:
            print(f"{path.stem}  {len(summary.read(path))} tasks")
        return 0
    path = _find(args.run, args.directory, runs)
    records = summary.read(path)
    if args.csv:
        text = summary.to_csv(records)
        if args.csv == "-":
            sys.stdout.write(text)
        else:
            from ..atomic import write_atomic

            write_atomic(args.csv, text.encode())
    if args.plot:
        from ..metrics.plots import plot

        for written in plot(records, args.plot):
            print(f"wrote {written}", file=sys.stderr)
    if args.csv != "-":
        print(f"run {path.stem}")
        print("\n".join(summary.format_summary(summary.summarise(records))))
    return 0


def _find(run: str | None, directory: str, runs: list[Path]) -> Path:
    if run is None:
        current = os.environ.get(METRICS_VAR)
        if current:
            if not os.path.exists(current):
                raise UsageError(f"this run has recorded no quantum task yet ({current} does not exist)")
            return Path(current)
        if not runs:
            raise UsageError(f"no run with metrics in {os.path.abspath(directory)}/.snakemake/quantum/metrics")
        return runs[-1]
    candidate = Path(run)
    if candidate.is_file():
        return candidate
    for path in runs:
        if path.stem == run:
            return path
    known = ", ".join(p.stem for p in runs[-5:]) or "none"
    raise UsageError(f"no run {run!r} in {os.path.abspath(directory)}; recent runs: {known}")


def entry() -> int:
    return run_command("qmetrics", main)


if __name__ == "__main__":
    sys.exit(entry())
