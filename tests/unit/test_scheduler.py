"""The quantum scheduler plugin: Snakemake's interface harness, plus what makes it different."""

from __future__ import annotations

import logging
import sys
from collections import defaultdict
from typing import Any

from snakemake_interface_scheduler_plugins.tests import DummyJob, TestSchedulerBase

from snakemake_scheduler_plugin_quantum import Scheduler


class TestQuantumScheduler(TestSchedulerBase):
    __test__ = True

    def get_scheduler_cls(self) -> type:
        return Scheduler

    def get_scheduler_settings(self) -> None:
        return None


class CountingJob(DummyJob):
    """A job that counts how often the scheduler reads its resources."""

    def __init__(self, resources: dict[str, Any], priority: int = 0):
        super().__init__([], [], resources)
        self._priority = priority
        self.reads = 0

    @property
    def priority(self) -> int:
        return self._priority

    @property
    def scheduler_resources(self) -> dict[str, Any]:
        self.reads += 1
        return self._resources


def scheduler() -> Scheduler:
    return Scheduler(dag=None, settings=None, logger=logging.getLogger("test"))  # type: ignore[arg-type]


def select(s: Scheduler, ready: set, cores: int, **limits: int) -> list:
    return list(s.select_jobs(ready, list(ready), {"_cores": cores, "_job_count": 2**62, **limits}, defaultdict(int)))


def test_a_round_reads_only_the_jobs_that_became_ready():
    s = scheduler()
    waiting = {CountingJob({"_cores": 1, "_job_count": 1}) for _ in range(1000)}
    chosen = select(s, waiting, cores=2)
    assert len(chosen) == 2
    ready = waiting - set(chosen)
    newcomer = CountingJob({"_cores": 1, "_job_count": 1})
    before = sum(job.reads for job in ready)
    assert len(select(s, ready | {newcomer}, cores=1)) == 1
    assert sum(job.reads for job in ready) == before, "jobs already queued must not be re-read each round"
    assert newcomer.reads == 1


def test_higher_priority_first_then_first_come():
    s = scheduler()
    low = [CountingJob({"_cores": 1}, priority=0) for _ in range(3)]
    high = CountingJob({"_cores": 1}, priority=5)
    ready = set(low) | {high}
    first = select(s, ready, cores=1)
    assert first == [high]
    second = select(s, ready - {high}, cores=1)
    assert second in ([low[0]], [low[1]], [low[2]])


def test_a_job_that_does_not_fit_does_not_block_smaller_ones():
    s = scheduler()
    big = CountingJob({"_cores": 4}, priority=10)
    small = [CountingJob({"_cores": 1}) for _ in range(3)]
    picked = select(s, {big, *small}, cores=2)
    assert big not in picked and len(picked) == 2


def test_every_limited_resource_is_respected():
    s = scheduler()
    gpu = [CountingJob({"_cores": 1, "gpu": 1}) for _ in range(3)]
    cpu = [CountingJob({"_cores": 1}) for _ in range(3)]
    picked = select(s, {*gpu, *cpu}, cores=4, gpu=1)
    assert len(picked) == 4 and sum(job in gpu for job in picked) == 1


def test_a_retried_job_is_queued_again():
    s = scheduler()
    job = CountingJob({"_cores": 1})
    assert select(s, {job}, cores=1) == [job]
    assert select(s, set(), cores=1) == []
    assert select(s, {job}, cores=1) == [job], "a job that is ready again (a retry) must be selectable"


def test_only_jobs_not_queued_yet_need_their_input_sizes():
    """Snakemake sizes the inputs of the jobs ``jobs_to_size`` returns before each round
    (snakemake_compat); a queued job's sizes were read when it was queued."""
    s = scheduler()
    jobs = {CountingJob({"_cores": 1}) for _ in range(5)}
    assert set(s.jobs_to_size(jobs)) == jobs
    chosen = select(s, jobs, cores=1)
    newcomer = CountingJob({"_cores": 1})
    assert s.jobs_to_size((jobs - set(chosen)) | {newcomer}) == {newcomer}
    assert s.jobs_to_size(chosen) == set(chosen), "a selected job that is ready again (a retry) is sized again"


def test_a_job_queued_while_another_runs_can_be_chosen_when_none_runs():
    """Snakemake passes an unlimited resource as sys.maxsize less what running jobs hold:
    ``_nodes`` is sys.maxsize - 1 while one job runs, sys.maxsize when none does."""
    s = scheduler()
    later = CountingJob({"_cores": 1, "_nodes": 1})
    assert select(s, {later}, cores=0, _nodes=sys.maxsize - 1) == []  # queued while a job holds both cores
    assert select(s, {later}, cores=2, _nodes=sys.maxsize) == [later]


def test_a_round_is_offered_new_jobs_and_only_the_best_queued_ones_that_could_fit():
    """Snakemake hands a round what ``jobs_to_offer`` returns instead of every ready job
    (snakemake_compat), so what it returns bounds Snakemake's work per round."""
    s = scheduler()
    ready = {CountingJob({"_cores": 1}, priority=p) for p in range(1000)}
    assert s.jobs_to_offer(ready, {"_cores": 2}) == ready, "new jobs are all offered"
    chosen = select(s, ready, cores=2)
    ready -= set(chosen)
    newcomer = CountingJob({"_cores": 1}, priority=-1)
    ready.add(newcomer)
    offered = s.jobs_to_offer(ready, {"_cores": 2, "_job_count": 2**62})
    best = sorted(ready - {newcomer}, key=lambda job: -job.priority)[:2]
    assert offered == {newcomer, *best}
    assert s.jobs_to_offer(ready, {"_cores": 0}) == {newcomer}, "no queued job fits: only the new one is offered"


def test_choosing_from_what_is_offered_equals_choosing_from_every_ready_job():
    """Rounds of a simulated run (jobs finishing, new ones becoming ready, several resource
    signatures): one scheduler handed every ready job, one handed ``jobs_to_offer``."""
    import random

    rng = random.Random(7)
    capacity = {"_cores": 4, "gpu": 1, "_job_count": 2**62}
    priorities = iter(rng.sample(range(10_000), 10_000))  # no ties: the order is fully determined

    def new_jobs(count: int) -> set:
        return {CountingJob({"_cores": rng.choice((1, 1, 2, 3)), "_job_count": 1, **({"gpu": 1} if rng.random() < 0.2 else {})},
                            priority=next(priorities)) for _ in range(count)}

    every, offering = scheduler(), scheduler()
    ready, running, free = new_jobs(300), [], dict(capacity)
    created = set(ready)
    for _ in range(400):
        by_all = list(every.select_jobs(set(ready), [], free, defaultdict(int)))
        offered = offering.jobs_to_offer(ready, free)
        assert len(offered) <= len(ready)
        by_offer = list(offering.select_jobs(offered, [], free, defaultdict(int)))
        assert by_offer == by_all
        for job in by_all:
            ready.discard(job)
            running.append(job)
            for name, amount in job._resources.items():  # not counted as the scheduler's reads
                if name in free and name != "_job_count":
                    free[name] -= amount
        if running:
            done = running.pop(rng.randrange(len(running)))
            for name, amount in done._resources.items():
                if name in free and name != "_job_count":
                    free[name] += amount
        arrived = new_jobs(rng.choice((0, 0, 1, 3)))
        ready |= arrived
        created |= arrived
    assert not ready or running, "the simulated run must not stall"
    assert max(job.reads for job in created) <= 2, "each of the two schedulers reads a job's resources once"


def test_a_queued_job_no_longer_ready_is_dropped_and_one_not_offered_waits_its_turn():
    s = scheduler()
    jobs = [CountingJob({"_cores": 1}, priority=p) for p in (4, 3, 2, 1)]
    ready = set(jobs)
    s.jobs_to_offer(ready, {"_cores": 1})
    assert select(s, ready, cores=1) == [jobs[0]]
    ready -= {jobs[0], jobs[1]}  # jobs[1] left the DAG (a checkpoint changed it)
    assert s.jobs_to_offer(ready, {"_cores": 1}) == {jobs[2]}
    # Handed fewer jobs than it was offered, a round takes from those; the ready job it
    # passes over keeps its place.
    assert list(s.select_jobs({jobs[3]}, [], {"_cores": 1}, defaultdict(int))) == []
    assert s.jobs_to_offer(ready, {"_cores": 1}) == {jobs[2]}
    assert [job.reads for job in jobs[2:]] == [1, 1]


def test_told_which_jobs_were_added_a_round_compares_only_those():
    """Snakemake's ready set notes the jobs added to it (snakemake_compat); a job offered in
    a round that selected nothing (the rate limit, no free core) is offered again."""
    s = scheduler()
    first = {CountingJob({"_cores": 1}, priority=p) for p in range(3)}
    ready = set(first)
    assert s.jobs_to_offer(ready, {"_cores": 1}, added=list(first)) == first
    assert s.jobs_to_offer(ready, {"_cores": 1}, added=[]) == first, "not selected yet: offered again"
    chosen = select(s, ready, cores=1)
    ready -= set(chosen)
    newcomer = CountingJob({"_cores": 1}, priority=-1)
    ready.add(newcomer)
    hidden = CountingJob({"_cores": 1}, priority=99)
    ready.add(hidden)  # in the set, not among the jobs said to be added: not compared
    offered = s.jobs_to_offer(ready, {"_cores": 1}, added=[newcomer])
    assert newcomer in offered and hidden not in offered
