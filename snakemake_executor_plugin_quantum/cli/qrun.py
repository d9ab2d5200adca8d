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
import os
import signal
import sys
from typing import Any

from ..errors import QuantumError
from ..resources.resolve import resolve_resource
from ..resources.types import AER, PULSER
from ..tasks import parse, read_payload, run_task, write_result
from .common import run_command

IN_PROCESS_TYPES = (AER, PULSER)


class _Stopped(BaseException):
    """Raised by our signal handlers; a BaseException so no library ``except Exception`` eats it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


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
