"""qrun: run one quantum task on a named resource, as a rule's command.

    qrun [RESOURCE] INPUT [-o OUTPUT] [--shots N] [--program sampler|estimator] [--timeout S]

Argument-compatible with QRMI's task runner (``<resource> <file>``, ``-o``; a third
positional is the output). RESOURCE defaults to the job's only resource. INPUT is a
QRMI payload, an OpenQASM 2/3 file or a Pulser sequence. Unlike QRMI's runner, a task
that ends Failed or Cancelled exits non-zero, and OUTPUT is written atomically, so a
failed run leaves no output file.

Exit codes: 0 done; 1 task failed; 2 bad input or config; 3 resource unavailable;
4 timeout; 130/143 stopped by SIGINT/SIGTERM (the task is stopped first).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

from ..errors import QuantumError, UsageError
from ..resources.resolve import resolve_resource
from ..resources.types import AER, PULSER
from .common import run_command

IN_PROCESS_TYPES = (AER, PULSER)


class _Stopped(BaseException):
    """Raised by our signal handlers; a BaseException so no library ``except Exception`` eats it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _parser(cls: type[argparse.ArgumentParser] = argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser = cls(prog="qrun", description="Run a quantum task on a QRMI-style resource.")
    parser.add_argument("args", nargs="+", metavar="[RESOURCE] INPUT [OUTPUT]", help="resource name (default: the job's only resource), payload or circuit file, optional output file")
    parser.add_argument("-o", "--output", help="write the result JSON here (atomically) instead of stdout")
    parser.add_argument("--shots", type=int, help="default shots (job_runs for Pulser); per-pub shots still win")
    parser.add_argument("--program", choices=("sampler", "estimator"), help="primitive for a circuit file (default: sampler)")
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
    args = (parser or _parser()).parse_args(argv)
    positional = args.args
    if len(positional) > 3:
        raise UsageError(f"expected [RESOURCE] INPUT [OUTPUT], got {len(positional)} arguments")
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


def parse_quietly(argv: list[str]) -> Invocation | None:
    """``argv`` parsed, or None where plain qrun would print usage, help or an error."""
    try:
        return parse(argv, _parser(_NoExit))
    except UsageError:
        return None


def read_payload(invocation: Invocation) -> dict[str, Any]:
    from ..payloads.inputs import read_input

    args = invocation.args
    observables = [o.strip() for o in args.observables.split(",")] if args.observables else None
    parameters = None
    if args.parameters is not None:
        from ..payloads.inputs import decode_json

        parameters = decode_json(args.parameters, what="--parameters")
    return read_input(invocation.input_path, shots=args.shots, program=args.program, observables=observables, parameters=parameters)


def main(argv: list[str]) -> int:
    invocation = parse(argv)
    payload = read_payload(invocation)
    resolved = resolve_resource(invocation.resource_name, invocation.args.config, os.environ)
    if resolved.type in IN_PROCESS_TYPES:
        return _supervised(lambda: _execute(resolved, payload, invocation.args, invocation.output))
    return _execute(resolved, payload, invocation.args, invocation.output)


def _execute(resolved: Any, payload: dict[str, Any], args: argparse.Namespace, output: str | None) -> int:
    from ..backends import open_resource

    resource = open_resource(resolved.name, resolved.type, resolved.settings)
    try:
        result = _run(resource, payload, resolved.settings, args)
    finally:
        resource.close()
    write_result(result, output)
    return 0


def write_result(result: dict[str, Any], output: str | None) -> None:
    """The result document, atomically to ``output`` or else to stdout."""
    text = json.dumps(result, indent=1)
    if output:
        from ..atomic import write_atomic

        write_atomic(output, text.encode() + b"\n")
    else:
        sys.stdout.write(text + "\n")


def _supervised(work: Any) -> int:
    """Run ``work`` in a forked child while this light parent watches for signals.

    In-process simulators hold the GIL for a whole run, so a Python signal handler in the
    simulating process would only run when the simulation ends. The parent forks before
    importing anything heavy; on SIGTERM/SIGINT it kills the child (the task dies with it)
    and exits at once.
    """
    pid = os.fork()
    if pid == 0:  # child: does the work; dies if the parent dies
        from ..procs import die_with_parent

        die_with_parent()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        try:
            code = run_command("qrun", lambda _argv: work(), sys.argv[1:])  # --debug reaches the child
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    def stop(signum: int, _frame: Any) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        print(f"qrun: stopped by {signal.Signals(signum).name}; task cancelled", file=sys.stderr)
        sys.stderr.flush()
        os._exit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _run(resource: Any, payload: dict[str, Any], settings: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    def stop(signum: int, _frame: Any) -> None:
        raise _Stopped(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        result = run_task(resource, payload, settings, args.timeout)
        if args.logs:
            print(resource.task_logs(resource.last_task_id), file=sys.stderr)
        return result
    except _Stopped as stopped:
        task_id = resource.last_task_id
        name = signal.Signals(stopped.signum).name
        print(f"qrun: stopped by {name}" + (f"; task {task_id} cancelled" if task_id else ""), file=sys.stderr)
        raise SystemExit(128 + stopped.signum) from None
    except QuantumError as exc:
        if args.logs and resource.last_task_id:
            _print_logs(resource, resource.last_task_id)
        raise exc from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_task(resource: Any, payload: dict[str, Any], settings: dict[str, str], timeout: float | None = None) -> dict[str, Any]:
    """One task the way a job runs it: under the job's acquisition token (else our own,
    released after), within ``timeout`` or the job's timeout, and stopped on the resource
    if anything (failure, timeout, signal) ends the wait early."""
    own_token = None if settings.get("QRMI_JOB_ACQUISITION_TOKEN") else resource.acquire()
    try:
        return resource.run(payload, timeout=timeout if timeout is not None else job_timeout(settings))
    except BaseException:
        stop_quietly(resource, resource.last_task_id)
        raise
    finally:
        if own_token is not None:
            release_quietly(resource, own_token)


def job_timeout(settings: dict[str, str]) -> float | None:
    """The job's QRMI_JOB_TIMEOUT_SECONDS (set by spank_qrmi or our executor), if any."""
    value = settings.get("QRMI_JOB_TIMEOUT_SECONDS", "")
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


def _print_logs(resource: Any, task_id: str) -> None:
    with contextlib.suppress(QuantumError):
        print(resource.task_logs(task_id), file=sys.stderr)


def entry() -> int:
    try:
        code = run_command("qrun", main)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    # Everything is cleaned up by now (task stopped, token released, output written or not).
    # An in-process simulation cannot be interrupted and Aer runs it on a non-daemon thread
    # that a normal exit would wait for; a stopped or timed-out qrun must exit now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(entry())
