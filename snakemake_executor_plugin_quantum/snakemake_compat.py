"""Every place this package relies on Snakemake or snakemake-executor-plugin-slurm beyond
their public plugin interfaces, each with the reason the public interface does not suffice.

Nothing else in the package touches a private name of either. Each assumption made here
is checked against the installed versions by ``tests/unit/test_snakemake_compat.py``,
whose failures name the version that broke it. The ranges we were written against are
pinned in pyproject.toml (snakemake 9.x, snakemake-executor-plugin-slurm 2.x).

Imports of Snakemake modules happen inside the functions: ``settings`` imports this module
whenever Snakemake loads the plugin, and ``qplan`` needs only its own part.
"""

from __future__ import annotations

import functools
import heapq
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

# ------------------------------------------------------------------ the local executor


def local_executor_class() -> type:
    """Snakemake's local executor, which we extend rather than re-implement.

    Why: on one machine we *are* ``--executor local`` plus a per-job hook (GPU slots, lane
    leases, vQPUs, the QRMI environment). The interface package has no local executor
    base; re-writing Snakemake's thread pool, ``run_wrapper`` and job-cache handling
    would make us a different executor. The hooks we override are the ones its methods
    are named for: ``run_jobs``, ``run_job``, ``cached_or_run`` (runs every single job in
    its pool thread), ``spawn_job`` (``run:`` jobs), ``handle_job_success``/``_error``,
    ``cancel``, ``shutdown``.
    """
    from snakemake.executors.local import Executor

    return Executor


def spawned_job_error() -> type[Exception]:
    """The error Snakemake's local executor expects when a job ran in another process,
    which printed the job's error itself (so Snakemake does not print it again)."""
    from snakemake.exceptions import SpawnedJobError

    return SpawnedJobError


def job_run_args(executor: Any, job: Any) -> tuple[Any, ...]:
    """What Snakemake's ``run_wrapper`` gets for ``job`` (its rule first), the job prepared.

    Why: a ``run:`` job runs in a process forked from the executor (executor/forks.py)
    instead of a new Snakemake per job; there it calls the same ``run_wrapper`` with the
    same arguments ``--force-use-threads`` would give it in a thread.
    """
    return tuple(executor.job_args_and_prepare(job))


def run_wrapper() -> Callable[..., None]:
    from snakemake.executors.local import run_wrapper as wrapper

    return wrapper


def print_exception(error: BaseException, workflow: Any) -> None:
    """Print a job's error as Snakemake's local executor does for a job run in a thread."""
    from snakemake.exceptions import print_exception as show

    show(error, workflow.linemaps)


def run_python_scripts_in_process() -> None:
    """In a forked job process only: run a Python ``script:`` in this process.

    Why: Snakemake runs a Python script as ``python <script>`` through ``shell()``: a new
    interpreter that imports Snakemake (for the ``snakemake`` object) and, in quantum
    jobs, qiskit, once per job. The job process forked from the job parent has both
    already. Scripts that need anything else Snakemake's way (a conda env, a container,
    env modules, a benchmark, a notebook edit, a shell prefix) still run as a process.
    """
    from snakemake.script import PythonScript

    if getattr(PythonScript.execute_script, "_in_process", False):
        return
    original = PythonScript.execute_script

    def execute_script(self: Any, fname: str, edit: bool = False) -> None:
        if (type(self) is not PythonScript or edit or self.conda_env or self.container_img or self.env_modules
                or self.bench_record is not None or shell_wraps_commands()):
            return original(self, fname, edit)
        _run_script(fname, self.threads, self.resources)

    execute_script._in_process = True  # type: ignore[attr-defined]
    PythonScript.execute_script = execute_script


def _run_script(fname: str, threads: Any, resources: Any) -> None:
    """``python fname`` in this (throwaway) process: the environment ``shell()`` would give
    it, ``__main__``, exit codes, atexit handlers and a traceback on failure as Python's."""
    import atexit
    import os
    import runpy
    import subprocess
    import sys
    import traceback

    for name in ("OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                 "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[name] = str(threads)
    tmpdir = resources.get("tmpdir") if resources else None
    if tmpdir:
        for name in ("TMPDIR", "TMP", "TEMPDIR", "TEMP"):
            os.environ[name] = str(tmpdir)
    command = f"{sys.executable} {fname}"
    atexit._clear()  # Snakemake's handlers, inherited by the fork, are not the script's
    sys.argv = [fname]
    try:
        runpy.run_path(fname, run_name="__main__")
    except SystemExit as exc:
        if exc.code not in (None, 0):
            if not isinstance(exc.code, int):
                print(exc.code, file=sys.stderr)
            raise subprocess.CalledProcessError(exc.code if isinstance(exc.code, int) else 1, command) from None
    except KeyboardInterrupt:
        raise
    except BaseException:
        traceback.print_exc()
        raise subprocess.CalledProcessError(1, command) from None
    finally:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()


# ------------------------------------------------------------------ the scheduler


def skip_what_the_scheduler_does_not_read() -> None:
    """Before each selection round, compute only what the scheduler plugin reads, when it
    says so: the ready jobs ``jobs_to_offer(ready, free resources)`` returns instead of all
    of them, the input sizes of the jobs ``jobs_to_size(jobs)`` returns, and the list of
    remaining jobs only if it reads it (``reads_remaining_jobs``).

    Why: a round follows every finished job, and before each one Snakemake's job scheduler
    copies the set of ready jobs, resets the params and resources of each, validates each,
    stats every input file of each (``JobScheduler.update_input_sizes``) and lists every
    pending job (``remaining_jobs``), whatever the plugin does with them: work in
    proportion to the ready and pending jobs per finished job, quadratic in a fan-out (B2's
    1,000 sampling jobs, one circuit file each; B10's 10,000 jobs). ``--scheduler quantum``
    keeps the ready jobs it has seen in queues, so a round can only choose new jobs and
    the best queued ones that fit the free resources; it reads a job's input sizes once,
    when it first becomes ready, and never reads the remaining jobs. The scheduler
    interface has no way to say so. Schedulers without these attributes (greedy, ilp),
    and dry runs (which "run" every ready job each round), keep Snakemake's behaviour; so
    does a round in which nothing runs and nothing offered would fit.
    """
    from snakemake.scheduling.job_scheduler import JobScheduler

    opened, reevaluate = JobScheduler.open_jobs, JobScheduler._schedule_reevalutation
    sizes, remaining = JobScheduler.update_input_sizes, JobScheduler.remaining_jobs
    if getattr(sizes, "_for_the_scheduler", False):
        return

    def open_jobs(self: Any) -> Any:
        jobs_to_offer = _declared(self, "jobs_to_offer", None)
        if jobs_to_offer is None or self.dryrun:
            return opened.fget(self)
        dag = self.workflow.dag
        if type(dag._ready_jobs) is not _NotingSet:
            dag._ready_jobs = _NotingSet(dag._ready_jobs)
        ready = dag._ready_jobs
        offered = jobs_to_offer(ready, self.resources, ready.take_added())
        if not offered and ready and not self.running:
            return opened.fget(self)
        return offered

    def schedule_reevaluation(self: Any, delay: float) -> None:
        if _declared(self, "jobs_to_offer", None) is None:
            return reevaluate(self, delay)
        if getattr(self, "_quantum_wakeups", None) is None:
            self._quantum_wakeups = _Wakeups(self._open_jobs.release)
        self._quantum_wakeups.after(delay)

    async def update_input_sizes(self: Any, jobs: Any) -> None:
        jobs_to_size = _declared(self, "jobs_to_size", None)
        await sizes(self, jobs if jobs_to_size is None else jobs_to_size(jobs))

    def remaining_jobs(self: Any) -> Any:
        if _declared(self, "reads_remaining_jobs", True):
            return remaining.fget(self)
        return _Listed(lambda: remaining.fget(self))

    update_input_sizes._for_the_scheduler = True  # type: ignore[attr-defined]
    JobScheduler.update_input_sizes = update_input_sizes
    JobScheduler.remaining_jobs = property(remaining_jobs, doc=remaining.__doc__)
    JobScheduler.open_jobs = property(open_jobs, doc=opened.__doc__)
    JobScheduler._schedule_reevalutation = schedule_reevaluation


def _declared(job_scheduler: Any, name: str, default: Any) -> Any:
    """What the job scheduler's plugin declares as ``name`` (greedy and ilp: ``default``)."""
    return getattr(getattr(job_scheduler, "_scheduler", None), name, default)


class _Wakeups:
    """Calls ``wake`` at each requested time from one thread, in order: what Snakemake's
    ``threading.Timer`` per request does, without a new thread per scheduling round.

    Why: with a rate limit (``--max-jobs-per-timespan``, always set) Snakemake asks after
    every round to be woken one timespan later, so that jobs held back start once the
    window has passed, and starts a thread for each: ~100 threads a second in a fan-out,
    and the scheduling thread waits for each to start (8% of its time, py-spy --idle)."""

    def __init__(self, wake: Callable[[], Any]):
        self._wake = wake
        self._due: list[float] = []
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def after(self, delay: float) -> None:
        with self._changed:
            heapq.heappush(self._due, time.monotonic() + delay)
            if self._thread is None:
                # A daemon: a wake-up still due when the run ends must not hold up the exit
                # (Snakemake's timers do, up to one timespan).
                self._thread = threading.Thread(target=self._run, name="snakemake-wakeups", daemon=True)
                self._thread.start()
            self._changed.notify()

    def _run(self) -> None:
        """Until no wake-up is due (then the thread ends; the next request starts another)."""
        while True:
            with self._changed:
                while self._due and self._due[0] > time.monotonic():
                    self._changed.wait(self._due[0] - time.monotonic())
                if not self._due:
                    self._thread = None
                    return
                heapq.heappop(self._due)
            self._wake()


class _NotingSet(set):  # type: ignore[type-arg]
    """The DAG's set of ready jobs, noting each job added to it: the scheduler learns which
    jobs are new without comparing every ready job with its queues each round. The DAG
    adds ready jobs with ``add`` and ``update`` only (checked by the compat tests)."""

    def __init__(self, jobs: Any = ()):
        super().__init__(jobs)
        self._added = list(self)

    def add(self, job: Any) -> None:
        super().add(job)
        self._added.append(job)

    def update(self, *others: Any) -> None:
        for other in others:
            for job in other:
                self.add(job)

    def __ior__(self, other: Any) -> _NotingSet:
        self.update(other)
        return self

    def take_added(self) -> list[Any]:
        added, self._added = self._added, []
        return added


class _Listed(Sequence):  # type: ignore[type-arg]
    """A list made when first read: the scheduler never reads ``remaining_jobs``, but
    Snakemake's own end-of-run check does, and gets the same list it would have."""

    def __init__(self, make: Callable[[], list[Any]]):
        self._make: Callable[[], list[Any]] | None = make
        self._items: list[Any] = []

    def _list(self) -> list[Any]:
        if self._make is not None:
            self._items, self._make = self._make(), None
        return self._items

    def __len__(self) -> int:
        return len(self._list())

    def __getitem__(self, index: Any) -> Any:
        return self._list()[index]

    def __iter__(self) -> Any:
        return iter(self._list())


# ------------------------------------------------------------------ jobs


def find_pipe_inputs_in_one_pass() -> None:
    """While a job is prepared, answer "does this input come from a pipe or a service?"
    from a lookup of the job's inputs to their producers, built once for that job.

    Why: ``Job.prepare`` asks it for every input, and ``Job.is_pipe_or_service_input``
    searches all of the job's dependencies for the one producing the file: inputs x
    dependencies set lookups. For the target of a fan-out (``rule all`` over 10,000
    outputs) that is tens of millions, on the main thread after the last job (12% of a
    10,000-job run's main thread, py-spy). The dependencies do not change while a job is
    prepared, so the lookup (each file to the first dependency producing it, in
    Snakemake's order) gives the same answers. Outside ``prepare`` the check is Snakemake's.
    """
    from snakemake.jobs import Job

    prepare, is_pipe_or_service_input = Job.prepare, Job.is_pipe_or_service_input
    if getattr(is_pipe_or_service_input, "_one_pass", False):
        return
    producers: dict[Any, dict[Any, Any] | None] = {}  # job being prepared -> its lookup, once asked

    async def prepare_with_lookup(self: Any) -> Any:
        producers[self] = None
        try:
            return await prepare(self)
        finally:
            producers.pop(self, None)

    def from_lookup(self: Any, path: Any) -> bool:
        if self not in producers:
            return is_pipe_or_service_input(self, path)
        lookup = producers[self]
        if lookup is None:
            lookup = producers[self] = {}
            for dependency, files in self.dag.dependencies[self].items():
                for file in files:
                    lookup.setdefault(file, dependency)
        producer = lookup.get(path)
        return producer is not None and path in producer.pipe_or_service_output

    from_lookup._one_pass = True  # type: ignore[attr-defined]
    from_lookup.__wrapped__ = is_pipe_or_service_input  # type: ignore[attr-defined]
    prepare_with_lookup.__wrapped__ = prepare  # type: ignore[attr-defined]
    Job.prepare = prepare_with_lookup
    Job.is_pipe_or_service_input = from_lookup


def rule_named(workflow: Any, name: str) -> Any:
    return workflow.get_rule(name)


def has_run_rules(workflow: Any) -> bool:
    """Does any rule of the workflow have a ``run:`` block (jobs a checkpoint adds too)?"""
    return any(rule.is_run for rule in workflow.rules)


def needrun_jobs(workflow: Any) -> list[Any]:
    """The jobs this run will execute, known when the executor starts.

    Why: the executor starts the vQPUs a run needs before any job runs (so they warm up
    during the classical stages) and counts each vQPU's pending jobs to stop it with the
    last; the interface's ``DAGExecutorInterface`` does not list jobs.
    """
    return list(workflow.dag.needrun_jobs())


def keep_resources_read_at_start(workflow: Any, job: Any) -> None:
    """Let Snakemake keep the resources of ``job`` that the executor read at start, when
    no job of this run writes any of its inputs.

    Why: the executor reads every pending job's resources when it starts, so that bad
    configuration fails before anything runs (``Executor._check_run``). Snakemake drops
    them once, when the job is first handed to the scheduler (``reset_params_and_resources``:
    they *might still contain TBDs or old values from before files have been regenerated*),
    and evaluates them again: twice per job, 4% of the main thread in a 3,000-job fan-out.
    A job that no job of this run writes an input of has nothing regenerated before it
    runs, so the second evaluation would read the same inputs again.
    """
    dag = workflow.dag
    if not any(dag.needrun(upstream) for upstream in dag.dependencies[job]):
        job._params_and_resources_resetted = True


_UNSET = object()


def format_shell_commands_once_per_log() -> None:
    """While Snakemake logs a job it starts, its shell command is formatted once, not three times.

    Why: ``Job.log_info`` reads ``Job.shellcmd`` three times (twice for the job's info
    event, once for the shell command event), and each read formats the rule's command
    with the job's wildcards, input, output and params again, on the main thread: ~5% of
    it in a 3,000-job fan-out. Within one ``log_info`` call the job does not change, so
    the first answer (or the error, raised again on the next read) stands for the call.
    """
    from snakemake.jobs import Job

    if getattr(Job.log_info, "quantum_once", False):
        return
    log_info, shellcmd = Job.log_info, Job.shellcmd
    local = threading.local()

    def shellcmd_once(self: Any) -> Any:
        held = getattr(local, "held", None)
        if held is None or held[0] is not self:
            return shellcmd.fget(self)
        if held[1] is _UNSET:
            held[1] = shellcmd.fget(self)
        return held[1]

    @functools.wraps(log_info)
    def log_info_once(self: Any, *args: Any, **kwargs: Any) -> Any:
        outer = getattr(local, "held", None)  # a group job logs each of its jobs
        local.held = [self, _UNSET]
        try:
            return log_info(self, *args, **kwargs)
        finally:
            local.held = outer

    log_info_once.quantum_once = True  # type: ignore[attr-defined]
    Job.shellcmd = property(shellcmd_once, doc=shellcmd.__doc__)
    Job.log_info = log_info_once


def quick_signal_handler_lookups() -> None:
    """``signal.getsignal``/``signal.signal`` with the same answers, without an exception each.

    Why: Snakemake runs each asynchronous step of each job through ``asyncio.Runner.run``
    (``Workflow.async_run``, several per job), which reads the SIGINT handler and swaps its
    own in and out again. ``signal`` maps every handler to its enum member by calling
    ``Handlers(handler)``, which for a Python handler fails through Enum's error path (a
    ValueError raised and caught): 7% of Snakemake's main thread in a 3,000-job fan-out.
    The enum's own value map gives the same member, or the value itself when there is none.
    Not Snakemake's code, but only Snakemake's use of it makes it matter.
    """
    import signal

    if getattr(signal._int_to_enum, "quantum_lookup", False):
        return

    def _int_to_enum(value: Any, enum_klass: Any) -> Any:
        try:
            return enum_klass._value2member_map_[value]
        except (KeyError, TypeError):  # not a member (a Python handler), or unhashable
            return value

    _int_to_enum.quantum_lookup = True  # type: ignore[attr-defined]
    signal._int_to_enum = _int_to_enum  # type: ignore[attr-defined]


def shell_wraps_commands() -> bool:
    """Does ``shell()`` add a prefix or suffix (``shell.prefix(...)`` in the Snakefile)?

    Why: a job whose command is one plain ``qrun`` call is sent to its vQPU by the
    executor itself (executor/inline.py); a Snakefile-wide prefix or suffix would change
    what that command does, so such jobs run as shell commands.
    """
    from snakemake.shell import shell

    return bool(shell._process_prefix or shell._process_suffix)


def is_undetermined(value: Any) -> bool:
    """Is this resource value Snakemake's placeholder for "not known yet"?

    Why: Snakemake evaluates resource callables lazily; one that needs an input file an
    upstream job creates is ``<TBD>`` (a ``TBDString``) until that job has run. The
    executor must then wait until the job runs to read it, as ``--executor local`` does.
    """
    from snakemake.common.tbdstring import TBDString

    return isinstance(value, TBDString)


def one_line_error(message: str) -> Exception:
    """An error Snakemake prints as ``Error: <message>``, without a traceback.

    Why: a ``WorkflowError`` raised while the executor starts is printed with the
    executor's stack frames; a configuration mistake is one line, as the README promises.
    ``ApiError`` is the interface package's error that Snakemake formats that way.
    """
    from snakemake_interface_common.exceptions import ApiError

    return ApiError(message)


# ------------------------------------------------------------------ settings


def mode_aware_common_settings(base: type, decide: Callable[[], bool]) -> type:
    """A ``CommonSettings`` whose ``non_local_exec`` is decided by our own settings.

    Why: Snakemake reads one ``common_settings`` per plugin, but we are a local executor
    on one machine and a remote one in Slurm mode. Snakemake builds the executor settings
    object before it reads ``common_settings.non_local_exec`` (CLI and API alike), so the
    settings can record the mode and this property answers from it.
    """

    class ModeAwareCommonSettings(base):  # type: ignore[misc, valid-type]
        @property  # type: ignore[override]
        def non_local_exec(self) -> bool:
            return decide()

        @non_local_exec.setter
        def non_local_exec(self, _value: bool) -> None:
            pass  # decided by ExecutorSettings.classical

    return ModeAwareCommonSettings


# ------------------------------------------------------------------ the process


def is_snakemake_command() -> bool:
    """Is this process the ``snakemake`` command, which exits once its one run is over (as
    opposed to a program that called Snakemake's API and goes on)?

    Why: the executor freezes the garbage collector's view of what exists when the run
    starts. A program gets it back at the end of the run; the command need not, and
    should not: at exit Python collects once more over every object not frozen, and frees
    the cycles of Snakemake's (and qiskit's) modules it finds there, ~0.25 s at the end of
    every run here. Snakemake does not say how it was started, so this reads
    ``__main__``: its console script ``snakemake``, or ``python -m snakemake``.
    """
    import os
    import sys

    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None:
        return spec.name in ("snakemake", "snakemake.__main__")
    return os.path.basename(getattr(main, "__file__", None) or "") == "snakemake"


# ------------------------------------------------------------------ qplan


def planned_jobs(dag_api: Any, forceall: bool) -> list[tuple[Any, list[Any]]]:
    """The jobs ``snakemake -n`` would run, each with the jobs among them it depends on.

    Why: Snakemake's public ``DAGApi`` only prints graphs and summaries. This does what
    ``Workflow.printdag`` and the dry-run part of ``Workflow.execute`` do: no lock taken
    (``lock_warn_only``), no job run.
    """
    workflow = dag_api.workflow_api._workflow  # parses the Snakefile
    workflow._prepare_dag(forceall=forceall, ignore_incomplete=False, lock_warn_only=True)
    workflow._build_dag()
    dag = workflow.dag
    workflow.async_run(dag.postprocess(update_needrun=False))
    needrun = list(dag.needrun_jobs())
    return [(job, [d for d in dag.job_dependencies(job) if dag.needrun(d)]) for job in needrun]


# ------------------------------------------------------------------ snakemake-executor-plugin-slurm


class SlurmWorkflowView:
    """The workflow as the slurm plugin's executor must see it: its own settings and plugin.

    Why: we drive the slurm plugin's executor instead of re-implementing sbatch, sacct and
    scancel. Its constructor reads ``workflow.executor_settings``,
    ``workflow.executor_plugin`` and ``workflow.remote_execution_settings``; everything
    else is the real workflow.
    """

    def __init__(self, workflow: Any, settings: Any, plugin: Any, remote_settings: Any):
        self._workflow = workflow
        self.executor_settings = settings
        self.executor_plugin = plugin
        self.remote_execution_settings = remote_settings

    def __getattr__(self, name: str) -> Any:
        return getattr(self._workflow, name)


def normalise_slurm_status_queries() -> None:
    """Make the slurm plugin see a job cancelled from outside as failed.

    Why: sacct reports such a job as ``CANCELLED by <uid>``; the plugin (2.8) compares
    states as given, so it never counts the job as failed and the run waits forever.
    This strips the suffix from what its ``query_job_status`` returns.
    """
    import snakemake_executor_plugin_slurm as plugin

    if getattr(plugin.query_job_status, "_normalised", False):
        return
    original = plugin.query_job_status

    async def query_job_status(*args: Any, **kwargs: Any) -> Any:
        statuses, duration = await original(*args, **kwargs)
        if statuses:
            statuses = {job: state.split(" ", 1)[0] for job, state in statuses.items()}
        return statuses, duration

    query_job_status._normalised = True  # type: ignore[attr-defined]
    plugin.query_job_status = query_job_status


def slurm_executor_class() -> type:
    """The slurm plugin's executor, plus per-job sbatch arguments and a status-interval cap.

    Why: a quantum job needs ``--gres=qpu:N`` (or ``--qpu=``) and an ``--export-file``
    that the plugin cannot express per job; it splices ``get_partition_arg``'s text into
    its sbatch call, so that is where ours go. While nothing finishes, its wait between
    status checks grows by 10 s per check (up to 180 s): a job that ends just after a
    check is seen only at the next, 10 s or more later, on every stage of a workflow.
    Ours doubles the wait instead, from the status interval, up to ``max_status_interval``
    (any finished job resets it, as in the plugin): a few seconds late at first, and the
    cap reached in about as many checks as adding 10 s would take.
    """
    from snakemake_executor_plugin_slurm import Executor as SlurmExecutor

    base_interval = SlurmExecutor.next_seconds_between_status_checks
    plugin_back_off, plugin_max_wait = 10, 180  # check_active_jobs: min(wait + 10, 180) when nothing finished

    class QuantumSlurmExecutor(SlurmExecutor):  # type: ignore[misc, valid-type]
        max_status_interval = 180

        def __post_init__(self, *args: Any, **kwargs: Any) -> None:
            self.extra_args: dict[Any, str] = {}
            super().__post_init__(*args, **kwargs)

        @property
        def next_seconds_between_status_checks(self) -> Any:
            return base_interval.fget(self)

        @next_seconds_between_status_checks.setter
        def next_seconds_between_status_checks(self, value: Any) -> None:
            if value is not None:
                current = base_interval.fget(self)  # the last wait set, else the status interval
                if value > current and value in (current + plugin_back_off, plugin_max_wait):
                    value = current * 2  # the plugin's back-off (nothing finished): ours
                value = min(value, self.max_status_interval)
            base_interval.fset(self, value)

        def get_partition_arg(self, job: Any) -> str:
            extra = self.extra_args.get(job, "")
            return f"{super().get_partition_arg(job)} {extra}".rstrip()

        def cancel(self) -> None:
            """Cancel what the plugin holds as active, then every job named after this run.

            Why: the status loop of snakemake-interface-executor-plugins takes the active
            jobs out of ``active_jobs`` while it queries them; a Ctrl-C at that moment
            cancels none of those, and they run on. The plugin names each job after its
            ``run_uuid``, so ``scancel --name`` reaches them all.
            """
            try:
                super().cancel()
            finally:
                subprocess.run(["scancel", "--name", self.run_uuid], capture_output=True, timeout=60, check=False)

    return QuantumSlurmExecutor
