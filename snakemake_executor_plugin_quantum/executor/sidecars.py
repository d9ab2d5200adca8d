"""vQPU sidecars: started when the run needs them, stopped when no job does.

The manager knows, from the DAG, which pending jobs need each vQPU. It launches the
vQPUs in the background as soon as the run starts (so they warm up while classical
stages run), makes a job wait for its vQPU's event file, and stops each vQPU by its own
PID (or Slurm job id) when its last pending job is done, at the end of the run, on
failure, Ctrl-C or SIGTERM. A vQPU that died is restarted for the jobs still to come.
A vQPU whose event file the config names (``QRMI_VQPU_EVENT_FILE``: started by hand, or
shared by several runs) is external: used as is, never started or stopped by us; if no
live vQPU is there, its jobs fail with one line naming the file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import ResourceUnavailableError
from ..resources.config import ResourceDef
from ..resources.events import VQPUEvent, clear_event, event_path, read_event, wait_for_event

log = logging.getLogger(__name__)


class Handle(Protocol):
    """A launched vQPU: a local process or a Slurm job."""

    def exit_reason(self) -> str | None: ...  # None while running
    def stop(self, timeout: float) -> None: ...
    def describe(self) -> str: ...


class LocalHandle:
    def __init__(self, process: subprocess.Popen, log_path: str):
        self.process = process
        self.log_path = log_path

    def exit_reason(self) -> str | None:
        code = self.process.poll()
        if code is None:
            return None
        return f"exited with code {code}{_last_line(self.log_path)}"

    def stop(self, timeout: float) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM to this PID only: it removes its event file
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def describe(self) -> str:
        return f"pid {self.process.pid}"


def _last_line(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = [line.strip() for line in handle if line.strip()]
    except OSError:
        return ""
    return f": {lines[-1][:300]}" if lines else ""


class LocalLauncher:
    """Starts ``vqpu serve`` as a child process in its own session (no stray terminal signals)."""

    def __init__(self, config_path: str | None, idle_timeout: int, walltime: int):
        self.config_path = config_path
        self.idle_timeout = idle_timeout
        self.walltime = walltime

    def command(self, resource: ResourceDef, event_file: str, parent_pid: int | None) -> list[str]:
        cmd = [sys.executable, "-m", "snakemake_executor_plugin_quantum.cli.vqpu", "serve", resource.name, "--event-file", event_file]
        # The vQPU's own config wins over the run's defaults.
        if "QRMI_VQPU_IDLE_TIMEOUT" not in resource.environment:
            cmd += ["--idle-timeout", str(self.idle_timeout)]
        if "QRMI_VQPU_WALLTIME" not in resource.environment:
            cmd += ["--walltime", str(self.walltime)]
        if parent_pid is not None:
            cmd += ["--parent-pid", str(parent_pid)]
        if self.config_path:
            cmd += ["--config", self.config_path]
        return cmd

    def launch(self, resource: ResourceDef, event_file: str, environ: dict[str, str]) -> Handle:
        log_path = event_file[: -len(".json")] + ".log"
        with open(log_path, "ab") as log_file:
            process = subprocess.Popen(
                self.command(resource, event_file, os.getpid()),
                env=environ, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
            )
        return LocalHandle(process, log_path)


@dataclass
class _Sidecar:
    resource: ResourceDef
    event_file: str
    handle: Handle | None = None  # None: attached to a vQPU we did not start
    pending: set[Any] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopped: bool = False
    external: bool = False  # the config names its event file: someone else runs it


class SidecarManager:
    def __init__(self, launcher: Any, event_dir: str, start_timeout: float, environ: dict[str, str],
                 cancelled: threading.Event | None = None):
        self.launcher = launcher
        self.cancelled = cancelled or threading.Event()  # set: no vQPU starts, waits end now
        self.event_dir = event_dir
        self.start_timeout = start_timeout
        self.environ = environ
        self._cars: dict[str, _Sidecar] = {}
        self._lock = threading.Lock()
        self.launched = 0  # how many vQPU processes or jobs we started (for tests and plans)

    def _car(self, resource: ResourceDef) -> _Sidecar:
        with self._lock:
            car = self._cars.get(resource.name)
            if car is None:
                fixed = resource.environment.get("QRMI_VQPU_EVENT_FILE")
                directory = resource.environment.get("QRMI_VQPU_EVENT_DIR")
                path = fixed or event_path(directory or self.event_dir, resource.name)
                car = self._cars[resource.name] = _Sidecar(resource, os.path.abspath(path), external=bool(fixed))
            return car

    def expect(self, resource: ResourceDef, job: Any) -> None:
        """``job`` will use this vQPU: keep it until the job is done."""
        car = self._car(resource)
        with car.lock:
            car.pending.add(job)

    def prestart(self, resources: list[ResourceDef]) -> None:
        """Launch in the background, so vQPUs warm up while earlier stages run."""
        for resource in resources:
            threading.Thread(target=self._prestart_one, args=(resource,), name=f"prestart-{resource.name}", daemon=True).start()

    def _prestart_one(self, resource: ResourceDef) -> None:
        with contextlib.suppress(Exception):  # a failed start is reported to the first job that needs it
            self.ensure(resource)

    def ensure(self, resource: ResourceDef) -> str:
        """The event file of a ready vQPU for ``resource``, starting or restarting it if needed."""
        car = self._car(resource)
        with car.lock:
            self._check_cancelled(resource)
            car.stopped = False
            if car.external:
                return self._attach(car)
            if car.handle is not None:
                reason = car.handle.exit_reason()
                if reason is None:
                    event = read_event(car.event_file)
                    if event is not None and _alive(event):
                        return car.event_file
                    # Killed, its threads still exiting: clients already see it gone (a zombie
                    # leader, sockets closed) before the kernel lets us reap it.
                    reason = "lost its event file" if event is None else f"is gone (process {event.pid})"
                log.warning("vQPU '%s' (%s) %s; starting a new one", resource.name, car.handle.describe(), reason)
                car.handle.stop(5)
                clear_event(car.event_file)
                car.handle = None
            elif (event := read_event(car.event_file)) is not None:
                if _alive(event):
                    return car.event_file  # one from a live earlier start
                clear_event(car.event_file)  # stale: its process is gone
            os.makedirs(os.path.dirname(car.event_file), exist_ok=True)
            handle = car.handle = self.launcher.launch(resource, car.event_file, self.environ)
            self.launched += 1
            try:
                wait_for_event(car.event_file, self.start_timeout, alive=lambda: self._cancelled_reason() or handle.exit_reason())
            except ResourceUnavailableError as exc:
                handle.stop(5)
                clear_event(car.event_file)
                car.handle = None
                self._check_cancelled(resource)
                raise ResourceUnavailableError(f"vQPU '{resource.name}' did not start: {exc}") from None
            log.info("vQPU '%s' ready (%s)", resource.name, handle.describe())
            return car.event_file

    def _attach(self, car: _Sidecar) -> str:
        event = read_event(car.event_file)
        if event is None or not _alive(event):
            state = "holds no event" if event is None else f"names process {event.pid}, which is gone"
            raise ResourceUnavailableError(
                f"vQPU '{car.resource.name}' is external (QRMI_VQPU_EVENT_FILE={car.event_file}) but the file {state}; "
                f"start it with: vqpu serve {car.resource.name} --event-file {car.event_file}, "
                "or remove QRMI_VQPU_EVENT_FILE from the config to let the run start its own"
            )
        return car.event_file

    def check_external(self, resource: ResourceDef) -> None:
        """Fail now (before any job runs) if an external vQPU is not there."""
        car = self._car(resource)
        if car.external:
            self._attach(car)

    def _cancelled_reason(self) -> str | None:
        return "the run was cancelled" if self.cancelled.is_set() else None

    def _check_cancelled(self, resource: ResourceDef) -> None:
        if self.cancelled.is_set():
            raise ResourceUnavailableError(f"the run was cancelled while vQPU '{resource.name}' was needed")

    def forget(self, job: Any) -> list[ResourceDef]:
        """``job`` is done: it no longer holds any vQPU. Returns the vQPUs we run that no
        pending job needs any more (the caller stops them, off the scheduler's thread)."""
        idle = []
        for car in list(self._cars.values()):
            # Read without the lock first: a stop holds it until the vQPU has exited, and a
            # job of another vQPU (or of none, like a final `all` rule) must not wait for that.
            # Only this job's own forget removes it, and a vQPU is stopped only with no job pending.
            if job not in car.pending:
                continue
            with car.lock:
                car.pending.discard(job)
                if not car.pending and car.handle is not None and not car.stopped:
                    idle.append(car.resource)
        return idle

    def stop(self, name: str, timeout: float = 10.0) -> None:
        car = self._cars.get(name)
        if car is None:
            return
        with car.lock:
            car.stopped = True
            if car.handle is not None:
                car.handle.stop(timeout)
                clear_event(car.event_file)
                car.handle = None
                log.info("vQPU '%s' stopped (%s)", name, "no pending job needs it" if not car.pending else "end of run")

    def stop_all(self) -> None:
        threads = [threading.Thread(target=self.stop, args=(name,)) for name in list(self._cars)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def owned(self) -> list[str]:
        return [name for name, car in self._cars.items() if car.handle is not None]

    def pids(self) -> set[int]:
        """Local processes of the vQPUs we started (also those still starting)."""
        return {car.handle.process.pid for car in list(self._cars.values()) if isinstance(car.handle, LocalHandle)}

    def event(self, name: str) -> VQPUEvent | None:
        car = self._cars.get(name)
        return read_event(car.event_file) if car else None


def _alive(event: VQPUEvent) -> bool:
    alive = event.process_alive()
    return True if alive is None else alive
