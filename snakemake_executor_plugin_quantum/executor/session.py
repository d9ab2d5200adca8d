"""The QRMI job lifecycle for one Snakemake run.

As spank_qrmi does per Slurm job, we acquire each resource once, before its first job,
hand the token to every job through ``{name}_QRMI_JOB_ACQUISITION_TOKEN``, and release
it when the run ends (success, failure, Ctrl-C, SIGTERM) or, for a vQPU, just before
the vQPU stops.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Mapping
from typing import Any

from ..errors import QuantumError, ResourceUnavailableError
from ..resources import jobenv
from ..resources.config import AER, PULSER, ResourceDef
from ..resources.requests import JobRequest

log = logging.getLogger(__name__)


class RunSession:
    def __init__(self, user_environ: Mapping[str, str], acquire_timeout: float = 120.0):
        self.user_environ = user_environ
        self.acquire_timeout = acquire_timeout
        self._tokens: dict[str, str] = {}
        self._holders: dict[str, Any] = {}  # resource objects that must release their token
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def token(self, resource: ResourceDef, event_file: str | None = None) -> str:
        with self._lock:
            lock = self._locks.setdefault(resource.name, threading.Lock())
        with lock:
            holder = self._holders.get(resource.name)
            if holder is not None and not getattr(holder, "same_service", lambda: True)():
                # A restarted vQPU never issued our token: acquire again from the new one.
                self._tokens.pop(resource.name, None)
                self._holders.pop(resource.name, None)
                with contextlib.suppress(Exception):
                    holder.close()
            if resource.name not in self._tokens:
                self._tokens[resource.name] = self._acquire(resource, event_file)
            return self._tokens[resource.name]

    def _acquire(self, resource: ResourceDef, event_file: str | None) -> str:
        if resource.type in (AER, PULSER):
            return uuid.uuid4().hex  # in-process simulators: nothing to reserve
        settings = jobenv.resource_settings(resource.name, self.user_environ, resource.environment)
        if event_file is not None:
            settings["QRMI_VQPU_EVENT_FILE"] = event_file
        from ..backends import open_resource

        holder = open_resource(resource.name, resource.type, settings)
        token = _with_timeout(holder.acquire, self.acquire_timeout, f"acquiring '{resource.name}'")
        self._holders[resource.name] = holder
        log.info("acquired %s (%s)", resource.name, resource.type)
        return token

    def job_env(self, request: JobRequest, event_files: Mapping[str, str], timeout_seconds: int | None = None) -> dict[str, str]:
        tokens = {r.name: self.token(r, event_files.get(r.name)) for r in request.resources}
        extra = {name: {"QRMI_VQPU_EVENT_FILE": path} for name, path in event_files.items()}
        return jobenv.build_job_env(request.resources, tokens, self.user_environ, extra, timeout_seconds)

    def release(self, name: str) -> None:
        with self._lock:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            token = self._tokens.pop(name, None)
            holder = self._holders.pop(name, None)
        if holder is None or token is None:
            return
        try:
            holder.release(token)
            log.info("released %s", name)
        except QuantumError as exc:
            log.warning("could not release %s: %s", name, exc)
        finally:
            with contextlib.suppress(Exception):
                holder.close()

    def release_all(self) -> None:
        for name in list(self._tokens):
            self.release(name)


def _with_timeout(call: Any, timeout: float, what: str) -> Any:
    """Run a blocking call (QRMI calls block, some endpoints never answer) with a deadline.

    The call runs in a daemon thread; on timeout it is abandoned (it dies with the run).
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the waiting thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name=what, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise ResourceUnavailableError(f"{what} did not finish within {timeout:g} s (endpoint not answering?)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
