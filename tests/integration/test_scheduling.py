"""``--scheduler quantum`` inside a real Snakemake run: what Snakemake computes for it each
round, and the order the jobs run in."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from conftest import clean_env, run, write_workflow

pytestmark = pytest.mark.slow

N = 40
SNAKEFILE = f'''
rule all:
    input: expand("out/{{i}}.txt", i=range({N}))

rule job:
    input: "in/{{i}}.txt"
    output: "out/{{i}}.txt"
    shell: "cat {{input}} > {{output}}; echo {{wildcards.i}} >> order.txt"
'''
# snakemake, counting every input file Snakemake sizes (``_IOFile.size``), for any reason,
# and every job a scheduling round hands over (each is reset first: ``reset_params_and_resources``).
COUNTING = """
import atexit, sys, threading
from snakemake.io import _IOFile
from snakemake.jobs import Job
sized, handled, timers = [], [], []
size, reset, start = _IOFile.size, Job.reset_params_and_resources, threading.Timer.start
def start_counted(self):
    timers.append(self)
    return start(self)
threading.Timer.start = start_counted
async def counted(self):
    sized.append(str(self))
    return await size(self)
def reset_counted(self):
    handled.append(self)
    return reset(self)
_IOFile.size, Job.reset_params_and_resources = counted, reset_counted
atexit.register(lambda: print(f"sized {len(sized)} times, handed over {len(handled)} jobs, {len(timers)} timers",
                              file=sys.stderr))
from snakemake.cli import main
sys.argv[0] = "snakemake"
main()
"""


def _counts(tmp_path: Path, scheduler: str) -> tuple[int, int, int]:
    """How often Snakemake sized an input file, handed a job to a round and started a timer
    thread, in a run with ``scheduler`` (whose jobs must have run largest input first)."""
    # distinct input sizes, not in job order: largest-first differs from first-come
    sizes = [(i * 17) % N for i in range(N)]
    workdir = write_workflow(tmp_path / scheduler, SNAKEFILE, {f"in/{i}.txt": "x" * sizes[i] for i in range(N)})
    result = run([sys.executable, "-c", COUNTING, "--executor", "quantum", "--cores", "1", "--scheduler", scheduler],
                 cwd=workdir, env=clean_env())
    assert result.returncode == 0, result.stderr[-3000:]
    order = [int(line) for line in (workdir / "order.txt").read_text().split()]
    assert [sizes[i] for i in order] == sorted(sizes, reverse=True), f"{scheduler}: not largest input first"
    counts = re.search(r"sized (\d+) times, handed over (\d+) jobs, (\d+) timers", result.stderr)
    return int(counts.group(1)), int(counts.group(2)), int(counts.group(3))


def test_a_round_handles_only_jobs_it_could_choose_and_jobs_still_run_largest_input_first(tmp_path: Path) -> None:
    """Snakemake hands every ready job to each round (one per finished job), resetting and
    sizing each, and starts a timer thread after it, for whichever scheduler; ours is handed
    new jobs and the best queued ones that fit, and reads a job's sizes once, so only those
    are computed, and one thread wakes the scheduler."""
    ours, handed, timers = _counts(tmp_path, "quantum")
    greedy, greedy_handed, greedy_timers = _counts(tmp_path, "greedy")
    # Snakemake sizes each input about twice for itself (2N); for our scheduler once more (N).
    assert ours <= 3 * N, f"{ours} sizings for {N} jobs with one input each (and the target's {N})"
    # Each job: once when new, once when it is the one that fits (--cores 1), and a few more.
    assert handed <= 4 * N, f"{handed} jobs handed to rounds for {N} jobs"
    assert greedy >= N * (N + 1) // 2, f"greedy sized {greedy} times: the comparison no longer shows the difference"
    assert greedy_handed >= N * (N + 1) // 2, f"greedy was handed {greedy_handed} jobs: the comparison no longer shows it"
    # The rate limiter's wake-ups: Snakemake starts a timer thread per round, we keep one thread.
    assert timers == 0 and greedy_timers >= N, f"timer threads: {timers} with ours, {greedy_timers} with greedy"


TWO_STAGES = '''
rule all:
    input: expand("b/{i}.txt", i=range(60))

rule a:
    output: "a/{i}.txt"
    shell: "touch {output}"

rule b:
    input: "a/{i}.txt"
    output: "b/{i}.txt"
    shell: "cp {input} {output}"
'''


def test_a_two_stage_fan_out_runs_to_the_end(tmp_path: Path) -> None:
    """Jobs become ready while others run, and are chosen when none runs: Snakemake's
    unlimited resources (``_nodes``) are then sys.maxsize less what runs, then sys.maxsize."""
    workdir = write_workflow(tmp_path, TWO_STAGES)
    result = run([sys.executable, "-m", "snakemake", "--executor", "quantum", "--cores", "2", "--scheduler", "quantum"],
                 cwd=workdir, env=clean_env())
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list((workdir / "b").iterdir())) == 60
