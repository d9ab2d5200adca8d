"""Run a job whose whole command is one ``qrun`` call on a vQPU without a process of its own.

Such a job would otherwise cost a ``bash`` and a Python interpreter that imports our
modules (~110 ms on a 2-core VM) to send one request to a warm vQPU (~5 ms). Here the
run's sender process (sender.py) makes the same request, with the job's QRMI
environment, and writes the same output atomically. Only commands that mean exactly that
qualify: a plain ``qrun`` word, no shell syntax, no conda/container/env-modules, shadow,
benchmark or log, no shell prefix/suffix, and a resource that resolves to a vQPU. Everything else, including
qrun's own usage errors, runs as a normal shell job.
"""

from __future__ import annotations

import logging
import shlex
import sys
from collections.abc import Callable, Mapping
from typing import Any

from .. import snakemake_compat
from .sender import DONE, FAILED, Sender

log = logging.getLogger(__name__)

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


def rule_may_run_inline(job: Any) -> bool:
    """Might the jobs of ``job``'s rule run inline? (Its command, unformatted, starts with qrun.)"""
    command = job.rule.shellcmd if job.is_shell else None
    return bool(command) and command.split(maxsplit=1)[:1] == ["qrun"] and job_qualifies(job)


def runner(sender: Sender, argv: list[str], environ: Mapping[str, str], fallback: Callable[..., Any]) -> Callable[..., None]:
    """A ``run_func`` for Snakemake's ``cached_or_run``: sent by the sender when it can,
    else ``fallback`` (qrun as a process). A failed task reads as qrun's own error
    (``qrun: error: ...`` on stderr) and fails the job as a failed command does."""

    def run(*args: Any) -> None:
        outcome, message = sender.run(argv, environ)
        if outcome == FAILED:
            print(f"qrun: error: {message}", file=sys.stderr, flush=True)
            raise snakemake_compat.spawned_job_error()() from None
        if outcome != DONE:
            log.debug("qrun %s runs as a process: %s", " ".join(argv), message)
            fallback(*args)

    return run
