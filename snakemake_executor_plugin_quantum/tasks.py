"""One quantum task as a job runs it: the qrun command line, its input, the task, the result file.

Shared by the ``qrun`` command (cli/qrun.py, which adds signals and exit codes) and the
executor's inline path (executor/sender.py, which sends a plain ``qrun`` job's request
without a qrun process): both must read a command line, a payload and a job's timeout the same way.
Light imports only: this runs once per job.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from .errors import QuantumError, TaskTimeoutError, UsageError
from .metrics import record as metrics
from .resources.jobenv import TIMEOUT_KEY
from .resources.types import LOCAL_TYPES

# Every task on a local simulator has a deadline, even outside a job: a circuit whose loop
# never exits must not hang a run forever. A job's own time limit wins.
TASK_TIMEOUT_KEY = "QRMI_TASK_TIMEOUT"
DEFAULT_TASK_TIMEOUT = 3600.0


def build_parser(cls: type[argparse.ArgumentParser] = argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser = cls(prog="qrun", description="Run a quantum task on a QRMI-style resource.")
    parser.add_argument("args", nargs="+", metavar="[RESOURCE] INPUT [OUTPUT]", help="resource name (default: the job's only resource), payload or circuit file, optional output file")
    parser.add_argument("-o", "--output", help="write the result JSON here (atomically) instead of stdout")
    parser.add_argument("--shots", type=int, help="default shots (job_runs for Pulser); per-pub shots still win")
    parser.add_argument("--program", choices=("sampler", "estimator"), help="primitive for a circuit file (default: sampler) or a bare primitive input {pubs, ...} (default: what its pubs mean)")
    parser.add_argument("--observables", help="comma-separated Pauli strings, for --program estimator on a circuit file")
    parser.add_argument("--parameters", metavar="JSON", help="parameter values for a circuit file, in input order: '[0.3, 1.2]' or '[[0.1], [0.2]]'")
    parser.add_argument("--timeout", type=float, help="stop the task and fail after this many seconds")
    parser.add_argument("--config", help="resource config (default: $SNAKEMAKE_QUANTUM_CONFIG, else the embedded default)")
    parser.add_argument("--logs", action="store_true", help="print the task's log lines to stderr")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


class _NoExit(argparse.ArgumentParser):
    """A parser that raises instead of printing usage and exiting (for callers in threads)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        raise UsageError(message or "qrun exited while parsing its arguments")


@dataclass
class Invocation:
    """A parsed qrun command line."""

    args: argparse.Namespace
    resource_name: str | None
    input_path: str
    output: str | None


def parse(argv: list[str], parser: argparse.ArgumentParser | None = None) -> Invocation:
    args = (parser or build_parser()).parse_args(argv)
    positional = args.args
    if len(positional) > 3:
        raise UsageError(f"expected [RESOURCE] INPUT [OUTPUT], got {len(positional)} arguments")
    if len(positional) == 2 and _meant_as_output(*positional):
        first, second = positional
        raise UsageError(f"'{first}' is a file, not a resource name; to write the result to {second} use: qrun {first} -o {second}")
    if args.shots is not None and args.shots <= 0:
        raise UsageError(f"--shots must be a positive integer, got {args.shots}")
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError(f"--timeout must be positive, got {args.timeout:g}")
    return Invocation(
        args=args,
        resource_name=positional[0] if len(positional) >= 2 else None,
        input_path=positional[1] if len(positional) >= 2 else positional[0],
        output=args.output or (positional[2] if len(positional) == 3 else None),
    )


def _meant_as_output(first: str, second: str) -> bool:
    """``qrun INPUT OUTPUT``, which the QRMI runner's form reads as ``RESOURCE INPUT``: the
    first is a file that cannot be a resource name (letters, digits, '_'), or a file while
    the second does not exist."""
    if not os.path.isfile(first):
        return False
    is_name = first.replace("_", "").isalnum() and not first[0].isdigit()
    return not is_name or not os.path.exists(second)


_quiet_parser: argparse.ArgumentParser | None = None
_quiet_lock = threading.Lock()


def parse_quietly(argv: list[str]) -> Invocation | None:
    """``argv`` parsed, or None where plain qrun would print usage, help or an error.

    One parser for every job (building one costs more than parsing with it), used by one
    thread at a time: argparse does not promise more.
    """
    global _quiet_parser
    with _quiet_lock:
        if _quiet_parser is None:
            _quiet_parser = build_parser(_NoExit)
        try:
            return parse(argv, _quiet_parser)
        except UsageError:
            return None


def read_payload(invocation: Invocation) -> dict[str, Any]:
    from .payloads.inputs import read_input

    args = invocation.args
    observables = [o.strip() for o in args.observables.split(",")] if args.observables else None
    parameters = None
    if args.parameters is not None:
        from .payloads.inputs import decode_json

        parameters = decode_json(args.parameters, what="--parameters")
    return read_input(invocation.input_path, shots=args.shots, program=args.program, observables=observables, parameters=parameters)


def run_task(resource: Any, payload: dict[str, Any], settings: dict[str, str], timeout: float | None = None,
             environ: Mapping[str, str] | None = None, client: str = "qrun") -> dict[str, Any]:
    """One task the way a job runs it: under the job's acquisition token (else our own,
    released after), within its deadline (``task_deadline``), stopped on the resource if
    anything (failure, timeout, signal) ends the wait early, and recorded in the run's
    metrics (``environ``: the job's environment, default ``os.environ``)."""
    deadline = task_deadline(timeout, settings, resource.resource_type)
    pending = metrics.begin(resource.resource_id, resource.resource_type, payload, settings, environ, client)
    own_token = None if settings.get("QRMI_JOB_ACQUISITION_TOKEN") else resource.acquire()
    try:
        result = resource.run(payload, timeout=deadline.seconds)
    except TaskTimeoutError:
        stop_quietly(resource, resource.last_task_id)
        error = TaskTimeoutError(deadline.expired(resource.resource_id))
        if pending is not None:
            pending.ended(error, resource.last_task_id)
        raise error from None
    except BaseException as exc:
        stop_quietly(resource, resource.last_task_id)
        if pending is not None:
            pending.ended(exc, resource.last_task_id)
        raise
    finally:
        if own_token is not None:
            release_quietly(resource, own_token)
    if pending is not None:
        pending.completed(result)
    return result


class Deadline(NamedTuple):  # per-job path: no dataclass code generation
    """How long a task may take, and where that limit came from (for the message)."""

    seconds: float | None
    source: str

    def expired(self, resource_name: str) -> str:
        source = self.source.format(name=resource_name)
        return f"the task on {resource_name} did not finish within {self.seconds:g} s ({source}) and was stopped"


def task_deadline(timeout: float | None, settings: dict[str, str], resource_type: str) -> Deadline:
    """``--timeout``, else the job's ``QRMI_JOB_TIMEOUT_SECONDS`` (set by spank_qrmi or our
    executor), else for our local simulators ``QRMI_TASK_TIMEOUT`` (default 3600 s). QRMI
    resources have no default: a QPU's queue may hold a task for hours, and QRMI bounds it."""
    if timeout is not None:
        return Deadline(timeout, "--timeout")
    job = job_timeout(settings)
    if job is not None:
        return Deadline(job, "the job's time limit {name}_" + TIMEOUT_KEY + "; raise the rule's runtime")
    if resource_type in LOCAL_TYPES:
        from .resources.values import setting_number

        seconds = setting_number(settings, TASK_TIMEOUT_KEY, DEFAULT_TASK_TIMEOUT, float, minimum=0.001)
        return Deadline(seconds, "{name}'s " + TASK_TIMEOUT_KEY + f", default {DEFAULT_TASK_TIMEOUT:g} s; raise it in its environment or give --timeout")
    return Deadline(None, "none")


def job_timeout(settings: dict[str, str]) -> float | None:
    """The job's QRMI_JOB_TIMEOUT_SECONDS (set by spank_qrmi or our executor), if any."""
    value = settings.get(TIMEOUT_KEY, "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds > 0 else None


def stop_quietly(resource: Any, task_id: str | None) -> None:
    if task_id is None:
        return
    try:
        if not resource.task_status(task_id).finished:
            resource.task_stop(task_id)
    except QuantumError:
        pass  # the resource is gone: nothing left to stop


def release_quietly(resource: Any, token: str) -> None:
    with contextlib.suppress(QuantumError):
        resource.release(token)


def write_result(result: dict[str, Any], output: str | None) -> None:
    """The result document, atomically to ``output`` or else to stdout."""
    write_text(render(result), output)


def render(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=1) + "\n"


def write_text(text: str, output: str | None) -> None:
    if output:
        from .atomic import write_atomic

        write_atomic(output, text.encode())
    else:
        sys.stdout.write(text)


