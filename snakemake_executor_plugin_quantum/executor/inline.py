"""Run a job whose whole command is one ``qrun`` call on a vQPU without a process of its own.

Such a job would otherwise cost a ``bash`` and a Python interpreter that imports our
modules (~110 ms on a 2-core VM) to send one request to a warm vQPU (~5 ms). Here the
run's sender process (sender.py) makes the same request, with the job's QRMI
environment, and writes the same output atomically. Only commands that mean exactly that
qualify: a plain ``qrun`` word, no shell syntax but output redirections at the end (the
``2> {log}`` of a rule with a log), no conda/container/env-modules, shadow or benchmark, no
shell prefix/suffix, and a resource that resolves to a vQPU. Everything else, including
qrun's own usage errors, runs as a normal shell job.

Redirections are made as bash makes them: each file is created or truncated (``2>>``:
appended to) before the request is sent, and a file that cannot be opened leaves the job to
bash, which says why. What qrun would print then goes there: nothing on success with
``-o``, the result document without it, ``qrun: error: ...`` on failure.
"""

from __future__ import annotations

import logging
import re
import shlex
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .. import snakemake_compat
from ..errors import DEBUG_VARIABLE
from .sender import DONE, FAILED, Sender

log = logging.getLogger(__name__)

# Characters that make bash do more than split words, outside quotes ($, ` and \ anywhere).
_UNQUOTED_SPECIAL = set("|&;<>()*?[]{}~#!\n")
_ALWAYS_SPECIAL = set("$`\\\r")  # \r: shlex splits words there, bash does not
# Flags whose output must look exactly as a qrun process prints it.
_PROCESS_ONLY_FLAGS = {"-h", "--help", "--debug", "--logs"}


# Redirections a plain qrun call may end with: ">", "1>", "2>", "2>>" or "&>" and a plain
# path (as Snakemake formats {log}), or "2>&1"; each after a space or tab (a newline would
# end the command).
_PATH = r"[A-Za-z0-9_./@%+=:,-]+"
_LAST_REDIRECT = re.compile(rf"[ \t]+(?:(?P<op>2>>|2>|1>|&>|>)[ \t]*(?P<path>{_PATH})|(?P<dup>2>&1))$")


# operator -> (redirects stdout, redirects stderr, appends)
_OPERATORS = {">": (True, False, False), "1>": (True, False, False), "2>": (False, True, False),
              "2>>": (False, True, True), "&>": (True, True, False)}


@dataclass(frozen=True)
class QrunCall:
    """One plain qrun call: its arguments, and the files its stdout and stderr go to."""

    argv: list[str]
    stdout: str | None = None
    stderr: str | None = None
    opens: tuple[tuple[str, bool], ...] = ()  # (path, append: 2>>) in the order bash opens them


def qrun_call(command: str | None) -> QrunCall | None:
    """The call when ``command`` is one plain qrun call, else None."""
    if not command:
        return None
    # The newlines of a triple-quoted shell: block are empty commands to bash; other
    # characters str.strip() would remove are not whitespace to bash.
    head, redirects = _split_redirects(command.strip(" \t\n"))
    argv = _plain_words(head)
    if not argv or argv[0] != "qrun" or _PROCESS_ONLY_FLAGS & set(argv):
        return None
    stdout = stderr = None
    opens: list[tuple[str, bool]] = []
    for op, path in redirects:
        if op == "2>&1":
            if stdout is None or stderr is not None:  # onto the terminal, or stderr sent twice: bash's
                return None
            stderr = stdout
            continue
        to_stdout, to_stderr, appends = _OPERATORS[op]
        if (to_stdout and stdout is not None) or (to_stderr and stderr is not None):
            return None  # one redirection per stream
        if to_stdout:
            stdout = path
        if to_stderr:
            stderr = path
        opens.append((path, appends))
    return QrunCall(argv[1:], stdout, stderr, tuple(opens))


def _split_redirects(command: str) -> tuple[str, list[tuple[str, str]]]:
    """The command before its trailing redirections, and those, in order."""
    items: list[tuple[str, str]] = []
    end = len(command)
    while match := _LAST_REDIRECT.search(command, 0, end):
        items.insert(0, ("2>&1", "") if match["dup"] else (match["op"], match["path"]))
        end = match.start()
    return command[:end], items


def _plain_words(command: str) -> list[str] | None:
    """``command``'s words when bash would do nothing but split it into them."""
    if _ALWAYS_SPECIAL & set(command):
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
        return shlex.split(command)
    except ValueError:
        return None


def job_qualifies(job: Any) -> bool:
    """The job runs a shell command as-is, in the workflow's working directory."""
    return bool(
        job.is_shell
        and not (job.conda_env or job.container_img or job.env_modules)
        and not (job.is_shadow or job.benchmark or job.is_pipe or job.is_service)
        and not snakemake_compat.shell_wraps_commands()
    )


def rule_may_run_inline(job: Any) -> bool:
    """Might the jobs of ``job``'s rule run inline? (Its command, unformatted, starts with qrun.)"""
    command = job.rule.shellcmd if job.is_shell else None
    return bool(command) and command.split(maxsplit=1)[:1] == ["qrun"] and job_qualifies(job)


def runner(sender: Sender, call: QrunCall, environ: Mapping[str, str], fallback: Callable[..., Any]) -> Callable[..., None]:
    """A ``run_func`` for Snakemake's ``cached_or_run``: sent by the sender when it can,
    else ``fallback`` (qrun as a process). A failed task reads as qrun's own error
    (``qrun: error: ...`` on stderr, or in its redirection's file) and fails the job as a
    failed command does."""

    def run(*args: Any) -> None:
        if environ.get(DEBUG_VARIABLE) == "1":  # qrun's debug output (tracebacks) is a process's
            return fallback(*args)
        try:
            for path, append in call.opens:
                open(path, "ab" if append else "wb").close()
        except OSError as exc:  # bash makes them again, in the same order, and says why
            log.debug("qrun %s runs as a process: %s", " ".join(call.argv), exc)
            return fallback(*args)
        outcome, message = sender.run(call.argv, environ, call.stdout)
        if outcome == FAILED:
            _say(f"qrun: error: {message}\n", call.stderr)
            raise snakemake_compat.spawned_job_error()() from None
        if outcome != DONE:
            log.debug("qrun %s runs as a process: %s", " ".join(call.argv), message)
            fallback(*args)

    return run


def _say(line: str, path: str | None) -> None:
    """qrun's line on stderr, or appended to the file stderr is redirected to."""
    if path is not None:
        try:
            with open(path, "a", encoding="utf-8") as stream:
                stream.write(line)
            return
        except OSError as exc:  # gone since it was opened: not lost, at least
            log.warning("could not write to %s: %s", path, exc)
    sys.stderr.write(line)
    sys.stderr.flush()
