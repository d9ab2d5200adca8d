"""snakemake --executor quantum on one machine: real Snakemake runs, real jobs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import (
    CIRCUITS,
    clean_env,
    command,
    quantum_processes,
    snakemake,
    start_service,
    stop_service,
    write_workflow,
)

pytestmark = pytest.mark.slow

CLASSICAL = r'''
rule all:
    input: "shell.txt", "run.txt", "script.txt", "threads.txt", "piped.txt", "bench.txt", "shadow.txt", "retried.txt"

rule shell:
    output: "shell.txt"
    log: "logs/shell.log"
    shell: "echo hello > {output}; echo logged > {log}"

rule run:
    output: "run.txt"
    run:
        with open(output[0], "w") as f:
            f.write("from run\n")

rule script:
    output: "script.txt"
    script: "scripts/write.py"

rule threads:
    output: "threads.txt"
    threads: 2
    shell: "echo {threads} > {output}"

rule produce:
    output: pipe("numbers.pipe")
    shell: "seq 1 5 > {output}"

rule consume:
    input: "numbers.pipe"
    output: "piped.txt"
    shell: "cat {input} | paste -sd+ | bc > {output}"

rule bench:
    output: "bench.txt"
    benchmark: "benchmarks/bench.tsv"
    shell: "echo timed > {output}"

rule shadow:
    output: "shadow.txt"
    shadow: "minimal"
    shell: "echo scratch > tmp.txt; cat tmp.txt > {output}"

rule retried:
    output: "retried.txt"
    retries: 1
    shell: "if [ -e attempted ]; then echo ok > {output}; else touch attempted; exit 1; fi"
'''
# Apart from the retry above: Snakemake itself (--executor local, 9.27) can lose a retry that
# is due when a checkpoint's DAG update rebuilds the ready jobs ("BUG: Out of jobs ready").
CHECKPOINT = r'''
rule all:
    input: "gathered.txt"

checkpoint split:
    output: directory("parts")
    shell: "mkdir -p {output}; for i in 1 2 3; do echo $i > {output}/$i.txt; done"

rule part:
    input: "parts/{i}.txt"
    output: "doubled/{i}.txt"
    shell: "echo $(( $(cat {input}) * 2 )) > {output}"

def doubled(wildcards):
    parts = checkpoints.split.get().output[0]
    return expand("doubled/{i}.txt", i=glob_wildcards(parts + "/{i}.txt").i)

rule gather:
    input: doubled
    output: "gathered.txt"
    shell: "cat {input} | paste -sd+ | bc > {output}"
'''
SCRIPT = 'with open(snakemake.output[0], "w") as f:\n    f.write("from script\\n")\n'
OUTPUTS = ["shell.txt", "run.txt", "script.txt", "threads.txt", "piped.txt", "bench.txt", "shadow.txt", "retried.txt", "logs/shell.log"]
SIDES = {"local": ("--executor", "local"), "quantum": ("--executor", "quantum"),
         "scheduler": ("--executor", "quantum", "--scheduler", "quantum")}  # the last: profiles/local's way


def test_classical_jobs_match_the_local_executor(tmp_path: Path) -> None:
    """Also with this package's scheduler: pipes (a group), retries, shadow, benchmark,
    run:, script:; and, in a workflow of its own, a checkpoint (the DAG changes mid-run)."""
    results = {}
    for name, args in SIDES.items():
        workdir = write_workflow(tmp_path / name, CLASSICAL, {"scripts/write.py": SCRIPT})
        result = snakemake(workdir, *args, "--cores", "2")
        assert result.returncode == 0, result.stderr[-3000:]
        results[name] = {output: (workdir / output).read_text() for output in OUTPUTS}
        assert (workdir / "benchmarks" / "bench.tsv").exists()
    assert results["quantum"] == results["local"] and results["scheduler"] == results["local"]
    for name in SIDES:
        workdir = write_workflow(tmp_path / f"checkpoint-{name}", CHECKPOINT)
        result = snakemake(workdir, *SIDES[name], "--cores", "2")
        assert result.returncode == 0, result.stderr[-3000:]
        assert (workdir / "gathered.txt").read_text() == "12\n", name


QUANTUM = r'''
rule all:
    input: "ghz.json", "env.txt", "run_env.txt", "script_env.txt"

rule ghz:
    output: "ghz.json"
    resources: qpu=1, qpu_name="aer"
    shell: "qrun ghz5.qasm --shots 300 -o {output}"

rule env:
    output: "env.txt"
    resources: qpu=1, qpu_name="aer,pulser"
    shell: "env | grep -E 'QRMI|SLURM_JOB_QPU' | sort > {output}"

rule run_env:
    output: "run_env.txt"
    resources: qpu=1, qpu_name="pulser"
    run:
        import os
        with open(output[0], "w") as f:
            f.write(os.environ["QRMI_JOB_QPU_RESOURCES"])

rule script_env:
    output: "script_env.txt"
    resources: qpu=1, qpu_name="aer"
    script: "scripts/env.py"
'''
ENV_SCRIPT = 'import os\nwith open(snakemake.output[0], "w") as f:\n    f.write(os.environ["QRMI_JOB_QPU_RESOURCES"])\n'


def test_quantum_rules_see_the_qrmi_job_environment(tmp_path: Path) -> None:
    workdir = write_workflow(tmp_path, QUANTUM, {"ghz5.qasm": (CIRCUITS / "ghz5.qasm").read_text(), "scripts/env.py": ENV_SCRIPT})
    result = snakemake(workdir, "--executor", "quantum", "--cores", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    counts = json.loads((workdir / "ghz.json").read_text())["pubs"][0]["registers"]["meas"]["counts"]
    assert set(counts) <= {"00000", "11111"} and sum(counts.values()) == 300
    env = dict(line.split("=", 1) for line in (workdir / "env.txt").read_text().splitlines())
    assert env["QRMI_JOB_QPU_RESOURCES"] == env["SLURM_JOB_QPU_RESOURCES"] == "aer,pulser"
    assert env["QRMI_JOB_QPU_TYPES"] == env["SLURM_JOB_QPU_TYPES"] == "qiskit-aer,pulser-emulator"
    assert env["aer_QRMI_AER_METHOD"] == "automatic"
    assert len(env["aer_QRMI_JOB_ACQUISITION_TOKEN"]) == 32 and len(env["pulser_QRMI_JOB_ACQUISITION_TOKEN"]) == 32
    assert (workdir / "run_env.txt").read_text() == "pulser"
    assert (workdir / "script_env.txt").read_text() == "aer"


SIDE_BY_SIDE = r'''
rule all:
    input: expand("env_{name}.txt", name=["aer", "pulser"]), "classical.txt"

rule env:
    output: "env_{name}.txt"
    resources: qpu=1, qpu_name=lambda wc: wc.name
    shell: "sleep 1; echo $QRMI_JOB_QPU_RESOURCES > {output}"

rule classical:
    output: "classical.txt"
    shell: "sleep 0.5; echo ${{QRMI_JOB_QPU_RESOURCES:-none}} > {output}"
'''


def test_concurrent_jobs_each_see_only_their_own_resources(tmp_path: Path) -> None:
    workdir = write_workflow(tmp_path, SIDE_BY_SIDE)
    result = snakemake(workdir, "--executor", "quantum", "--cores", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (workdir / "env_aer.txt").read_text().strip() == "aer"
    assert (workdir / "env_pulser.txt").read_text().strip() == "pulser"
    assert (workdir / "classical.txt").read_text().strip() == "none"


GPUS = r'''
rule all:
    input: expand("gpu{i}.txt", i=range(6))

rule gpu:
    output: "gpu{i}.txt"
    resources: gpu=1
    shell: "start=$(date +%s.%N); sleep 0.6; echo $CUDA_VISIBLE_DEVICES $start $(date +%s.%N) > {output}"
'''


def test_running_gpu_jobs_never_share_a_gpu(tmp_path: Path) -> None:
    workdir = write_workflow(tmp_path, GPUS)
    result = snakemake(workdir, "--executor", "quantum", "--cores", "4", "--quantum-gpu-slots", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = [(parts[0], float(parts[1]), float(parts[2])) for parts in ((workdir / f"gpu{i}.txt").read_text().split() for i in range(6))]
    assert {gpu for gpu, _, _ in jobs} == {"0", "1"}
    for i, (gpu_a, start_a, end_a) in enumerate(jobs):
        for gpu_b, start_b, end_b in jobs[i + 1:]:
            if start_a < end_b and start_b < end_a:  # ran at the same time
                assert gpu_a != gpu_b


LANES_CONFIG = """resources:
  - name: capped
    type: qiskit-aer
    lanes: 1
"""
LANES = r'''
rule all:
    input: expand("slot{i}.txt", i=range(3))

rule slot:
    output: "slot{i}.txt"
    resources: qpu=1, qpu_name="capped"
    shell: "start=$(date +%s.%N); sleep 0.7; echo $start $(date +%s.%N) > {output}"
'''


def test_lane_caps_hold_across_two_snakemake_processes(tmp_path: Path) -> None:
    config = tmp_path / "resources.yaml"
    config.write_text(LANES_CONFIG)
    leases = tmp_path / "leases"
    runs = []
    for name in ("first", "second"):
        workdir = write_workflow(tmp_path / name, LANES)
        runs.append(subprocess.Popen(
            [command("snakemake"), "--executor", "quantum", "--cores", "3", "--quantum-config", str(config), "--quantum-lease-dir", str(leases)],
            cwd=workdir, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        ))
    for run in runs:
        _, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr[-3000:]
    intervals = sorted(
        tuple(map(float, (tmp_path / name / f"slot{i}.txt").read_text().split())) for name in ("first", "second") for i in range(3)
    )
    assert len(intervals) == 6
    for (_, end), (start, _) in zip(intervals, intervals[1:], strict=False):
        assert start >= end - 0.01, "two jobs held the single lane at once"


BAD_CONFIG = {
    "unknown-qpu-name": ('resources: qpu=1, qpu_name="nowhere"', None, "rule quantum: qpu_name 'nowhere' is not in"),
    "qpu-without-resource": ("resources: qpu=1", None, "rule quantum asks for qpu but names no resource"),
    "zero-qpu": ('resources: qpu=0, qpu_name="aer"', None, "rule quantum: resources qpu=0 requests no QPU"),
    "malformed-config": ('resources: qpu=1, qpu_name="aer"', "resources: [{name: aer, type: warp}]", "unknown type 'warp'"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIG))
def test_bad_configuration_fails_before_any_job_runs(tmp_path: Path, case: str) -> None:
    resources, config, message = BAD_CONFIG[case]
    snakefile = f'''
rule all:
    input: "quantum.txt"
rule first:
    output: "first.txt"
    shell: "touch {{output}}"
rule quantum:
    input: "first.txt"
    output: "quantum.txt"
    {resources}
    shell: "touch {{output}}"
'''
    workdir = write_workflow(tmp_path, snakefile)
    args = ["--executor", "quantum", "--cores", "1"]
    if config:
        (workdir / "bad.yaml").write_text(config)
        args += ["--quantum-config", "bad.yaml"]
    result = snakemake(workdir, *args)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-2000:]
    assert not (workdir / "first.txt").exists(), "no job may run before the configuration is checked"


FAILING = r'''
rule all:
    input: "ok.txt", "bad.json"

rule ok:
    output: "ok.txt"
    shell: "touch {output}"

rule bad:
    output: "bad.json"
    resources: vqpu=1
    shell: "qrun broken.qasm --shots 10 -o {output}"
'''


def test_failing_quantum_job_fails_the_run_cleanly(tmp_path: Path) -> None:
    workdir = write_workflow(tmp_path, FAILING, {"broken.qasm": 'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[1] q;\nfrobnicate q[0];\n'})
    before = set(quantum_processes())
    result = snakemake(workdir, "--executor", "quantum", "--cores", "2")
    assert result.returncode != 0
    assert "qrun: error: pub 0: invalid OpenQASM 3: " in result.stderr and "gate 'frobnicate' is not defined" in result.stderr
    assert "Error in rule bad" in result.stderr
    assert not (workdir / "bad.json").exists()
    assert set(quantum_processes()) <= before, "the vQPU and qrun processes must be gone"
    assert not list((workdir / ".snakemake" / "quantum" / "vqpu").glob("*.json")), "no event file may remain"
    assert not [p for p in workdir.rglob("*.tmp")], "no temp file may remain"


SLOW = r'''
rule all:
    input: expand("slow{i}.json", i=range(2))

rule slow:
    output: "slow{i}.json"
    resources: vqpu=1, vqpu_name="shared"
    shell: "qrun slow.qasm --shots 10 -o {output}"
'''


def slow_qasm(qubits: int = 20, layers: int = 400) -> str:
    import numpy as np

    rng = np.random.default_rng(1)
    lines = ["OPENQASM 2.0;", 'include "qelib1.inc";', f"qreg q[{qubits}];", f"creg c[{qubits}];"]
    for _ in range(layers):
        lines += [f"rx({rng.uniform(0, 3):.4f}) q[{i}];" for i in range(qubits)]
        lines += [f"cx q[{i}],q[{i + 1}];" for i in range(qubits - 1)]
    return "\n".join(lines + ["measure q -> c;"])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_running_quantum_tasks_and_releases_resources(tmp_path: Path, sig: signal.Signals) -> None:
    service = start_service("shared", tmp_path / "events", "--lanes", "2")
    try:
        config = tmp_path / "resources.yaml"
        config.write_text(f"resources:\n  - name: shared\n    type: vqpu\n    environment:\n      QRMI_VQPU_EVENT_FILE: {service.event_file}\n")
        workdir = write_workflow(tmp_path / "wf", SLOW, {"slow.qasm": slow_qasm()})
        process = subprocess.Popen(
            [command("snakemake"), "--executor", "quantum", "--cores", "2", "--quantum-config", str(config)],
            cwd=workdir, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        from snakemake_executor_plugin_quantum.backends.vqpu_client import VQPUClient

        client = VQPUClient("shared", {"QRMI_VQPU_EVENT_FILE": str(service.event_file)})
        deadline = time.monotonic() + 60
        while client.metadata()["running"] < 2:
            assert time.monotonic() < deadline, "tasks never started"
            time.sleep(0.2)
        assert client.metadata()["acquired"] == 1, "the run acquires the vQPU once"
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode != 0
        meta = client.metadata()
        assert meta["cancelled"] == 2 and meta["running"] == 0, meta
        assert meta["acquired"] == 0, "the run's acquisition token must be released"
        assert not any(p.endswith(".json") for p in os.listdir(workdir) if p.startswith("slow")), "no partial output"
        assert not [p for p in quantum_processes() if "qrun" in p or "executor.sender" in p], "no qrun, no sender left"
        client.close()
    finally:
        stop_service(service)


def test_dry_run_needs_no_resources(tmp_path: Path) -> None:
    workdir = write_workflow(tmp_path, QUANTUM, {"ghz5.qasm": "", "scripts/env.py": ENV_SCRIPT})
    result = snakemake(workdir, "-n", "--executor", "quantum")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ghz" in result.stdout and "env" in result.stdout
    assert not (workdir / ".snakemake" / "quantum").exists(), "a dry run starts nothing"


LAZY = r'''
def chosen(wildcards, input):
    return open(input[0]).read().strip()

rule all:
    input: "used.txt"

rule choose:
    output: "choice.txt"
    shell: "echo pulser > {output}"

rule use:
    input: "choice.txt"
    output: "used.txt"
    resources: qpu=1, qpu_name=chosen
    shell: "echo $QRMI_JOB_QPU_RESOURCES > {output}"
'''


def test_a_resource_function_of_an_upstream_output_is_read_when_the_job_runs(tmp_path: Path) -> None:
    """As under --executor local: Snakemake evaluates it lazily, so must we."""
    workdir = write_workflow(tmp_path, LAZY)
    result = snakemake(workdir, "--executor", "quantum", "--cores", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (workdir / "used.txt").read_text().strip() == "pulser"


def test_a_bad_lazy_resource_fails_its_job_with_one_line(tmp_path: Path) -> None:
    workdir = write_workflow(tmp_path, LAZY.replace("echo pulser", "echo nowhere"))
    result = snakemake(workdir, "--executor", "quantum", "--cores", "2")
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if "qpu_name 'nowhere'" in line]
    assert len(lines) == 1 and lines[0].startswith("Error in job ") and "its command did not run" in lines[0], result.stderr[-2000:]
    assert "command exited with non-zero exit code" not in result.stderr
    assert not (workdir / "used.txt").exists()


def test_a_configuration_mistake_is_one_line_before_any_job_runs(tmp_path: Path) -> None:
    workdir = write_workflow(tmp_path, 'rule all:\n    output: "x"\n    resources: qpu=0\n    shell: "touch {output}"\n')
    result = snakemake(workdir, "--executor", "quantum", "--cores", "2")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "qpu=0" in line]
    assert errors == ["Error: rule all: resources qpu=0 requests no QPU; drop the resource or set qpu>=1"], result.stderr[-2000:]
    assert 'File "' not in result.stderr and "Traceback" not in result.stderr
