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
# snakemake, counting every input file Snakemake sizes (``_IOFile.size``), for any reason.
COUNTING = """
import atexit, sys
from snakemake.io import _IOFile
sized = []
size = _IOFile.size
async def counted(self):
    sized.append(str(self))
    return await size(self)
_IOFile.size = counted
atexit.register(lambda: print(f"sized {len(sized)} times", file=sys.stderr))
from snakemake.cli import main
sys.argv[0] = "snakemake"
main()
"""


def _sizings(tmp_path: Path, scheduler: str) -> int:
    """How often Snakemake sized an input file in a run with ``scheduler`` (whose jobs must
    have run largest input first)."""
    # distinct input sizes, not in job order: largest-first differs from first-come
    sizes = [(i * 17) % N for i in range(N)]
    workdir = write_workflow(tmp_path / scheduler, SNAKEFILE, {f"in/{i}.txt": "x" * sizes[i] for i in range(N)})
    result = run([sys.executable, "-c", COUNTING, "--executor", "quantum", "--cores", "1", "--scheduler", scheduler],
                 cwd=workdir, env=clean_env())
    assert result.returncode == 0, result.stderr[-3000:]
    order = [int(line) for line in (workdir / "order.txt").read_text().split()]
    assert [sizes[i] for i in order] == sorted(sizes, reverse=True), f"{scheduler}: not largest input first"
    return int(re.search(r"sized (\d+) times", result.stderr).group(1))


def test_each_input_is_sized_once_not_once_per_round_and_jobs_still_run_largest_input_first(tmp_path: Path) -> None:
    """Snakemake sizes every ready job's inputs before each round (one per finished job) for
    whichever scheduler; ours reads a job's sizes once, so only those are computed."""
    ours = _sizings(tmp_path, "quantum")
    greedy = _sizings(tmp_path, "greedy")
    # Snakemake sizes each input about twice for itself (2N); for our scheduler once more (N).
    assert ours <= 3 * N, f"{ours} sizings for {N} jobs with one input each (and the target's {N})"
    assert greedy >= N * (N + 1) // 2, f"greedy sized {greedy} times: the comparison no longer shows the difference"


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
