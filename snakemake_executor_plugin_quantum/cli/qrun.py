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
import select
import signal
import sys
import time
from typing import Any

from ..errors import QuantumError, TaskTimeoutError
from ..metrics import record as metrics
from ..resources.resolve import resolve_resource
from ..resources.types import AER, PULSER
from ..tasks import Deadline, parse, read_payload, render, run_task, task_deadline, write_text
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
        deadline = task_deadline(invocation.args.timeout, resolved.settings, resolved.type)
        # The child records the task; when this parent kills it (deadline, signal), this does.
        pending = metrics.begin(resolved.name, resolved.type, payload, resolved.settings)
        text = _supervised(lambda: render(_execute(resolved, payload, invocation.args)), deadline, resolved.name, pending)
    else:
        text = render(_execute(resolved, payload, invocation.args))
    write_text(text, invocation.output)
    return 0


def _execute(resolved: Any, payload: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    from ..backends import open_resource

    # In-process types run in the supervised child, which uses Qiskit only for this task: its
    # engine builds the pass manager without importing every installed transpiler plugin.
    resource = open_resource(resolved.name, resolved.type, resolved.settings, dedicated=resolved.type in IN_PROCESS_TYPES)
    try:
        return _run(resource, payload, resolved.settings, args)
    finally:
        resource.close()


def _supervised(work: Any, deadline: Deadline, name: str, pending: Any = None) -> str:
    """Run ``work`` in a forked child while this light parent keeps the deadline and signals.

    In-process simulators hold the GIL for a whole run, so neither a Python signal handler
    nor a timeout in the simulating process can act before the simulation ends (a dynamic
    circuit whose loop never exits would never end). The parent forks before importing
    anything heavy and waits for the child's result on a pipe; on SIGTERM/SIGINT, or when
    the deadline passes, it kills the child (the task dies with it). Only the parent writes
    the output, so a killed child cannot leave a partial or temporary file behind.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: does the work; dies if the parent dies
        from ..procs import die_with_parent

        die_with_parent()
        os.close(read_end)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)

        def child(_argv: list[str]) -> int:
            data = work().encode()
            view = memoryview(data)
            while view:
                view = view[os.write(write_end, view):]
            return 0

        try:
            code = run_command("qrun", child, sys.argv[1:])  # --debug reaches the child
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    os.close(write_end)

    def kill_child() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)

    def stop(signum: int, _frame: Any) -> None:
        kill_child()
        if pending is not None:
            pending.ended(KeyboardInterrupt())
        print(f"qrun: stopped by {signal.Signals(signum).name}; task cancelled", file=sys.stderr)
        sys.stderr.flush()
        os._exit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    chunks = []
    ends = None if deadline.seconds is None else time.monotonic() + deadline.seconds
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        while True:
            left = None if ends is None else ends - time.monotonic()
            if left is not None and (left <= 0 or not select.select([pipe], [], [], left)[0]):
                kill_child()
                error = TaskTimeoutError(deadline.expired(name))
                if pending is not None:
                    pending.ended(error)
                raise error
            chunk = pipe.read(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:  # the child said why on stderr
        raise SystemExit(128 - code if code < 0 else code)
    return b"".join(chunks).decode()


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
