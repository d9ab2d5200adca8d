"""Each assumption snakemake_compat.py makes about Snakemake and the slurm plugin, checked
against the installed versions. A failure names the version that broke it."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from snakemake_executor_plugin_quantum import snakemake_compat

VERSIONS = f"snakemake {version('snakemake')}, snakemake-executor-plugin-slurm {version('snakemake-executor-plugin-slurm')}"


def broken(what: str) -> str:
    return f"{VERSIONS}: {what}; see snakemake_executor_plugin_quantum/snakemake_compat.py"


def test_local_executor_has_the_hooks_we_override():
    local = snakemake_compat.local_executor_class()
    for name, params in {
        "run_jobs": ["jobs"],
        "run_job": ["job"],
        "cached_or_run": ["job", "run_func", "args"],
        "spawn_job": ["job"],
        "handle_job_success": ["job"],
        "handle_job_error": ["job"],
        "cancel": [],
        "shutdown": [],
    }.items():
        method = getattr(local, name, None)
        assert callable(method), broken(f"the local executor has no {name}()")
        got = [p for p in inspect.signature(method).parameters if p != "self"]
        assert got == params, broken(f"local executor {name}{tuple(got)} changed (expected {tuple(params)})")


def test_local_executor_runs_run_jobs_through_spawn_job_and_others_through_cached_or_run():
    source = inspect.getsource(snakemake_compat.local_executor_class().run_single_job)
    assert "self.spawn_job" in source and "self.cached_or_run" in source, broken(
        "the local executor no longer routes run: jobs to spawn_job and every job through cached_or_run"
    )


def test_spawned_job_error_is_not_printed_again_by_the_local_executor():
    error = snakemake_compat.spawned_job_error()
    assert issubclass(error, Exception)
    callback = inspect.getsource(snakemake_compat.local_executor_class()._callback)
    assert error.__name__ in callback, broken(f"the local executor's callback no longer treats {error.__name__} specially")


def test_shell_reads_os_environ_when_called(tmp_path: Path):
    """executor/environ.py relies on it: a variable set after import reaches the command."""
    from snakemake.shell import shell

    out = tmp_path / "out"
    os.environ["QUANTUM_COMPAT_PROBE"] = "seen"
    try:
        shell(f"echo $QUANTUM_COMPAT_PROBE > {out}")
    finally:
        del os.environ["QUANTUM_COMPAT_PROBE"]
    assert out.read_text().strip() == "seen", broken("shell() no longer builds its environment from os.environ at call time")


def test_shell_prefix_is_visible(tmp_path: Path):
    from snakemake.shell import shell

    assert snakemake_compat.shell_wraps_commands() is False
    previous = shell._process_prefix
    shell.prefix("set -x; ")
    try:
        assert snakemake_compat.shell_wraps_commands() is True, broken("shell.prefix() is no longer kept in shell._process_prefix")
    finally:
        shell._process_prefix = previous


def test_common_settings_mode_follows_our_setting():
    from snakemake_interface_executor_plugins.settings import CommonSettings

    mode = {"remote": False}
    cls = snakemake_compat.mode_aware_common_settings(CommonSettings, lambda: mode["remote"])
    settings = cls(non_local_exec=False, implies_no_shared_fs=False, job_deploy_sources=False)
    assert settings.non_local_exec is False
    mode["remote"] = True
    assert settings.non_local_exec is True, broken("CommonSettings.non_local_exec can no longer be a property")
    assert settings.local_exec is False, broken("CommonSettings.local_exec is no longer derived from non_local_exec")


@contextlib.contextmanager
def _dag_api(directory: Path, snakefile: str) -> Iterator[Any]:
    """Snakemake's DAG API for ``snakefile`` in ``directory`` (no run), the cwd restored after."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import DAGSettings, OutputSettings, ResourceSettings

    (directory / "Snakefile").write_text(snakefile)
    cwd = os.getcwd()
    try:
        with SnakemakeApi(OutputSettings(enable_file_logging=False)) as api:
            workflow_api = api.workflow(ResourceSettings(cores=1), snakefile=directory / "Snakefile", workdir=directory)
            yield workflow_api.dag(DAGSettings(targets=frozenset()))
    finally:
        os.chdir(cwd)


def test_planned_jobs_and_needrun_jobs_list_what_a_dry_run_would_run(tmp_path: Path):
    snakefile = (
        'rule all:\n    input: "b.txt"\n'
        'rule b:\n    input: "a.txt"\n    output: "b.txt"\n    shell: "cp {input} {output}"\n'
        'rule a:\n    output: "a.txt"\n    shell: "touch {output}"\n'
    )
    with _dag_api(tmp_path, snakefile) as dag_api:
        planned = snakemake_compat.planned_jobs(dag_api, forceall=False)
        names = {job.rule.name: [d.rule.name for d in deps] for job, deps in planned}
        assert names == {"all": ["b"], "b": ["a"], "a": []}, broken(f"planned jobs came out as {names}")
        workflow = dag_api.workflow_api._workflow
        assert {j.rule.name for j in snakemake_compat.needrun_jobs(workflow)} == {"all", "a", "b"}, broken("dag.needrun_jobs() changed")


def test_slurm_plugin_still_offers_what_we_extend():
    import snakemake_executor_plugin_slurm as plugin

    assert inspect.iscoroutinefunction(plugin.query_job_status), broken("query_job_status is no longer an async module function")
    interval = inspect.getattr_static(plugin.Executor, "next_seconds_between_status_checks", None)
    assert isinstance(interval, property) and interval.fset is not None, broken("next_seconds_between_status_checks is no longer a settable property")
    assert "get_partition_arg" in inspect.getsource(plugin.Executor.run_job), broken("sbatch arguments no longer come from get_partition_arg")
    for attribute in ("executor_settings", "executor_plugin", "remote_execution_settings"):
        assert attribute in inspect.getsource(plugin.Executor) + inspect.getsource(plugin.Executor.__mro__[1]), broken(f"the slurm executor no longer reads workflow.{attribute}")


def test_normalised_status_queries_strip_who_cancelled(monkeypatch: pytest.MonkeyPatch):
    import snakemake_executor_plugin_slurm as plugin

    async def fake(*_args, **_kwargs):
        return {"1": "CANCELLED by 0", "2": "COMPLETED"}, 0.1

    monkeypatch.setattr(plugin, "query_job_status", fake)
    snakemake_compat.normalise_slurm_status_queries()
    statuses, _ = asyncio.run(plugin.query_job_status())
    assert statuses == {"1": "CANCELLED", "2": "COMPLETED"}


def _bare_slurm_executor(cls: type, interval: int = 2) -> Any:
    """The executor as far as the status interval goes: what RemoteExecutor.__init__ sets for it."""
    executor = cls.__new__(cls)
    executor.workflow = SimpleNamespace(remote_execution_settings=SimpleNamespace(seconds_between_status_checks=interval))
    executor._next_seconds_between_status_checks = None
    return executor


def test_slurm_executor_class_caps_the_status_interval():
    cls = snakemake_compat.slurm_executor_class()
    executor = _bare_slurm_executor(cls)
    cls.max_status_interval = 7
    executor.next_seconds_between_status_checks = 170
    assert executor.next_seconds_between_status_checks == 7


def test_slurm_status_checks_back_off_by_doubling_from_the_interval():
    from snakemake_executor_plugin_slurm import Executor as SlurmExecutor

    source = inspect.getsource(SlurmExecutor.check_active_jobs)
    assert "self.next_seconds_between_status_checks + 10" in source and "max_sleep_time = 180" in source, \
        broken("the slurm plugin no longer backs off by +10 s up to 180 s")
    cls = snakemake_compat.slurm_executor_class()
    cls.max_status_interval = 60
    executor = _bare_slurm_executor(cls, interval=2)
    executor.next_seconds_between_status_checks = 12  # the first check, nothing finished: 2 + 10
    assert executor.next_seconds_between_status_checks == 4
    waits = []
    executor.next_seconds_between_status_checks = 1  # a job finished: the plugin's initial interval
    for _ in range(8):  # nothing finishes: the plugin asks for min(wait + 10, 180) each time
        executor.next_seconds_between_status_checks = min(executor.next_seconds_between_status_checks + 10, 180)
        waits.append(executor.next_seconds_between_status_checks)
    assert waits == [2, 4, 8, 16, 32, 60, 60, 60]
    executor.next_seconds_between_status_checks = 1  # one finished again: back to the start
    assert executor.next_seconds_between_status_checks == 1
    executor.next_seconds_between_status_checks = 40  # a larger initial interval stays as the plugin set it
    assert executor.next_seconds_between_status_checks == 40


def test_slurm_jobs_are_named_after_the_run_so_cancel_reaches_them_by_name(monkeypatch: pytest.MonkeyPatch):
    from snakemake_executor_plugin_slurm import submit_string
    from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor

    assert "--job-name {safe_quote(params.run_uuid)}" in inspect.getsource(submit_string), broken("sbatch --job-name is no longer the run_uuid")
    assert "self.active_jobs.clear()" in inspect.getsource(RemoteExecutor), broken("the status loop no longer takes jobs out of active_jobs")
    cls = snakemake_compat.slurm_executor_class()
    executor = cls.__new__(cls)
    executor.run_uuid = "run-1234"
    calls = []
    monkeypatch.setattr(cls.__mro__[1], "cancel", lambda self: calls.append("plugin"))
    monkeypatch.setattr(snakemake_compat.subprocess, "run", lambda args, **kw: calls.append(args))
    executor.cancel()
    assert calls == ["plugin", ["scancel", "--name", "run-1234"]]


def test_the_job_scheduler_computes_sizes_and_remaining_jobs_where_we_patch_them():
    from snakemake.scheduling.job_scheduler import JobScheduler

    snakemake_compat.skip_what_the_scheduler_does_not_read()
    selector = inspect.getsource(JobScheduler.job_selector)
    assert "self.update_input_sizes(jobs)" in selector and "self.remaining_jobs" in selector, broken(
        "job_selector no longer sizes inputs through update_input_sizes and lists remaining_jobs before selecting"
    )
    assert "self._scheduler = scheduler" in inspect.getsource(JobScheduler.__init__), broken("the job scheduler no longer keeps its plugin as _scheduler")
    assert inspect.iscoroutinefunction(JobScheduler.update_input_sizes)
    assert isinstance(inspect.getattr_static(JobScheduler, "remaining_jobs"), property)


class _Jobs:
    """Just what JobScheduler.remaining_jobs reads, counting how often it lists the DAG."""

    def __init__(self, scheduler: object):
        from types import SimpleNamespace

        self.listed = 0
        self._scheduler = scheduler
        self.running, self.failed = {3}, set()

        def needrun_jobs():
            self.listed += 1
            return [1, 2, 3, 4]

        self.workflow = SimpleNamespace(dag=SimpleNamespace(needrun_jobs=needrun_jobs, finished=lambda job: job == 2))


def test_remaining_jobs_are_listed_only_when_read_for_a_scheduler_that_ignores_them():
    from snakemake.scheduling.job_scheduler import JobScheduler

    from snakemake_scheduler_plugin_quantum import Scheduler

    snakemake_compat.skip_what_the_scheduler_does_not_read()
    ours = _Jobs(Scheduler.__new__(Scheduler))
    remaining = JobScheduler.remaining_jobs.fget(ours)
    assert ours.listed == 0, "listed although nobody read it"
    assert bool(remaining) and list(remaining) == [1, 4] and len(remaining) == 2 and remaining[0] == 1
    assert ours.listed == 1, "listed once, when first read"
    other = _Jobs(object())  # greedy, ilp: Snakemake's own behaviour
    assert JobScheduler.remaining_jobs.fget(other) == [1, 4] and other.listed == 1


def test_the_job_scheduler_hands_each_round_what_open_jobs_returns_and_the_dag_adds_ready_jobs_as_we_note():
    import re

    from snakemake.dag import DAG
    from snakemake.scheduling.job_scheduler import JobScheduler

    schedule = inspect.getsource(JobScheduler.schedule)
    assert "needrun = set(self.open_jobs)" in schedule and "for job in needrun:" in schedule, broken(
        "schedule() no longer takes a round's jobs from open_jobs"
    )
    assert "self.job_selector(needrun)" in schedule, broken("schedule() no longer selects from open_jobs")
    assert "self._schedule_reevalutation(" in schedule and "self._open_jobs.release()" in inspect.getsource(JobScheduler), broken(
        "the scheduler is no longer woken through _schedule_reevalutation releasing _open_jobs"
    )
    assert "return self._ready_jobs" in inspect.getsource(DAG.ready_jobs.fget), broken("DAG.ready_jobs is not _ready_jobs")
    dag = inspect.getsource(DAG)
    ways = set(re.findall(r"_ready_jobs\s*(?:\.\w+|[-|&^]=|=(?!=))", dag))
    assert ways <= {"_ready_jobs.add", "_ready_jobs.update", "_ready_jobs.remove", "_ready_jobs.clear", "_ready_jobs -=", "_ready_jobs ="}, broken(
        f"the DAG changes its ready jobs in ways _NotingSet does not note: {sorted(ways)}"
    )
    assert dag.count("self._ready_jobs = ") == 1, broken("the DAG replaces its set of ready jobs after __init__")
    scheduler = inspect.getsource(JobScheduler)
    assert "dag._ready_jobs.add(job)" in scheduler and "_ready_jobs = " not in scheduler


def test_the_noting_set_notes_every_job_added_and_stays_a_set():
    noting = snakemake_compat._NotingSet({1, 2})
    assert sorted(noting.take_added()) == [1, 2] and noting.take_added() == []
    noting.add(3)
    noting.update([4], (5,))
    noting |= {6}
    noting -= {1, 3}
    noting.remove(2)
    assert type(noting) is snakemake_compat._NotingSet and noting == {4, 5, 6}
    assert noting.take_added() == [3, 4, 5, 6]


def test_the_pipe_input_check_while_a_job_is_prepared_answers_as_snakemake_in_one_pass(monkeypatch: pytest.MonkeyPatch):
    from types import SimpleNamespace

    from snakemake.jobs import Job

    original = getattr(Job.is_pipe_or_service_input, "__wrapped__", Job.is_pipe_or_service_input)
    prepare = inspect.getsource(inspect.unwrap(Job.prepare))  # Snakemake's, also once patched in this process
    assert "self.is_pipe_or_service_input(f)" in prepare, broken("Job.prepare no longer checks its inputs for pipes")
    assert "self.dag.dependencies[self].items()" in inspect.getsource(original), broken(
        "Job.is_pipe_or_service_input no longer searches the job's dependencies"
    )

    class Files(set):  # counts the lookups
        looked = 0

        def __contains__(self, item: object) -> bool:
            Files.looked += 1
            return super().__contains__(item)

    class Fake:
        def __init__(self, dependencies: dict):
            self.dag = SimpleNamespace(dependencies={self: dependencies})
            self.input = [f for files in dependencies.values() for f in files] + ["nowhere"]

    class Producer:
        def __init__(self, i: int):
            self.pipe_or_service_output = {0: ["shared"], 3: ["p3"]}.get(i, [])  # the first producer of a file decides

    producers = [Producer(i) for i in range(300)]
    job = Fake({producer: Files({f"p{i}", "shared"}) for i, producer in enumerate(producers)})
    expected = {path: original(job, path) for path in job.input}
    answers: dict = {}

    async def fake_prepare(self: object) -> None:
        Files.looked = 0
        answers.update({path: Job.is_pipe_or_service_input(self, path) for path in self.input})

    monkeypatch.setattr(Job, "prepare", fake_prepare)
    monkeypatch.setattr(Job, "is_pipe_or_service_input", original)
    snakemake_compat.find_pipe_inputs_in_one_pass()
    asyncio.run(Job.prepare(job))
    assert answers == expected and answers["p3"] and answers["shared"] and not answers["p4"]
    assert Files.looked <= 3 * len(job.input), f"{Files.looked} lookups for {len(job.input)} inputs: not one pass"
    assert Job.is_pipe_or_service_input(job, "p3") is True, "outside prepare: Snakemake's own check"


def test_wakeups_come_in_time_order_from_one_thread():
    import threading
    import time

    woken: list[tuple[float, str]] = []
    before = threading.active_count()
    wakeups = snakemake_compat._Wakeups(lambda: woken.append((time.monotonic(), threading.current_thread().name)))
    start = time.monotonic()
    for delay in (0.3, 0.1, 0.2, 0.1):
        wakeups.after(delay)
    assert threading.active_count() <= before + 1, "one thread for every wake-up"
    deadline = time.monotonic() + 5
    while len(woken) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    times = [when - start for when, _ in woken]
    assert len(times) == 4 and times == sorted(times) and times[0] >= 0.1 and times[3] >= 0.3, times
    assert {name for _, name in woken} == {"snakemake-wakeups"}
    deadline = time.monotonic() + 5
    while wakeups._thread is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert wakeups._thread is None, "nothing due: the thread has ended"
    wakeups.after(0.05)  # and a new request starts one again
    deadline = time.monotonic() + 5
    while len(woken) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(woken) == 5


def test_resources_read_at_start_are_kept_only_for_jobs_whose_inputs_no_job_of_the_run_writes(tmp_path: Path):
    from snakemake.jobs import Job
    from snakemake.scheduling.job_scheduler import JobScheduler

    assert "job.reset_params_and_resources()" in inspect.getsource(JobScheduler.schedule), broken(
        "the job scheduler no longer resets a ready job's resources")
    assert "_params_and_resources_resetted" in inspect.getsource(Job.reset_params_and_resources), broken(
        "Job.reset_params_and_resources no longer resets only once")
    (tmp_path / "in.txt").write_text("x")
    snakefile = (
        'rule all:\n    input: "b.txt"\n'
        'rule b:\n    input: "a.txt"\n    output: "b.txt"\n    resources: n=lambda wc, input: len(input)\n    shell: "cp {input} {output}"\n'
        'rule a:\n    input: "in.txt"\n    output: "a.txt"\n    resources: n=lambda wc, input: len(input)\n    shell: "cp {input} {output}"\n'
    )
    with _dag_api(tmp_path, snakefile) as dag_api:
        snakemake_compat.planned_jobs(dag_api, forceall=False)  # builds the DAG
        workflow = dag_api.workflow_api._workflow
        jobs = {job.rule.name: job for job in snakemake_compat.needrun_jobs(workflow)}
        for job in jobs.values():
            assert job.resources is not None  # read, as Executor._check_run does
            snakemake_compat.keep_resources_read_at_start(workflow, job)
            job.reset_params_and_resources()  # what the job scheduler does when a job is ready
        assert jobs["a"]._resources is not None, "a's input is no job's output: its resources stay"
        assert jobs["b"]._resources is None, "b reads a's output: Snakemake must read its resources again"


def test_quick_signal_handler_lookups_answer_as_signal_does():
    import functools
    import signal

    assert "_int_to_enum(" in inspect.getsource(signal.getsignal), "signal.getsignal no longer maps handlers with _int_to_enum"

    def reference(value: object, klass: type) -> object:  # the standard library's own
        try:
            return klass(value)
        except ValueError:
            return value

    def handler(*_: object) -> None:
        pass

    values = [signal.default_int_handler, signal.SIG_DFL, signal.SIG_IGN, 0, 1, 2, 15, 999, -1, None, handler, functools.partial(handler, 1)]
    snakemake_compat.quick_signal_handler_lookups()
    snakemake_compat.quick_signal_handler_lookups()  # once is enough; twice changes nothing
    assert getattr(signal._int_to_enum, "quantum_lookup", False)
    for klass in (signal.Handlers, signal.Signals):
        for value in values:
            got, expected = signal._int_to_enum(value, klass), reference(value, klass)
            assert got is expected or (got == expected and type(got) is type(expected)), (value, klass, got, expected)
    import _signal

    assert signal.getsignal(signal.SIGINT) is reference(_signal.getsignal(signal.SIGINT), signal.Handlers)
    previous = signal.signal(signal.SIGINT, handler)
    try:
        assert signal.getsignal(signal.SIGINT) is handler
    finally:
        assert signal.signal(signal.SIGINT, previous) is handler


def test_a_job_s_shell_command_is_formatted_once_while_it_is_logged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from snakemake.exceptions import RuleException
    from snakemake.jobs import Job

    log_info = inspect.unwrap(Job.log_info)
    shellcmd = Job.shellcmd if not getattr(Job.log_info, "quantum_once", False) else None
    assert inspect.getsource(log_info).count("self.shellcmd") >= 2, broken("Job.log_info no longer reads the shell command more than once")
    snakefile = (
        'rule all:\n    input: "a.txt", "b.txt"\n'
        'rule a:\n    output: "a.txt"\n    params: p="x"\n    shell: "echo {params.p} > {output}"\n'
        'rule b:\n    output: "b.txt"\n    shell: "echo {nothing} > {output}"\n'
    )
    with _dag_api(tmp_path, snakefile) as dag_api:
        snakemake_compat.planned_jobs(dag_api, forceall=False)
        jobs = {job.rule.name: job for job in snakemake_compat.needrun_jobs(dag_api.workflow_api._workflow)}
        formats = []
        format_wildcards = Job.format_wildcards
        monkeypatch.setattr(Job, "format_wildcards", lambda self, *a, **k: formats.append(1) or format_wildcards(self, *a, **k))
        monkeypatch.setattr(Job, "log_info", log_info)
        if shellcmd is not None:
            monkeypatch.setattr(Job, "shellcmd", shellcmd)
        jobs["a"].log_info()
        assert len(formats) >= 3, "Snakemake's log_info formats the command on each read"
        snakemake_compat.format_shell_commands_once_per_log()
        formats.clear()
        jobs["a"].log_info()
        assert len(formats) == 1
        assert jobs["a"].shellcmd == "echo x > a.txt" and len(formats) == 2, "outside log_info, each read formats"
        with pytest.raises(RuleException):
            jobs["b"].log_info()
