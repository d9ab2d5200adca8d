"""Slurm mode: jobs go through snakemake-executor-plugin-slurm, vQPUs run as Slurm jobs.

We drive the slurm plugin's own executor rather than re-implementing sbatch, sacct and
scancel: it sees the workflow through a view that carries *its* settings (mirrored from
our ``--quantum-slurm-*`` ones, since Snakemake parses only the selected executor's
flags) and its plugin entry. Our one addition per job rides on ``get_partition_arg``,
whose text the plugin splices into the sbatch call:

- ``--gres=qpu:N`` for QPU jobs (or ``--qpu=a,b`` where the site runs spank_qrmi);
- ``--export-file=F``: the job's environment, including QRMI tokens and API keys, so no
  secret is ever on a command line. sbatch reads F at submission (F replaces
  ``--export=ALL``, so it holds the whole environment) and we delete it right after.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shlex
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import snakemake_compat
from ..errors import ConfigError, ResourceUnavailableError
from ..resources.config import ResourceDef
from ..settings import ExecutorSettings
from .sidecars import LocalLauncher

log = logging.getLogger(__name__)

# Hardware types get a qpu GRES by default; simulators only when their config asks.
HARDWARE_GRES = "qpu"


def accounting_enabled() -> bool:
    """Does sacct work here? With accounting off it fails, and the slurm plugin keeps retrying."""
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return True
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "AccountingStorageType":
            return "none" not in value
    return True


def write_export_file(directory: Path, environ: Mapping[str, str]) -> Path:
    """A NUL-separated environment for sbatch --export-file, readable by us only."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / f"{uuid.uuid4().hex}.env"
    data = b"".join(f"{k}={v}".encode() + b"\0" for k, v in environ.items() if "\0" not in k + v and "=" not in k)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return path


class SlurmRoute:
    def __init__(self, workflow: Any, logger: Any, settings: ExecutorSettings):
        from snakemake_executor_plugin_slurm import ExecutorSettings as SlurmSettings
        from snakemake_interface_executor_plugins.registry import ExecutorPluginRegistry

        status = settings.slurm_status_command or ("sacct" if accounting_enabled() else "squeue")
        if status not in ("sacct", "squeue"):
            raise ConfigError(f"--quantum-slurm-status-command must be sacct or squeue, got {status!r}")
        slurm_settings = SlurmSettings(
            logdir=Path(settings.slurm_logdir) if settings.slurm_logdir else None,
            init_seconds_before_status_checks=max(1, int(settings.slurm_init_seconds)),
            status_command=status,
            keep_successful_logs=settings.slurm_keep_logs,
        )
        plugin = ExecutorPluginRegistry().get_plugin("slurm")
        remote = dataclasses.replace(
            workflow.remote_execution_settings, seconds_between_status_checks=max(1, int(settings.slurm_status_interval))
        )
        view = snakemake_compat.SlurmWorkflowView(workflow, slurm_settings, plugin, remote)
        snakemake_compat.normalise_slurm_status_queries()
        executor_class = snakemake_compat.slurm_executor_class()
        executor_class.max_status_interval = max(1, int(settings.slurm_max_status_interval))
        self.executor = executor_class(view, logger)
        self.qpu_mode = settings.slurm_qpu_mode
        self.env_dir = Path(workflow.workdir_init) / ".snakemake" / "quantum" / "env"
        log.info("Slurm mode: status through %s every %s s, doubling while no job finishes (up to %s s)",
                 status, remote.seconds_between_status_checks, executor_class.max_status_interval)

    def run_jobs(self, jobs: list[Any]) -> None:
        """Jobs that need nothing from us: straight to the slurm plugin (same speed as --executor slurm)."""
        self.executor.run_jobs(jobs)

    def submit(self, job: Any, extra_args: list[str], environ: Mapping[str, str] | None) -> None:
        """Submit one job with extra sbatch arguments and, if given, its environment (blocking)."""
        args = list(extra_args)
        path = None
        if environ is not None:
            path = write_export_file(self.env_dir, environ)
            args.append(f"--export-file={path}")
        self.executor.extra_args[job] = " ".join(shlex.quote(a) for a in args)
        try:
            self.executor.run_job(job)  # sbatch has read the file when this returns
        finally:
            self.executor.extra_args.pop(job, None)
            if path is not None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def qpu_args(self, resources: tuple[ResourceDef, ...], lanes: int, rule_gres: str | None = None) -> list[str]:
        """``--gres=qpu:N`` or ``--qpu=names`` for the job's QPU resources (not vQPUs).

        A resource's ``slurm.gres`` is a GRES name (``qpu`` -> ``qpu:N`` for qpu=N) or a
        full spec (``qpu:1``, used as is). A rule that sets its own ``gres`` keeps it: the
        slurm plugin adds that one, and two --gres options would not add up.
        """
        hardware = [r for r in resources if not r.is_vqpu]
        if not hardware:
            return []
        if self.qpu_mode == "spank":
            return [f"--qpu={','.join(r.name for r in hardware)}"]
        specs = sorted({_gres_spec(r, lanes) for r in hardware} - {""})
        if not specs:
            return []
        if rule_gres:
            if not all(spec.split(":")[0] in rule_gres for spec in specs):
                log.warning("a rule sets gres=%s, which lacks %s; the rule's gres is used as given", rule_gres, ",".join(specs))
            return []
        return [f"--gres={','.join(specs)}"]

    def cancel(self) -> None:
        self.executor.cancel()

    def shutdown(self) -> None:
        self.executor.shutdown()


def _gres_spec(resource: ResourceDef, lanes: int) -> str:
    gres = str(resource.slurm.get("gres", "" if resource.is_local else HARDWARE_GRES))
    return gres if not gres or ":" in gres else f"{gres}:{lanes}"


# ------------------------------------------------------------- vQPUs as Slurm jobs


class SlurmHandle:
    """A vQPU running as a Slurm job; stopped with scancel by job id."""

    def __init__(self, job_id: str, log_path: str):
        self.job_id = job_id
        self.log_path = log_path
        self._state: tuple[float, str | None] = (0.0, None)
        self._lock = threading.Lock()

    def _squeue_state(self) -> str:
        """The job's state, cached for 2 s: every vqpu job asks before it runs."""
        with self._lock:
            checked, state = self._state
            if state is None or time.monotonic() - checked > 2.0:
                try:
                    out = subprocess.run(
                        ["squeue", "-h", "-j", self.job_id, "-o", "%T"], capture_output=True, text=True, timeout=30
                    )
                    state = out.stdout.strip() if out.returncode == 0 else "GONE"
                except (OSError, subprocess.SubprocessError):
                    state = "UNKNOWN"
                self._state = (time.monotonic(), state or "GONE")
            return self._state[1] or "GONE"

    def exit_reason(self) -> str | None:
        state = self._squeue_state()
        if state in ("PENDING", "RUNNING", "CONFIGURING", "UNKNOWN", "COMPLETING"):
            return None
        return f"Slurm job {self.job_id} is {state.lower()} (log: {self.log_path})"

    def stop(self, timeout: float) -> None:
        subprocess.run(["scancel", self.job_id], capture_output=True, timeout=60)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                self._state = (0.0, None)
            if self.exit_reason() is not None:
                return
            time.sleep(0.5)

    def describe(self) -> str:
        return f"Slurm job {self.job_id}"


class SlurmLauncher(LocalLauncher):
    """Starts ``vqpu serve`` with sbatch, reachable from other nodes (token always required)."""

    def __init__(self, config_path: str | None, idle_timeout: int, walltime: int, partition: str | None, env_dir: Path, account: str | None = None):
        super().__init__(config_path and os.path.abspath(config_path), idle_timeout, walltime)
        self.partition = partition
        self.account = account  # the run's default slurm_account, for vQPUs whose config names none
        self.env_dir = env_dir

    def launch(self, resource: ResourceDef, event_file: str, environ: dict[str, str]) -> SlurmHandle:
        slurm = resource.slurm
        log_path = event_file[: -len(".json")] + ".%j.log"
        command = self.command(resource, event_file, None) + ["--host", "0.0.0.0"]
        # --no-requeue: a vQPU whose node failed must end (NODE_FAIL), not come back as a pending
        # job under the same id while its event file still points at the dead node; the sidecar
        # manager then sees it gone and starts a new one for the jobs still to come.
        args = ["sbatch", "--parsable", "--no-requeue", "--job-name", f"vqpu-{resource.name}", "--output", log_path]
        partition = slurm.get("partition") or self.partition
        if partition:
            args += ["-p", str(partition)]
        if not slurm.get("account") and self.account:
            args += ["-A", self.account]
        for key, flag in (("account", "-A"), ("qos", "--qos"), ("constraint", "-C"), ("mem_mb", "--mem"), ("cpus", "--cpus-per-task")):
            if slurm.get(key):
                args += [flag, str(slurm[key])]
        if slurm.get("gres"):
            args.append(f"--gres={slurm['gres']}")
        if slurm.get("time"):
            args += ["-t", str(slurm["time"])]
        elif self.walltime:
            args += ["-t", str(max(1, -(-self.walltime // 60)))]
        args += shlex.split(str(slurm.get("extra", "")))
        path = write_export_file(self.env_dir, environ)
        try:
            out = subprocess.run(
                [*args, f"--export-file={path}", "--wrap", shlex.join(command)], capture_output=True, text=True, timeout=120
            )
        finally:
            path.unlink(missing_ok=True)
        if out.returncode != 0:
            reason = (out.stderr.strip().splitlines() or [f"exit code {out.returncode}"])[-1]
            raise ResourceUnavailableError(f"sbatch for vQPU '{resource.name}' failed: {reason}")
        job_id = out.stdout.strip().split(";")[0]
        log.info("vQPU '%s' submitted as Slurm job %s", resource.name, job_id)
        return SlurmHandle(job_id, log_path.replace("%j", job_id))
