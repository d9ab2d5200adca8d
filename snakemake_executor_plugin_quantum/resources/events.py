"""Readiness event files: how a vQPU tells the world it accepts work, and where.

A service writes ``{name, host, port, pid, token, engine, qubits, started, ...}`` atomically
(temp file + rename, mode 0600: it holds the token) only once it serves requests, and
removes it when it stops. Clients poll for the file (``wait_for_event``): often while a
local vQPU would be starting, then with back-off. Light imports only: the per-job client
reads these.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from typing import Any, NamedTuple

from ..atomic import write_atomic
from ..errors import ResourceUnavailableError
from ..procs import pid_alive


class VQPUEvent(NamedTuple):
    """A NamedTuple, not a dataclass: dataclass code generation costs the per-job client ~15 ms."""

    name: str
    host: str
    port: int
    pid: int
    token: str
    engine: str
    qubits: int | None
    started: float
    node: str = ""  # hostname where the process runs (pid is meaningful only there)
    slurm_job_id: str | None = None
    tls_sha256: str | None = None  # served over TLS (off loopback): the certificate clients pin

    @property
    def url(self) -> str:
        return f"{'https' if self.tls_sha256 else 'http'}://{self.host}:{self.port}"

    def is_local(self) -> bool:
        return self.node in ("", socket.gethostname())

    def process_alive(self) -> bool | None:
        """True/False for a process on this node; None when it runs elsewhere."""
        return pid_alive(self.pid) if self.is_local() else None


def default_event_dir() -> str:
    return os.path.join(os.path.expanduser("~"), ".cache", "snakemake-quantum", "vqpu")


def event_path(event_dir: str, name: str) -> str:
    return os.path.join(event_dir, f"{name}.json")


def write_event(path: str, event: VQPUEvent) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
    write_atomic(path, json.dumps(event._asdict(), indent=2).encode(), mode=0o600)


def read_event(path: str) -> VQPUEvent | None:
    """The event in ``path``, or None if there is none (yet)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data: dict[str, Any] = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ResourceUnavailableError(f"vQPU event file {path} is unreadable: {exc}") from None
    try:
        return VQPUEvent(**data)
    except TypeError:
        raise ResourceUnavailableError(f"vQPU event file {path} is not a vQPU event") from None


def clear_event(path: str, pid: int | None = None) -> None:
    """Remove the event file; with ``pid``, only if it still describes that process."""
    if pid is not None:
        with contextlib.suppress(ResourceUnavailableError):
            event = read_event(path)
            if event is not None and event.pid != pid:
                return
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def wait_for_event(
    path: str, timeout: float, alive: Any = None, quick: float = 0.01, quick_for: float = 3.0, max_delay: float = 0.5
) -> VQPUEvent:
    """Block until ``path`` holds an event.

    Every ``quick`` seconds for the first ``quick_for`` seconds, the time a local vQPU takes
    to start: a poll is one failed ``open``, and a back-off from the first poll would
    find a vQPU that became ready after 0.65 s only at 1.13 s. After that the delay doubles
    up to ``max_delay``: a vQPU queued as a Slurm job may take minutes, and its event file
    is on a shared filesystem. ``alive`` (optional callable) is polled too, so a service
    that died while starting fails the wait at once instead of at the timeout.
    """
    start = time.monotonic()
    deadline = start + timeout
    delay = quick
    while True:
        event = read_event(path)
        if event is not None:
            return event
        if alive is not None:
            reason = alive()
            if reason:
                raise ResourceUnavailableError(reason)
        now = time.monotonic()
        remaining = deadline - now
        if remaining <= 0:
            raise ResourceUnavailableError(f"no vQPU became ready at {path} within {timeout:g} s")
        time.sleep(min(delay, remaining))
        if now - start >= quick_for:
            delay = min(delay * 2, max_delay)
