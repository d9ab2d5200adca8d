"""qplan on a real workflow: the plan is right, and nothing runs or starts."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import psutil
import pytest
from conftest import Run, clean_env, command, run, snakemake, write_workflow

from snakemake_executor_plugin_quantum.plan import COLOURS

pytestmark = pytest.mark.slow

HYBRID = r'''
N = config.get("n", 3)

rule all:
    input: "results/summary.txt", "results/hardware.json", "results/crosscheck.json"

rule prepare:
    output: "data/c{i}.qasm"
    shell: "echo prepared > {output}"

rule sample:
    input: "data/c{i}.qasm"
    output: "results/counts{i}.json"
    params: shots=1000
    resources: vqpu=1, vqpu_name="sim"
    shell: "qrun {input} -o {output} --shots {params.shots}"

rule post:
    input: expand("results/counts{i}.json", i=range(N))
    output: "results/summary.txt"
    resources: gpu=1
    shell: "cat {input} > {output}"

rule hardware:
    input: "results/summary.txt"
    output: "results/hardware.json"
    resources: qpu=1, qpu_name="aer"
    shell: "echo {{}} > {output}"

rule crosscheck:
    input: "results/summary.txt"
    output: "results/crosscheck.json"
    params: shots=256
    resources: vqpu=1, vqpu_name="ext"
    shell: "echo {{}} > {output}"
'''
RESOURCES = """
resources:
  - {name: aer, type: qiskit-aer}
  - {name: sim, type: vqpu, environment: {QRMI_VQPU_ENGINE: pulser}}
  - {name: ext, type: vqpu, environment: {QRMI_VQPU_EVENT_FILE: /nonexistent/ext.json}}
"""
OUTPUTS = ["data/c0.qasm", "data/c1.qasm", "results/counts0.json", "results/counts1.json",
           "results/summary.txt", "results/hardware.json", "results/crosscheck.json"]
OPTIONS = ["--quantum-config", "resources.yaml", "--config-file", "config.yaml"]  # n=2: 8 jobs


def qplan(workdir: Path, *args: str) -> Run:
    return run([command("qplan"), *args], cwd=workdir, env=clean_env(), timeout=60)


def hybrid(workdir: Path, snakefile: str = HYBRID) -> Path:
    return write_workflow(workdir, snakefile, {"resources.yaml": RESOURCES, "config.yaml": "n: 2\n"})


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One workflow, planned every way once (each qplan run builds a DAG: ~2 s)."""
    workdir = hybrid(tmp_path_factory.mktemp("hybrid"))
    runs = {
        "text": qplan(workdir, *OPTIONS),
        "json": qplan(workdir, *OPTIONS, "--json"),
        "rules": qplan(workdir, *OPTIONS, "--dot", "rules.dot"),
        "jobs": qplan(workdir, *OPTIONS, "--dot", "-", "--jobs-dot"),
    }
    for name, result in runs.items():
        assert result.returncode == 0, f"qplan ({name}) failed: {result.stderr}"
    return {"workdir": workdir, **runs}


def test_text_counts_jobs_per_stage_kind(planned: dict) -> None:
    text = planned["text"].stdout
    assert text.startswith("8 jobs would run.")
    for line in ("cpu   3 jobs    all, prepare x2", "gpu   1 job     post", "qpu   1 job     hardware", "vqpu  3 jobs    sample x2, crosscheck"):
        assert line in text


def section(text: str, title: str) -> dict[str, str]:
    """Lines of one section of the text summary, by their first word."""
    block = text.split(f"\n{title}:\n", 1)[1].split("\n\n", 1)[0]
    return {line.split()[0]: line for line in block.splitlines()}


def test_text_sums_shots_per_resource(planned: dict) -> None:
    lines = section(planned["text"].stdout, "Quantum resources")
    assert "2 jobs" in lines["sim"] and "2000 shots" in lines["sim"]
    assert "256 shots" in lines["ext"]
    assert "shots unknown (1 job without params.shots)" in lines["aer"]


def test_text_lists_vqpus_and_gpu_demand(planned: dict) -> None:
    text = planned["text"].stdout
    vqpus = section(text, "vQPUs")
    assert set(vqpus) == {"sim", "ext"}
    assert "engine pulser" in vqpus["sim"] and vqpus["sim"].endswith("launched by the executor")
    assert "engine aer" in vqpus["ext"] and vqpus["ext"].endswith("external: attached via /nonexistent/ext.json")
    assert "1 job with gpu=N: 1 GPU in all, at most 1 per job" in section(text, "GPUs")["1"]


def test_json_matches_the_documented_keys(planned: dict) -> None:
    data = json.loads(planned["json"].stdout)
    assert set(data) == {"version", "total_jobs", "stages", "resources", "vqpus", "gpus", "checkpoints", "undetermined", "jobs"}
    assert data["total_jobs"] == 8
    assert {kind: stage["jobs"] for kind, stage in data["stages"].items()} == {"cpu": 3, "gpu": 1, "qpu": 1, "vqpu": 3}
    assert {r["name"]: (r["type"], r["jobs"], r["shots"], r["jobs_without_shots"]) for r in data["resources"]} == {
        "sim": ("vqpu", 2, 2000, 0), "aer": ("qiskit-aer", 1, 0, 1), "ext": ("vqpu", 1, 256, 0)}
    assert {v["name"]: (v["engine"], v["external"]) for v in data["vqpus"]} == {"sim": ("pulser", False), "ext": ("aer", True)}
    assert data["gpus"] == {"jobs": 1, "total": 1, "max_per_job": 1}
    sample = next(j for j in data["jobs"] if j["rule"] == "sample")
    prepare = next(j for j in data["jobs"] if j["rule"] == "prepare" and j["wildcards"] == sample["wildcards"])
    assert sample["depends_on"] == [prepare["id"]] and sample["shots"] == 1000 and sample["kind"] == "vqpu"


@pytest.mark.parametrize("graph", ["rules", "jobs"])
def test_dot_renders_with_graphviz_in_four_colours(planned: dict, graph: str) -> None:
    if shutil.which("dot") is None:
        pytest.skip("graphviz 'dot' is not installed (apt-get install graphviz)")
    dot = (planned["workdir"] / "rules.dot").read_text() if graph == "rules" else planned["jobs"].stdout
    for colour in COLOURS.values():
        assert colour in dot
    nodes = re.findall(r"^  ([rj])\d+ \[label=", dot, flags=re.MULTILINE)
    assert nodes == (["r"] * 6 if graph == "rules" else ["j"] * 8)
    svg = subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True, text=True, timeout=30)
    assert svg.returncode == 0, svg.stderr
    assert svg.stdout.lstrip().startswith("<?xml") and "<svg" in svg.stdout


def test_planning_runs_and_starts_nothing(planned: dict) -> None:
    workdir = planned["workdir"]
    assert not [f for f in OUTPUTS if (workdir / f).exists()]
    assert not (workdir / ".snakemake" / "quantum").exists()
    assert not (workdir / ".snakemake" / "log").exists()
    ours = [p.pid for p in psutil.process_iter(["cmdline"]) if str(workdir) in " ".join(p.info["cmdline"] or [])]
    assert ours == []


def test_bad_qpu_name_fails_with_exit_2_naming_the_rule(tmp_path: Path) -> None:
    workdir = hybrid(tmp_path, HYBRID.replace('qpu_name="aer"', 'qpu_name="aer,nope"'))
    result = qplan(workdir, *OPTIONS)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "qplan: error: rule hardware: qpu_name 'nope' is not in resources.yaml; known resources: aer, sim, ext"]
    assert result.stdout == ""


def test_up_to_date_workflow_plans_zero_jobs_unless_forced(tmp_path: Path) -> None:
    workdir = hybrid(tmp_path)
    for age, name in enumerate(reversed(OUTPUTS)):  # inputs older than outputs
        path = workdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("done\n")
        os.utime(path, (1_700_000_000 - 60 * age,) * 2)
    up_to_date = qplan(workdir, *OPTIONS, "--json")
    assert up_to_date.returncode == 0, up_to_date.stderr
    assert json.loads(up_to_date.stdout)["total_jobs"] == 0
    forced = qplan(workdir, *OPTIONS, "--json", "--forceall")
    assert json.loads(forced.stdout)["total_jobs"] == 8


def test_snakemake_dry_run_works_with_the_quantum_executor(tmp_path: Path) -> None:
    workdir = hybrid(tmp_path)
    result = snakemake(workdir, "-n", "--executor", "quantum", "--cores", "1",
                       "--quantum-config", "resources.yaml", "--configfile", "config.yaml", timeout=120)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^total\s+8$", result.stdout + result.stderr, flags=re.MULTILINE)
    assert not [f for f in OUTPUTS if (workdir / f).exists()]
    assert not (workdir / ".snakemake" / "quantum").exists()


def test_a_rule_whose_resources_wait_for_an_upstream_file_is_planned_as_undetermined(tmp_path: Path) -> None:
    snakefile = (
        'def chosen(wildcards, input):\n    return open(input[0]).read().strip()\n\n'
        'rule all:\n    input: "used.txt"\n'
        'rule choose:\n    output: "choice.txt"\n    shell: "echo aer > {output}"\n'
        'rule use:\n    input: "choice.txt"\n    output: "used.txt"\n    resources: qpu=1, qpu_name=chosen\n    shell: "touch {output}"\n'
    )
    workdir = write_workflow(tmp_path, snakefile)
    planned = run([command("qplan"), "--json"], cwd=workdir)
    assert planned.returncode == 0, planned.stderr
    assert json.loads(planned.stdout)["undetermined"] == {"use": 1}
    text = run([command("qplan")], cwd=workdir)
    assert "use: resources come from functions of files that earlier jobs write" in text.stdout
