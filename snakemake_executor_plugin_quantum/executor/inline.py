"""Run a job whose whole command is one ``qrun`` call on a vQPU in the executor's thread.

Such a job would otherwise cost a ``bash`` and a Python interpreter that imports our
modules (~110 ms on a 2-core VM) to send one request to a warm vQPU (~5 ms). Here the
executor makes the same request itself, with the job's QRMI environment, and writes the
same output atomically. Only commands that mean exactly that qualify: a plain ``qrun``
word, no shell syntax, no conda/container/env-modules, shadow, benchmark or log, no
shell prefix/suffix, and a resource that resolves to a vQPU. Everything else, including
qrun's own usage errors, runs as a normal shell job.
"""

from __future__ import annotations

import shlex
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

from .. import snakemake_compat, tasks
from ..backends.vqpu_client import VQPUClient
from ..errors import QuantumError
from ..redact import mask, secret_values
from ..resources.resolve import resolve_resource
from ..resources.types import VQPU
from .batching import VQPUBatcher

# Characters that make bash do more than split words, outside quotes ($, ` and \ anywhere).
_UNQUOTED_SPECIAL = set("|&;<>()*?[]{}~#!\n")
_ALWAYS_SPECIAL = set("$`\\")
# Flags whose output must look exactly as a qrun process prints it.
_PROCESS_ONLY_FLAGS = {"-h", "--help", "--debug", "--logs"}


def qrun_argv(command: str | None) -> list[str] | None:
    """qrun's arguments when ``command`` is one plain qrun call, else None."""
    if not command or _ALWAYS_SPECIAL & set(command):
        return None
    quote = None
    for char in command:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in _UNQUOTED_SPECIAL:
            return None
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if not words or words[0] != "qrun" or _PROCESS_ONLY_FLAGS & set(words):
        return None
    return words[1:]


def job_qualifies(job: Any) -> bool:
    """The job runs a shell command as-is, in the workflow's working directory."""
    return bool(
        job.is_shell
        and not (job.conda_env or job.container_img or job.env_modules)
        and not (job.is_shadow or job.benchmark or job.log or job.is_pipe or job.is_service)
        and not snakemake_compat.shell_wraps_commands()
    )


class InlineRuns:
    """The qrun calls running in executor threads, sent through one batcher per vQPU, so
    that tasks waiting together go together and a cancel can stop them all."""

    def __init__(self, max_batch: int = 32) -> None:
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._batchers: dict[tuple[str, str, str], VQPUBatcher] = {}

    def try_run(self, argv: list[str], environ: Mapping[str, str]) -> bool:
        """Run the task and write its output; False (nothing done) when it is not for a vQPU.

        Errors read as qrun's own would (``qrun: error: ...`` on stderr) and fail the job
        as a failed command does.
        """
        try:
            return self._try_run(argv, environ)
        except QuantumError as exc:
            print(f"qrun: error: {mask(str(exc), secret_values(environ))}", file=sys.stderr, flush=True)
            raise snakemake_compat.spawned_job_error()() from None

    def _try_run(self, argv: list[str], environ: Mapping[str, str]) -> bool:
        invocation = tasks.parse_quietly(argv)
        if invocation is None:
            return False
        resolved = resolve_resource(invocation.resource_name, invocation.args.config, environ)
        if resolved.type != VQPU:
            return False
        payload = tasks.read_payload(invocation)
        result = self._batcher(resolved).run(payload, invocation.args.timeout, environ)
        tasks.write_result(result, invocation.output)
        return True

    def _batcher(self, resolved: Any) -> VQPUBatcher:
        settings = resolved.settings
        key = (resolved.name, settings.get("QRMI_VQPU_EVENT_FILE", ""), settings.get("QRMI_JOB_ACQUISITION_TOKEN", ""))
        with self._lock:
            batcher = self._batchers.get(key)
            if batcher is None:
                batcher = self._batchers[key] = VQPUBatcher(resolved.name, settings, _lanes(resolved), self.max_batch)
            return batcher

    def stop_all(self) -> None:
        """Cancel every task an inline qrun is waiting for (Ctrl-C, SIGTERM, failure)."""
        with self._lock:
            batchers = list(self._batchers.values())
        for batcher in batchers:
            batcher.stop_all()

    def close(self) -> None:
        with self._lock:
            batchers, self._batchers = list(self._batchers.values()), {}
        for batcher in batchers:
            batcher.close()


def _lanes(resolved: Any) -> int:
    """How many requests to keep in flight: the vQPU's lanes (it says in its metadata)."""
    client = VQPUClient(resolved.name, resolved.settings)
    try:
        return int(client.metadata().get("lanes") or 1)
    except (QuantumError, TypeError, ValueError):
        return 1
    finally:
        client.close()


def runner(inline: InlineRuns, argv: list[str], environ: Mapping[str, str], fallback: Callable[..., Any]) -> Callable[..., None]:
    """A ``run_func`` for Snakemake's ``cached_or_run``: inline when it can, else ``fallback``."""

    def run(*args: Any) -> None:
        if not inline.try_run(argv, environ):
            fallback(*args)

    return run
