"""Slurm mode across hosts: a vQPU job on the gpu node serving jobs on the cpu nodes.

One run of a hybrid workflow on the 3-node test cluster (2 cpu nodes, 1 gpu node, each a
host of its own: tests/slurm/README.md), under ``profiles/slurm``, with a packet capture
on the gpu node's interface; each test checks one thing about that run.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    CIRCUITS,
    REPO,
    SlurmJob,
    SlurmNodes,
    assert_nothing_left,
    jobs_of_rule,
    require_slurm,
    sacct_jobs,
    slurm_env,
    slurm_nodes,
    snakemake,
    submitted_jobs,
    unavailable,
    write_workflow,
)

pytestmark = [pytest.mark.slow, pytest.mark.slurm(nodes=3)]

PROFILE = str(REPO / "profiles" / "slurm")
VQPU_PORT = 47123  # fixed, so the capture can filter on it from the start; free in the gpu node's namespace
SAMPLES = 2

CONFIG = f"""resources:
  - name: gpu_sim
    type: vqpu
    environment: {{QRMI_VQPU_ENGINE: aer, QRMI_VQPU_LANES: "1", QRMI_VQPU_PORT: "{VQPU_PORT}"}}
    slurm: {{partition: gpu}}
"""

# A client on a cpu node that knows where the vQPU is (the event file) but not its token.
PROBE = r'''
import json, os
from snakemake_executor_plugin_quantum.backends.vqpu_client import VQPUClient
from snakemake_executor_plugin_quantum.errors import QuantumError

name = os.environ["QRMI_JOB_QPU_RESOURCES"]
event = json.load(open(os.environ[f"{name}_QRMI_VQPU_EVENT_FILE"]))
secrets = {"bearer": event["token"], "acquisition": os.environ[f"{name}_QRMI_JOB_ACQUISITION_TOKEN"]}
outcome = {}
for label, token in (("wrong", "x" * len(event["token"])), ("none", "")):
    path = f"probe-{label}.json"
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        json.dump({**event, "token": token}, handle)
    try:
        VQPUClient(name, {"QRMI_VQPU_EVENT_FILE": path}, connect_timeout=0).health()
        outcome[label] = "accepted"
    except QuantumError as exc:
        outcome[label] = f"refused: {exc}"
print(json.dumps({"secrets": secrets, "outcome": outcome}))
'''

SNAKEFILE = rf'''
rule all:
    input: "post.txt", "probe.json"

rule prepare:
    output: "circ{{i}}.qasm"
    shell: "sleep 1; cp ghz5.qasm {{output}}"

rule sample:
    input: "circ{{i}}.qasm"
    output: "counts{{i}}.json"
    resources: vqpu=1
    shell: "qrun {{input}} --shots 200 -o {{output}}"

rule probe:
    output: "probe.json"
    resources: vqpu=1
    shell: "{sys.executable} probe.py > {{output}}"

rule post:
    input: expand("counts{{i}}.json", i=range({SAMPLES}))
    output: "post.txt"
    resources: gpu=1, slurm_partition="gpu"
    shell: "hostname > {{output}}"
'''


@dataclass
class HybridRun:
    workdir: Path
    env: dict[str, str]
    nodes: SlurmNodes
    returncode: int
    stderr: str
    capture: Path
    jobs: dict[str, SlurmJob]  # from sacct, after the run
    vqpu_id: str

    def nodes_of(self, rule: str) -> list[str]:
        """Where the run's jobs of ``rule`` ran, from sacct."""
        return [self.jobs[job].nodes for job in jobs_of_rule(self.stderr, rule)]


@contextlib.contextmanager
def _capture(node: str, path: Path) -> Iterator[None]:
    """tcpdump on the node's own interface, inside its network namespace, if installed.

    -Z root: write as root into the 0700 test directory; -U: each packet reaches the file at once.
    """
    if shutil.which("tcpdump") is None:
        yield
        return
    dump = subprocess.Popen(["nsenter", f"--net=/run/netns/{node}", "tcpdump", "-i", "eth0", "-U", "-Z", "root",
                             "-w", str(path), f"tcp port {VQPU_PORT}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not path.exists():  # tcpdump creates the file once it listens
            assert dump.poll() is None and time.monotonic() < deadline, "tcpdump did not start"
            time.sleep(0.1)
        yield
    finally:
        dump.send_signal(signal.SIGINT)
        dump.communicate(timeout=30)


@pytest.fixture(scope="module")
def hybrid_run(tmp_path_factory: pytest.TempPathFactory) -> HybridRun:
    env = slurm_env(require_slurm(nodes=3))  # the vQPU logs each task, with its client's address, at INFO
    nodes = slurm_nodes(env)
    workdir = write_workflow(tmp_path_factory.mktemp("nodes"), SNAKEFILE, {
        "ghz5.qasm": (CIRCUITS / "ghz5.qasm").read_text(), "qrmi_config.yaml": CONFIG, "probe.py": PROBE,
    })
    capture = workdir / "gpu-node.pcap"
    with _capture(nodes.gpu[0], capture):
        result = snakemake(workdir, "--profile", PROFILE, env=env, timeout=280)
    _, vqpus = submitted_jobs(result.stderr)
    return HybridRun(workdir, env, nodes, result.returncode, result.stderr, capture, sacct_jobs(env), vqpus[0] if vqpus else "")


def _ok(run: HybridRun) -> None:
    assert run.returncode == 0, run.stderr[-4000:]


def test_the_vqpu_job_runs_on_the_gpu_node_and_sampling_jobs_on_cpu_nodes(hybrid_run: HybridRun) -> None:
    _ok(hybrid_run)
    assert hybrid_run.jobs[hybrid_run.vqpu_id].nodes == hybrid_run.nodes.gpu[0]
    samples = hybrid_run.nodes_of("sample")
    assert len(samples) == SAMPLES and set(samples) <= set(hybrid_run.nodes.cpu), samples
    for i in range(SAMPLES):
        counts = json.loads((hybrid_run.workdir / f"counts{i}.json").read_text())["pubs"][0]["registers"]["meas"]["counts"]
        assert set(counts) <= {"00000", "11111"} and sum(counts.values()) == 200


def test_the_vqpu_served_its_tasks_to_clients_on_the_cpu_nodes(hybrid_run: HybridRun) -> None:
    _ok(hybrid_run)
    log = hybrid_run.workdir / ".snakemake" / "quantum" / "vqpu" / f"gpu_sim.{hybrid_run.vqpu_id}.log"
    clients = set(re.findall(r" vqpu \S+: task [0-9a-f]{32} .* completed \(.*\) from (\S+)$", log.read_text(), re.MULTILINE))
    sampled_from = {hybrid_run.nodes.address[node] for node in hybrid_run.nodes_of("sample")}
    assert clients == sampled_from, f"tasks came from {clients}, sampling jobs ran on {sampled_from}"
    assert not clients & {hybrid_run.nodes.address[n] for n in hybrid_run.nodes.gpu}, "no task from the vQPU's own node"


def test_classical_stages_spread_over_the_cpu_nodes(hybrid_run: HybridRun) -> None:
    _ok(hybrid_run)
    prepared = hybrid_run.nodes_of("prepare")
    assert len(prepared) == SAMPLES and set(prepared) == set(hybrid_run.nodes.cpu), prepared
    assert hybrid_run.nodes_of("post") == [hybrid_run.nodes.gpu[0]]
    assert "gres/gpu=1" in hybrid_run.jobs[jobs_of_rule(hybrid_run.stderr, "post")[0]].tres, "the GPU stage got a GPU"
    assert (hybrid_run.workdir / "post.txt").read_text().strip() == hybrid_run.nodes.gpu[0], "a job sees its node's hostname"


def test_a_client_without_the_token_is_refused(hybrid_run: HybridRun) -> None:
    _ok(hybrid_run)
    outcome = json.loads((hybrid_run.workdir / "probe.json").read_text())["outcome"]
    assert outcome["wrong"].startswith("refused:") and "refused the token" in outcome["wrong"], outcome
    assert outcome["none"].startswith("refused:") and "refused the token" in outcome["none"], outcome
    assert hybrid_run.nodes_of("probe")[0] in hybrid_run.nodes.cpu, "the probe is a client on another host"


def test_the_token_never_crosses_the_network_in_clear(hybrid_run: HybridRun) -> None:
    _ok(hybrid_run)
    if not hybrid_run.capture.exists():
        unavailable("tcpdump is not installed (scripts/system-packages.sh installs it as root)")
    packets = subprocess.run(["tcpdump", "-r", str(hybrid_run.capture), "-n"], capture_output=True, text=True, timeout=60).stdout
    assert len(packets.splitlines()) > 20, "the capture saw no vQPU traffic"
    captured = hybrid_run.capture.read_bytes()
    secrets = json.loads((hybrid_run.workdir / "probe.json").read_text())["secrets"]
    for what, value in secrets.items():
        assert value.encode() not in captured, f"the {what} token crossed the network in clear (seen in {hybrid_run.capture})"


def test_nothing_of_the_run_is_left_in_squeue_or_on_any_node(hybrid_run: HybridRun) -> None:
    _ok(hybrid_run)
    work = [job for rule in ("prepare", "sample", "probe", "post") for job in jobs_of_rule(hybrid_run.stderr, rule)]
    assert len(work) == 2 * SAMPLES + 2 and all(hybrid_run.jobs[job].state == "COMPLETED" for job in work), hybrid_run.jobs
    assert hybrid_run.jobs[hybrid_run.vqpu_id].state.startswith(("CANCELLED", "COMPLETED")), "the vQPU job was ended"
    assert not list((hybrid_run.workdir / ".snakemake" / "quantum" / "env").glob("*")), "export files are deleted after submission"
    assert_nothing_left(hybrid_run.env)

