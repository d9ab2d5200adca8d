"""``snakemake --scheduler quantum``: job selection that stays linear in wide workflows.

Snakemake asks its scheduler to choose jobs once per finished job, handing it every ready
job. The built-in greedy scheduler scores all of them each time, so a 5,000-job fan-out
spends most of its time re-scoring (measured: 63% of the main thread, 3,000 jobs). This
scheduler keeps ready jobs across rounds in one priority queue per *resource signature*
(the resources a job takes that are limited in this run): a round adds only the jobs that
became ready, then takes the best job of any queue whose signature still fits, until
none fits. A round costs O(new jobs + selected jobs x signatures x log n), not O(ready).
Snakemake's own preparation of a round is cut to match (``snakemake_compat``): it hands
over only the ready jobs a round could select (``jobs_to_offer``: new ones, and from each
queue the best jobs that fit the free resources) instead of all of them, so it resets,
validates and sizes those only, and lists the pending jobs only if something reads them.

Order within what fits is the greedy scheduler's: higher ``priority`` first, then jobs
freeing larger temporary inputs, then larger inputs, then first come first served.
Shipped with snakemake-executor-plugin-quantum; it works with any executor.
"""

from __future__ import annotations

import heapq
import itertools
import sys
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from snakemake_interface_scheduler_plugins.base import SchedulerBase

__all__ = ["Scheduler"]

Signature = tuple[tuple[str, int], ...]
UNLIMITED = sys.maxsize // 2


class Scheduler(SchedulerBase):
    reads_remaining_jobs = False  # select_jobs ignores it: Snakemake need not list them

    def __post_init__(self) -> None:
        from snakemake_executor_plugin_quantum import snakemake_compat

        self._queues: dict[Signature, list[tuple[Any, ...]]] = {}
        self._queued: set[Any] = set()
        self._order = itertools.count()
        self._fresh: set[Any] = set()  # ready jobs not queued yet, as far as jobs_to_offer knows
        self._ready: AbstractSet[Any] | None = None  # Snakemake's ready jobs, once it offers fewer
        # Else, before every round, Snakemake resets, validates and sizes every ready job
        # (we can only choose a few) and lists every pending job (we read none).
        snakemake_compat.skip_what_the_scheduler_does_not_read()

    def jobs_to_size(self, selectable_jobs: Iterable[Any]) -> set[Any]:
        """The jobs whose input sizes the next ``select_jobs`` reads: those not queued yet."""
        return _as_set(selectable_jobs) - self._queued

    def jobs_to_offer(self, ready_jobs: AbstractSet[Any], available_resources: Mapping[str, int | str],
                      added: Iterable[Any] | None = None) -> set[Any]:
        """The ready jobs the next ``select_jobs`` may choose from: those not queued yet, and
        from each queue as many of its best jobs as could fit ``available_resources``.
        ``added``: the jobs added to ``ready_jobs`` since the last call, if known (else
        every ready job is compared with the queues: O(ready)).

        Snakemake hands a round the jobs this returns instead of every ready job
        (snakemake_compat), so its per-round work is O(what this returns), not O(ready)."""
        self._ready = ready_jobs
        candidates = self._fresh | (set(ready_jobs) - self._queued if added is None else set(added))
        # New, ready again (a retry), or offered before and not queued yet (a round that
        # selected nothing: the rate limit, no free core).
        self._fresh = {job for job in candidates if job in ready_jobs and job not in self._queued}
        offered = set(self._fresh)
        limits = _limits(available_resources)
        for signature, queue in self._queues.items():
            while queue and queue[0][-1] not in ready_jobs:  # taken out of the DAG meanwhile
                self._queued.discard(heapq.heappop(queue)[-1])
            # The rate limit (_job_count) is set anew before select_jobs: not a bound here.
            fitting = min((limits[name] // amount for name, amount in signature if name in limits and name != "_job_count"),
                          default=len(queue))
            offered.update(_best(queue, fitting, ready_jobs))
        return offered

    def select_jobs(
        self,
        selectable_jobs: Sequence[Any],
        remaining_jobs: Sequence[Any],
        available_resources: Mapping[str, int | str],
        input_sizes: dict[Any, int],
    ) -> Sequence[Any]:
        offered = _as_set(selectable_jobs)
        limits = _limits(available_resources)
        for job in offered - self._queued:  # jobs that became ready (or are retried) since the last round
            self._enqueue(job, limits, input_sizes)
        selected = []
        while (signature := self._best_fitting(offered, limits)) is not None:
            job = heapq.heappop(self._queues[signature])[-1]
            self._queued.discard(job)
            selected.append(job)
            for name, amount in signature:
                if name in limits:
                    limits[name] -= amount
        return selected

    def _enqueue(self, job: Any, limits: Mapping[str, int], input_sizes: Mapping[Any, int | None]) -> None:
        needs = job.scheduler_resources
        signature = tuple(sorted((name, value) for name, value in needs.items() if name in limits and isinstance(value, int) and value))
        temp = sum(input_sizes.get(f) or 0 for f in job.input if f.is_flagged("temp"))
        size = sum(input_sizes.get(f) or 0 for f in job.input)
        heapq.heappush(self._queues.setdefault(signature, []), (-job.priority, -temp, -size, next(self._order), job))
        self._queued.add(job)

    def _best_fitting(self, offered: AbstractSet[Any], limits: Mapping[str, int]) -> Signature | None:
        """The signature whose first job ranks highest among those offered that still fit."""
        best: Signature | None = None
        for signature, queue in self._queues.items():
            while queue and queue[0][-1] not in offered and (self._ready is None or queue[0][-1] not in self._ready):
                self._queued.discard(heapq.heappop(queue)[-1])  # taken out of the DAG meanwhile
            # A ready job not offered is beyond what could fit when the round began.
            fits = queue and queue[0][-1] in offered and all(limits.get(name, sys.maxsize) >= amount for name, amount in signature)
            if fits and (best is None or queue[0] < self._queues[best][0]):
                best = signature
        return best


def _limits(available_resources: Mapping[str, int | str]) -> dict[str, int]:
    """The resources that are limited in this run. Snakemake gives an unlimited one as
    sys.maxsize, less what running jobs hold (``_nodes``: maxsize - 1 while one job runs),
    so a job queued while another runs must not count it as limited."""
    return {name: value for name, value in available_resources.items() if isinstance(value, int) and value < UNLIMITED}


def _best(queue: list[tuple[Any, ...]], count: int, ready: AbstractSet[Any]) -> list[Any]:
    """The first ``count`` ready jobs of a heap, in order, in O(count log count) steps
    (plus the entries no longer ready that come before them)."""
    best: list[Any] = []
    frontier = [(queue[0], 0)] if queue and count > 0 else []
    while frontier and len(best) < count:
        entry, index = heapq.heappop(frontier)
        if entry[-1] in ready:
            best.append(entry[-1])
        for child in (2 * index + 1, 2 * index + 2):
            if child < len(queue):
                heapq.heappush(frontier, (queue[child], child))
    return best


def _as_set(jobs: Iterable[Any]) -> set[Any] | frozenset[Any]:
    """Snakemake hands over a set of ready jobs; copy only what is not one."""
    return jobs if isinstance(jobs, (set, frozenset)) else set(jobs)
