"""``snakemake --executor quantum``: routes jobs, owns the run's quantum lifecycle.

On one machine this *is* Snakemake's local executor (jobs in a thread pool, reported
through future callbacks: no per-job Snakemake process, no status polling), with one
hook around each job: GPU slots, lane leases, the vQPU it needs, and its QRMI
environment. With ``classical: slurm`` jobs go to snakemake-executor-plugin-slurm
instead (see ``slurm.py``). Everything this run starts or acquires is stopped or
released at the end, on failure, Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import pickle
import signal
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo

from .. import snakemake_compat
from ..errors import QuantumError
from ..metrics import record as metrics
from ..resources.config import find_config, load_config
from ..resources.leases import LaneLeases
from ..resources.requests import JobRequest, RequestReader
from ..resources.types import AER, VQPU
from ..settings import ExecutorSettings
from . import environ, forks, inline, sender, stopping
from .gpus import GpuSlots, detect_gpus, parse_slots
from .session import RunSession
from .sidecars import LocalLauncher, SidecarManager

log = logging.getLogger(__name__)
# What run: jobs that use quantum resources import: once in the job parent, not per job
# (a module's warm_up() is called there too). Per resource type only what its jobs use
# (Aer only for jobs that simulate in-process): every module held makes each fork of the
# job parent dearer, every module a child imports costs it that import.
PRELOAD = ("snakemake_executor_plugin_quantum.primitives",)
PRELOAD_FOR_TYPE = {AER: ("qiskit_aer",), VQPU: ("snakemake_executor_plugin_quantum.backends.vqpu_client",)}
PACKAGE_LOGGER = logging.getLogger("snakemake_executor_plugin_quantum")


class _ToSnakemake(logging.Handler):
    """Our log records (vQPU started/stopped, acquisitions) in Snakemake's own output."""

    def __init__(self, target: Any):
        super().__init__(logging.INFO)
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        level = "warning" if record.levelno >= logging.WARNING else "info"
        getattr(self.target, level)(record.getMessage())


def _default_account(pending: list[tuple[Any, JobRequest]]) -> str | None:
    """The run's ``slurm_account`` (from --default-resources or a profile), as jobs see it."""
    for job, _ in pending:
        value = job.resources.get("slurm_account")
        if value not in (None, ""):
            return str(value)
    return None


class Executor(snakemake_compat.local_executor_class()):  # type: ignore[misc]
    def __post_init__(self) -> None:
        super().__post_init__()
        self._log_handler = _ToSnakemake(self.logger)
        PACKAGE_LOGGER.addHandler(self._log_handler)
        PACKAGE_LOGGER.setLevel(logging.INFO)
        try:
            self._set_up()
        except BaseException:
            PACKAGE_LOGGER.removeHandler(self._log_handler)
            raise

    def _set_up(self) -> None:
        self.settings: ExecutorSettings = self.workflow.executor_settings or ExecutorSettings()
        self.config_path = find_config(self.settings.config, self.workflow.workdir_init)
        try:
            self.config = load_config(self.config_path)
            self.reader = RequestReader(self.config, self.settings.default_qpu, self.settings.default_vqpu)
            slots = parse_slots(self.settings.gpu_slots)
        except QuantumError as exc:
            raise snakemake_compat.one_line_error(str(exc)) from None
        self.gpus = GpuSlots(slots if slots is not None else detect_gpus())
        self.leases = LaneLeases(self.settings.lease_dir)
        self.session = RunSession(dict(os.environ), self.settings.acquire_timeout)
        self._requests: dict[Any, JobRequest] = {}
        self._not_started: dict[Any, str] = {}  # job -> why it failed before its command
        pending = self._check_run()  # bad configuration fails here, before anything starts
        quantum_dir = Path(self.workflow.workdir_init) / ".snakemake" / "quantum"
        self.metrics_file = None if self.settings.no_metrics else self._start_metrics(quantum_dir / "metrics")
        event_dir = self.settings.vqpu_event_dir or str(quantum_dir / "vqpu")
        self.slurm = None
        if self.settings.classical == "slurm":
            from .slurm import SlurmLauncher, SlurmRoute

            try:
                self.slurm = SlurmRoute(self.workflow, self.logger, self.settings)
            except QuantumError as exc:
                raise snakemake_compat.one_line_error(str(exc)) from None
            launcher: Any = SlurmLauncher(
                self.config_path, self.settings.vqpu_idle_timeout, self.settings.vqpu_walltime,
                self.settings.slurm_vqpu_partition, quantum_dir / "env", _default_account(pending),
            )
            self._submitter = ThreadPoolExecutor(max_workers=8, thread_name_prefix="quantum-submit")
        else:
            launcher = LocalLauncher(self.config_path, self.settings.vqpu_idle_timeout, self.settings.vqpu_walltime)
        self._stop = threading.Event()  # set when the run is cancelled
        self.sidecars = SidecarManager(launcher, event_dir, self.settings.vqpu_start_timeout, dict(os.environ), self._stop)
        self._running: set[Any] = set()
        self._running_lock = threading.Lock()
        self._previous_sigterm: Any = None
        self._warned_no_gpu = False
        self._closed = False
        self._froze_gc = False
        self._sender: sender.Sender | None = None  # started with the first inline qrun job
        self._sender_lock = threading.Lock()
        snakemake_compat.find_pipe_inputs_in_one_pass()  # the target of a 10,000-job fan-out: 12% of the run
        snakemake_compat.quick_signal_handler_lookups()  # each step of each job: 7% of the main thread
        snakemake_compat.format_shell_commands_once_per_log()  # each job started: ~5% of the main thread
        self.forker = self._fork_job_parent(pending)  # before any thread of ours starts
        environ.install()
        self._start_vqpus(pending)
        # What exists now (Snakemake's modules, the workflow, its DAG) lives as long as the
        # run: every full garbage collection would walk it again. Given back in _close to a
        # program that ran Snakemake (the snakemake command keeps it until it exits); last,
        # so a start-up that fails leaves the collector as it was, and not over a freeze of
        # the program's own (gc.unfreeze would undo it too).
        self._froze_gc = gc.get_freeze_count() == 0
        if self._froze_gc:
            gc.freeze()

    # ---------------------------------------------------------------- planning

    def _check_run(self) -> list[tuple[Any, JobRequest]]:
        """Read every pending job's request now: bad configuration fails before any job runs.

        A request that Snakemake cannot evaluate yet (a resource function of a file an
        upstream job writes) is read again when its job runs, as --executor local does.
        """
        pending = []
        for job in snakemake_compat.needrun_jobs(self.workflow):
            try:
                request = self.request(job)
                if request.undetermined:
                    continue
                snakemake_compat.keep_resources_read_at_start(self.workflow, job)
                if self.settings.classical == "slurm":
                    self._check_slurm_job(job, request)
                elif request.gpus > len(self.gpus.ids) and self.gpus.ids:
                    raise QuantumError(f"rule {request.rule}: gpu={request.gpus} but only {len(self.gpus.ids)} GPU slots exist ({','.join(self.gpus.ids)})")
            except QuantumError as exc:
                raise snakemake_compat.one_line_error(str(exc)) from None
            pending.append((job, request))
        return pending

    def _start_metrics(self, directory: Path) -> str:
        """This run's metrics file, named for every job (and its Slurm jobs) in the environment."""
        directory.mkdir(parents=True, exist_ok=True)
        path = str(directory / f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}.jsonl")
        self._previous_metrics_var = os.environ.get(metrics.METRICS_VAR)
        os.environ[metrics.METRICS_VAR] = path
        return path

    def _report_metrics(self) -> None:
        """The end-of-run summary, per resource, in Snakemake's output."""
        if self.metrics_file is None:
            return
        if self._previous_metrics_var is None:
            os.environ.pop(metrics.METRICS_VAR, None)
        else:
            os.environ[metrics.METRICS_VAR] = self._previous_metrics_var
        if not os.path.exists(self.metrics_file):
            return
        from ..metrics import summary

        for line in summary.format_summary(summary.summarise(summary.read(self.metrics_file))):
            self.logger.info(line)
        self.logger.info(f"Per-task records: {os.path.relpath(self.metrics_file, self.workflow.workdir_init)} (qmetrics --csv)")

    def _fork_job_parent(self, pending: list[tuple[Any, JobRequest]]) -> forks.JobForker | None:
        """The process run: jobs are forked from, when the workflow has any (local mode)."""
        python_jobs = [request for job, request in pending if (job.is_run or job.is_script) and request.is_quantum]
        if self.slurm is not None or self.settings.spawn_run_jobs or not (snakemake_compat.has_run_rules(self.workflow) or python_jobs):
            return None
        if threading.active_count() != 1:  # forking is only safe with one thread
            log.debug("run: jobs are spawned: %d threads run already", threading.active_count())
            return None
        # One spare child per job that may start at once (up to 4: each is a fork to pay for).
        spares = min(max(self.cores or 1, 1), 4)
        preload = [*PRELOAD] if python_jobs else []
        for kind in sorted({r.type for request in python_jobs for r in request.resources}):
            preload += PRELOAD_FOR_TYPE.get(kind, ())
        return forks.JobForker(self._run_forked, tuple(preload), spares)

    def _start_vqpus(self, pending: list[tuple[Any, JobRequest]]) -> None:
        """Count each vQPU's pending jobs, and start the vQPUs now so they warm up early."""
        vqpus = {}
        for job, request in pending:
            for resource in request.resources:
                if resource.is_vqpu:
                    self.sidecars.expect(resource, job)
                    vqpus[resource.name] = resource
        try:
            for resource in vqpus.values():
                self.sidecars.check_external(resource)
        except QuantumError as exc:
            raise snakemake_compat.one_line_error(str(exc)) from None
        if vqpus:
            log.info("vQPUs for this run: %s", ", ".join(vqpus))
            self.sidecars.prestart(list(vqpus.values()))
            if self.slurm is None and not self.settings.qrun_subprocess and self._some_may_run_inline(pending):
                self._the_sender()  # its start-up beside the vQPUs', not on the first job's path

    @staticmethod
    def _some_may_run_inline(pending: list[tuple[Any, JobRequest]]) -> bool:
        """Whether any pending vQPU job may run inline (one look per rule)."""
        rules: dict[str, bool] = {}
        for job, request in pending:
            if request.vqpus and job.rule.name not in rules:
                rules[job.rule.name] = inline.rule_may_run_inline(job)
        return any(rules.values())

    def request(self, job: Any) -> JobRequest:
        """What the job asks for, read from its resources as they are now (QuantumError if wrong)."""
        if job.is_group():  # a Slurm group job: what its members need, together
            members = [self.request(member) for member in job]
            request = JobRequest(
                job.name, tuple({r.name: r for m in members for r in m.resources}.values()),
                max(m.lanes for m in members), max(m.gpus for m in members),
                undetermined=tuple(key for m in members for key in m.undetermined),
            )
        else:
            request = self.reader.read(job.rule.name, job.resources, job.params)
        self._requests[job] = request
        return request

    def _run_request(self, job: Any) -> JobRequest:
        """The request of a job about to run (QuantumError: this job's mistake)."""
        request = self.request(job)
        if request.undetermined:
            raise QuantumError(f"rule {job.rule.name}: resources {', '.join(request.undetermined)} could not be evaluated")
        if self.slurm is not None:
            self._check_slurm_job(job, request)
        return request

    def _check_slurm_job(self, job: Any, request: JobRequest) -> None:
        if request.is_quantum and job.is_local:
            raise QuantumError(f"rule {request.rule} needs quantum resources but is a local rule; "
                               "local rules run outside the quantum executor in Slurm mode")
        if self.settings.slurm_qpu_mode == "spank" and request.vqpus and len(request.vqpus) < len(request.resources):
            raise QuantumError(f"rule {request.rule} mixes vQPUs and spank_qrmi resources; "
                               "spank_qrmi sets the QRMI job environment itself, so split the rule")

    # ------------------------------------------------------------------ running

    def run_jobs(self, jobs: list[Any]) -> None:
        self._install_sigterm()
        if self.slurm is None:
            return super().run_jobs(jobs)
        plain, quantum = [], []
        for job in jobs:
            try:
                (quantum if self._run_request(job).is_quantum else plain).append(job)
            except QuantumError as exc:  # this job's mistake fails this job, with one line
                self._not_started[job] = str(exc)
                self.report_job_error(SubmittedJobInfo(job))
        if plain:
            self.slurm.run_jobs(plain)  # nothing to add: exactly as --executor slurm
        for job in quantum:
            self.run_job_pre(job)
            self._submitter.submit(self._submit_to_slurm, job)

    def run_job(self, job: Any) -> None:
        self._install_sigterm()
        super().run_job(job)

    def _submit_to_slurm(self, job: Any) -> None:
        """Off the scheduler thread: a vQPU may take a while to start."""
        request = self._requests[job]
        try:
            for resource in request.resources:
                if resource.is_vqpu:
                    self.sidecars.expect(resource, job)
            event_files = {r.name: self.sidecars.ensure(r) for r in request.resources if r.is_vqpu}
            environ: dict[str, str] | None = None
            if not (self.settings.slurm_qpu_mode == "spank" and not request.vqpus):
                # (With spank_qrmi the site's plugin sets the job's QRMI environment and
                # acquires in the job; an --export-file would keep its variables out of
                # the batch step, from which the jobstep's srun inherits them.)
                environ = {**os.environ, **self.session.job_env(request, event_files, self._job_timeout(job)),
                           metrics.JOB_VAR: self._job_identity(job)}
            args = self.slurm.qpu_args(request.resources, request.lanes, job.resources.get("gres"))
            self.slurm.submit(job, args, environ)
        except Exception as exc:  # reported as this job's error, with the reason
            self._not_started[job] = str(exc) if isinstance(exc, QuantumError) else f"{type(exc).__name__}: {exc}"
            self.report_job_error(SubmittedJobInfo(job))

    def cached_or_run(self, job: Any, run_func: Any, *args: Any) -> None:
        """Runs in a pool thread for every single job (also inside groups)."""
        try:
            request = self._run_request(job)
        except QuantumError as exc:
            self._not_started[job] = str(exc)
            raise snakemake_compat.spawned_job_error()() from None
        if self.forker is not None:
            if run_func == self.spawn_job:  # a run: job
                run_func, args = self._forked(job), ()
            elif job.is_script and request.is_quantum and run_func is snakemake_compat.run_wrapper():
                # A Python script: no interpreter, no qiskit import per job (snakemake_compat).
                run_func, args = self._forked(job, args), ()
        if not request.is_quantum and not request.gpus:
            return super().cached_or_run(job, run_func, *args)
        with self._running_lock:
            self._running.add(job)
        try:
            with contextlib.ExitStack() as stack:
                variables = self._job_context(job, request, stack)
                stack.enter_context(environ.job_environment(variables))
                call = self._inline_qrun(job, request)
                if call is not None:
                    run_func = inline.runner(self._the_sender(), call, environ.snapshot(), run_func)
                if self._stop.is_set():
                    raise QuantumError("the run was cancelled before this job started")
                super().cached_or_run(job, run_func, *args)
        except QuantumError as exc:  # before its command ran: said once, by print_job_error
            self._not_started[job] = str(exc)
            raise snakemake_compat.spawned_job_error()() from None
        finally:
            with self._running_lock:
                self._running.discard(job)

    def _job_context(self, job: Any, request: JobRequest, stack: contextlib.ExitStack) -> dict[str, str]:
        variables: dict[str, str] = {}
        if request.gpus:
            if self.gpus.ids:
                ids = stack.enter_context(self.gpus.hold(request.gpus, self._stop))
                variables["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
            elif not self._warned_no_gpu:
                self._warned_no_gpu = True
                log.warning("rule %s asks for gpu=%d but no GPU was detected; gpu jobs run without CUDA_VISIBLE_DEVICES", request.rule, request.gpus)
        if request.is_quantum:
            for resource in request.resources:
                if resource.is_vqpu:
                    self.sidecars.expect(resource, job)  # jobs a checkpoint added were not known at the start
            event_files = {r.name: self.sidecars.ensure(r) for r in request.resources if r.is_vqpu}
            waited = time.monotonic()
            for resource in request.resources:
                if resource.lanes:
                    stack.enter_context(self.leases.hold(resource.name, resource.lanes, request.lanes, self._stop))
            acquiring = time.monotonic()
            variables.update(self.session.job_env(request, event_files, self._job_timeout(job)))
            variables[metrics.JOB_VAR] = self._job_identity(job, acquiring - waited, time.monotonic() - acquiring)
        return variables

    @staticmethod
    def _job_identity(job: Any, lease_seconds: float = 0.0, acquire_seconds: float = 0.0) -> str:
        """Who a task's metrics record belongs to (metrics.record.JOB_VAR)."""
        return json.dumps({
            "rule": job.rule.name, "jobid": job.jobid, "wildcards": {k: str(v) for k, v in job.wildcards_dict.items()},
            "lease_seconds": round(lease_seconds, 6), "acquire_seconds": round(acquire_seconds, 6),
        })

    def _the_sender(self) -> sender.Sender:
        """The run's sender process (sender.py), started with the first job that needs it."""
        with self._sender_lock:
            if self._closed:
                raise QuantumError("the run is ending")
            if self._sender is None:
                self._sender = sender.Sender(self.settings.vqpu_batch)
            return self._sender

    def _inline_qrun(self, job: Any, request: JobRequest) -> inline.QrunCall | None:
        """The qrun call, when this job may send its vQPU request from here (see inline.py)."""
        if self.settings.qrun_subprocess or not request.vqpus or not inline.job_qualifies(job):
            return None
        try:
            return inline.qrun_call(job.shellcmd)
        except Exception:  # a command Snakemake cannot format here: let shell() report it
            return None

    def _job_timeout(self, job: Any) -> int:
        """Seconds the job's quantum tasks may take: its runtime (minutes), else the setting."""
        runtime = job.resources.get("runtime")
        return int(runtime) * 60 if isinstance(runtime, int) and runtime > 0 else self.settings.qpu_timeout

    def spawn_job(self, job: Any) -> None:
        """Snakemake's way for a ``run:`` job: a new Snakemake process, with this job's environment.

        Used with ``--quantum-spawn-run-jobs``, or for a job whose arguments cannot be
        handed to the job parent; otherwise ``cached_or_run`` forks the job (forks.py).
        """
        cmd = self.format_job_exec(job)
        try:
            subprocess.check_call(cmd, shell=True, env=environ.snapshot())
        except subprocess.CalledProcessError:
            raise snakemake_compat.spawned_job_error()() from None

    def _forked(self, job: Any, args: tuple[Any, ...] = ()) -> Any:
        """A ``run_func`` that runs ``job`` in a child of the job parent; ``args`` are
        ``run_wrapper``'s (already computed by Snakemake for jobs it runs in threads)."""
        if not args:  # a run: job: prepare it, as --force-use-threads would
            args = snakemake_compat.job_run_args(self, job)

        def run() -> None:  # called within the job's environment (cached_or_run)
            try:
                payload = forks.Payload(args[0].name, args[1:], environ.snapshot(), os.getcwd())
            except (pickle.PicklingError, TypeError, AttributeError) as exc:
                log.info("job %s cannot be forked (%s); spawning Snakemake for it", job.jobid, exc)
                return self.spawn_job(job)
            if self.forker.run(payload) != 0:
                raise snakemake_compat.spawned_job_error()()

        return run

    def _run_forked(self, rule: str, args: tuple[Any, ...]) -> None:
        """In a forked child: run the job as Snakemake runs a run: job in a thread."""
        snakemake_compat.run_python_scripts_in_process()
        try:
            snakemake_compat.run_wrapper()(snakemake_compat.rule_named(self.workflow, rule), *args)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            snakemake_compat.print_exception(exc, self.workflow)
            raise

    def print_job_error(self, job_info: SubmittedJobInfo, msg: Any = None, **kwargs: Any) -> None:
        """A job that failed before its command ran says why in one line (Snakemake's own
        report would show its command as having failed)."""
        reason = self._not_started.pop(job_info.job, None)
        if reason is None:
            return super().print_job_error(job_info, msg, **kwargs)
        job = job_info.job
        if not reason.startswith(f"rule {job.rule.name}"):
            reason = f"rule {job.rule.name}: {reason}"
        self.logger.error(f"Error in job {job.jobid}: {reason}; its command did not run")

    def handle_job_success(self, job: Any) -> None:
        super().handle_job_success(job)
        self._job_done(job)

    def handle_job_error(self, job: Any) -> None:
        super().handle_job_error(job)
        if job.restart_times <= job.attempt - 1:  # no retry left: it is done with its vQPU
            self._job_done(job)

    def _job_done(self, job: Any) -> None:
        """The job no longer needs its vQPUs: a vQPU no pending job needs is stopped (after
        the run's token on it is released), in the background: the scheduler must not wait."""
        if self._closed:
            return
        for resource in self.sidecars.forget(job):
            threading.Thread(target=self._stop_idle_vqpu, args=(resource,), daemon=True).start()

    def _stop_idle_vqpu(self, resource: Any) -> None:
        self.session.release(resource.name)
        self.sidecars.stop(resource.name)

    # ---------------------------------------------------------------- stopping

    def _install_sigterm(self) -> None:
        """SIGTERM stops the run like Ctrl-C (Snakemake alone would wait for running jobs)."""
        if self._previous_sigterm is not None or threading.current_thread() is not threading.main_thread():
            return

        def on_sigterm(_signum: int, _frame: Any) -> None:
            raise KeyboardInterrupt

        self._previous_sigterm = signal.signal(signal.SIGTERM, on_sigterm)

    def shutdown(self) -> None:
        try:
            if self.slurm is not None:
                self._submitter.shutdown(wait=True)
                self.slurm.shutdown()
            super().shutdown()
        finally:
            self._close()

    def cancel(self) -> None:
        """Ctrl-C or SIGTERM: no task starts after this; running ones are stopped now."""
        self._stop.set()  # jobs still waiting (vQPU start, lanes, GPUs) give up at once
        self.leases.wake()
        try:
            if self.slurm is not None:
                self._submitter.shutdown(wait=True, cancel_futures=True)
                self.slurm.cancel()  # scancel every job of this run
                super().cancel()
            else:
                if self._sender is not None:
                    self._sender.stop_all()
                drained = threading.Event()
                sweeper = threading.Thread(target=stopping.stop_job_processes, args=(drained, self._spared_pids, self._forked_pids), daemon=True)
                sweeper.start()
                try:
                    super().cancel()  # waits for the pool's threads
                finally:
                    drained.set()
                    sweeper.join()
            self._remove_partial_outputs()
        finally:
            self._close()

    def _spared_pids(self) -> set[int]:
        return self.sidecars.pids() | ({self.forker.pid} if self.forker else set()) | ({self._sender.pid} if self._sender else set())

    def _forked_pids(self) -> set[int]:
        return self.forker.job_pids() if self.forker else set()

    def _remove_partial_outputs(self) -> None:
        """Outputs of jobs stopped mid-way are incomplete: remove them (Snakemake removed any
        older version before the job started)."""
        with self._running_lock:
            stopped = list(self._running)
        for job in stopped:
            for path in job.output:
                with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
                    os.unlink(path)

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.forker is not None:
            self.forker.close()
        if self._froze_gc and not snakemake_compat.is_snakemake_command():
            gc.unfreeze()  # a program that ran Snakemake gets its collector back (the command exits now)
        with self._sender_lock:
            if self._sender is not None:
                self._sender.close()
        self._report_metrics()
        self.session.release_all()
        self.sidecars.stop_all()
        environ.uninstall()
        PACKAGE_LOGGER.removeHandler(self._log_handler)
        if self._previous_sigterm is not None:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGTERM, self._previous_sigterm)
