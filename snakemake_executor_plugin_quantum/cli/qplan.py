"""qplan: the quantum work in a workflow's DAG, before anything runs.

    qplan [TARGETS ...] [-s SNAKEFILE] [-d DIRECTORY] [--config-file FILE] [--quantum-config FILE]
          [--quantum-default-qpu NAME] [--quantum-default-vqpu NAME] [--dot FILE|-] [--jobs-dot]
          [--json] [--forceall]

Builds the DAG as ``snakemake -n`` does (only jobs that would run count, unless
``--forceall``) and reads each job's request as the executor would, so a rule the
executor would reject fails here with the same message. Nothing runs and nothing
is started. See docs/qplan.md.

Exit codes: 0 planned; 1 the workflow or its DAG is broken (Snakemake's error);
2 bad arguments, resource config or rule resources.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import snakemake_compat
from ..errors import QuantumError, UsageError
from ..plan import PlannedJob, build_plan, format_json, format_text, job_dot, rule_dot
from ..resources.resolve import CONFIG_ENV
from .common import run_command

if TYPE_CHECKING:
    from ..resources.requests import RequestReader


def _parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="qplan", description="Show the quantum work in a Snakemake workflow before it runs.")
    parser.add_argument("targets", nargs="*", metavar="TARGET", help="files or rules to plan for (default: the first rule)")
    parser.add_argument("-s", "--snakefile", help="the Snakefile (default: Snakemake's usual places)")
    parser.add_argument("-d", "--directory", help="working directory of the workflow")
    parser.add_argument("--config-file", "--configfile", action="append", default=[], metavar="FILE", help="workflow config file (repeatable)")
    parser.add_argument("--quantum-config", default=env(CONFIG_ENV) or None, metavar="FILE",
                        help=f"resource config, as for the executor (default: ${CONFIG_ENV}, else the embedded default)")
    parser.add_argument("--quantum-default-qpu", default=env("SNAKEMAKE_QUANTUM_DEFAULT_QPU") or None, metavar="NAME",
                        help="resource for rules with qpu=N but no qpu_name")
    parser.add_argument("--quantum-default-vqpu", default=env("SNAKEMAKE_QUANTUM_DEFAULT_VQPU") or None, metavar="NAME",
                        help="vQPU for rules with vqpu=1 but no vqpu_name")
    parser.add_argument("--dot", metavar="FILE", help="write a Graphviz graph of the stages to FILE ('-': stdout, instead of the summary)")
    parser.add_argument("--jobs-dot", action="store_true", help="with --dot: one node per job instead of per rule")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON instead of text")
    parser.add_argument("-F", "--forceall", action="store_true", help="plan every job, as if all outputs were missing")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.jobs_dot and not args.dot:
        raise UsageError("--jobs-dot needs --dot FILE (or --dot - for stdout)")
    if args.dot == "-" and args.json:
        raise UsageError("--dot - and --json both write to stdout; give --dot a file name")
    dot_path = None if args.dot in (None, "-") else os.path.abspath(args.dot)  # before Snakemake changes directory

    # This import also imports every installed executor plugin (snakemake.scheduling.job_scheduler
    # builds the plugin registry at import time), and the slurm plugin runs `scontrol show config`
    # when imported: up to 10 s where a Slurm client is configured for a controller that is down.
    # Neither Snakemake's API nor a setting can skip plugins; docs/troubleshooting.md has the fix.
    from snakemake.api import SnakemakeApi

    from ..resources.config import find_config, load_config
    from ..resources.requests import RequestReader

    with SnakemakeApi(_output_settings()) as api:
        try:
            dag_api = _dag_api(api, args)
            # Read in the workflow's directory, as the executor does; fail before the DAG is built.
            config = load_config(find_config(args.quantum_config, os.getcwd()))
            reader = RequestReader(config, args.quantum_default_qpu, args.quantum_default_vqpu)
            with contextlib.redirect_stdout(sys.stderr):  # print() in a Snakefile must not spoil --json or --dot -
                planned = [_planned(job, deps, reader) for job, deps in snakemake_compat.planned_jobs(dag_api, args.forceall)]
        except QuantumError:
            raise  # ours: one line and its exit code, from run_command
        except Exception as exc:  # Snakemake's (no Snakefile, syntax error, missing input): printed its way
            if args.debug:
                raise
            api.print_exception(exc)
            return 1
    plan = build_plan(planned, os.environ)
    if args.dot:
        dot = (job_dot if args.jobs_dot else rule_dot)(plan)
        if dot_path is None:
            sys.stdout.write(dot)
            return 0
        from ..atomic import write_atomic

        write_atomic(dot_path, dot.encode())
    sys.stdout.write(format_json(plan) if args.json else format_text(plan))
    return 0


def _output_settings() -> Any:
    import logging

    from snakemake.settings.types import OutputSettings

    # Warnings and errors only, on stderr, once: through Snakemake's handler, not also through
    # the root handler run_command sets up. No log file in .snakemake/log.
    logging.getLogger("snakemake.logging").propagate = False
    return OutputSettings(enable_file_logging=False, log_level_override=logging.WARNING)


def _dag_api(api: Any, args: argparse.Namespace) -> Any:
    from snakemake.settings.types import ConfigSettings, DAGSettings, ResourceSettings

    workflow = api.workflow(
        ResourceSettings(cores=1),  # as a dry run: threads are not scheduled here
        config_settings=ConfigSettings(configfiles=[Path(f) for f in args.config_file]),
        snakefile=Path(args.snakefile) if args.snakefile else None,
        workdir=Path(args.directory) if args.directory else None,
    )
    # Outputs left incomplete by an interrupted run are planned as reruns (--rerun-incomplete).
    return workflow.dag(DAGSettings(targets=frozenset(args.targets), forceall=args.forceall, force_incomplete=True))


def _planned(job: Any, deps: list[Any], reader: RequestReader) -> PlannedJob:
    """A Snakemake job as the plan sees it; its request read as the executor reads it."""
    return PlannedJob(
        job.jobid, job.rule.name, reader.read(job.rule.name, job.resources, job.params),
        tuple((k, str(v)) for k, v in sorted(job.wildcards_dict.items())),
        tuple(sorted(d.jobid for d in deps)), bool(job.rule.is_checkpoint),
    )


def entry() -> int:
    return run_command("qplan", main)


if __name__ == "__main__":
    sys.exit(entry())
