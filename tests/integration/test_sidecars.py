"""vQPU sidecars in real workflows: one per vQPU, found by event file, stopped when unneeded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import CIRCUITS, clean_env, command, quantum_processes, snakemake, write_workflow
from test_executor import slow_qasm

from snakemake_executor_plugin_quantum.procs import pid_alive

pytestmark = pytest.mark.slow

# Each job records which vQPU process served it (the pid in its event file).
RECORD_PID = "python record_pid.py {name}"
RECORD_PID_SCRIPT = "import json, os, sys\nprint(json.load(open(os.environ[sys.argv[1] + '_QRMI_VQPU_EVENT_FILE']))['pid'])\n"


def launches(workdir: Path, name: str) -> int:
    log = workdir / ".snakemake" / "quantum" / "vqpu" / f"{name}.log"
    return log.read_text().count(" ready at ") if log.exists() else 0


FIFTY = rf'''
rule all:
    input: expand("out/{{i}}.json", i=range(50))

rule sample:
    input: "ghz5.qasm"
    output: "out/{{i}}.json", "out/{{i}}.pid"
    resources: vqpu=1
    shell: "qrun {{input}} --shots 64 -o {{output[0]}} && {RECORD_PID.format(name="vqpu")} > {{output[1]}}"
'''


def test_fifty_vqpu_rules_share_exactly_one_vqpu_which_is_gone_after(tmp_path: Path) -> None:
    workdir = write_workflow(tmp_path, FIFTY, {"ghz5.qasm": (CIRCUITS / "ghz5.qasm").read_text(), "record_pid.py": RECORD_PID_SCRIPT})
    result = snakemake(workdir, "--executor", "quantum", "--cores", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    pids = {(workdir / "out" / f"{i}.pid").read_text().strip() for i in range(50)}
    assert len(pids) == 1 and launches(workdir, "vqpu") == 1
    for i in range(50):
        counts = json.loads((workdir / "out" / f"{i}.json").read_text())["pubs"][0]["registers"]["meas"]["counts"]
        assert set(counts) <= {"00000", "11111"}
    assert not pid_alive(int(pids.pop()))
    assert not (workdir / ".snakemake" / "quantum" / "vqpu" / "vqpu.json").exists()


TWO_ENGINES_CONFIG = """resources:
  - name: circuits
    type: vqpu
    environment: {QRMI_VQPU_ENGINE: aer, QRMI_VQPU_LANES: "1"}
  - name: atoms
    type: vqpu
    environment: {QRMI_VQPU_ENGINE: pulser, QRMI_VQPU_LANES: "1"}
"""
TWO_ENGINES = r'''
rule all:
    input: expand("c{i}.json", i=range(3)), expand("a{i}.json", i=range(3))

rule circuit:
    input: "ghz5.qasm"
    output: "c{i}.json"
    resources: vqpu=1, vqpu_name="circuits"
    shell: "qrun {input} --shots 100 -o {output}"

rule atoms:
    input: "sequence.json"
    output: "a{i}.json"
    resources: vqpu=1, vqpu_name="atoms"
    shell: "qrun {input} -o {output}"
'''


def test_two_named_vqpus_serve_their_own_rules(tmp_path: Path) -> None:
    from test_qrun import pulser_sequence

    sequence = json.dumps({"sequence": pulser_sequence(), "job_runs": 200})
    workdir = write_workflow(tmp_path, TWO_ENGINES, {"ghz5.qasm": (CIRCUITS / "ghz5.qasm").read_text(), "sequence.json": sequence, "resources.yaml": TWO_ENGINES_CONFIG})
    result = snakemake(workdir, "--executor", "quantum", "--cores", "2", "--quantum-config", "resources.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    for i in range(3):
        assert json.loads((workdir / f"c{i}.json").read_text())["resource"] == {"name": "circuits", "type": "vqpu"}
        atoms = json.loads((workdir / f"a{i}.json").read_text())
        assert atoms["program"] == "pulser" and sum(atoms["counts"].values()) == 200
    assert launches(workdir, "circuits") == 1 and launches(workdir, "atoms") == 1


EARLY_STOP = rf'''
rule all:
    input: "late.txt"

rule sample:
    input: "ghz5.qasm"
    output: "sample.pid"
    resources: vqpu=1
    shell: "qrun {{input}} --shots 10 -o /dev/null && {RECORD_PID.format(name="vqpu")} > {{output}}"

rule late:
    input: "sample.pid"
    output: "late.txt"
    shell: "for i in $(seq 50); do kill -0 $(cat {{input}}) 2>/dev/null || break; sleep 0.2; done; kill -0 $(cat {{input}}) 2>/dev/null && echo alive > {{output}} || echo gone > {{output}}"
'''


def test_vqpu_stops_when_its_last_pending_job_finishes(tmp_path: Path) -> None:
    workdir = write_workflow(tmp_path, EARLY_STOP, {"ghz5.qasm": (CIRCUITS / "ghz5.qasm").read_text(), "record_pid.py": RECORD_PID_SCRIPT})
    result = snakemake(workdir, "--executor", "quantum", "--cores", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (workdir / "late.txt").read_text().strip() == "gone", "the vQPU must stop while later classical jobs run"


KILLED = r'''
rule all:
    input: expand("k{i}.json", i=range(2))

rule slow:
    input: "slow.qasm"
    output: "k{i}.json"
    resources: vqpu=1
    shell: "qrun {input} --shots 10 -o {output}"
'''

# The same, but a retried job samples a quick circuit: only the first attempt must be slow.
KILLED_THEN_QUICK = r'''
rule all:
    input: expand("k{i}.json", i=range(2))

rule slow:
    input: "slow.qasm", "quick.qasm"
    output: "k{i}.json"
    resources: vqpu=1, circuit=lambda wildcards, attempt: "slow.qasm" if attempt == 1 else "quick.qasm"
    shell: "qrun {resources.circuit} --shots 10 -o {output}"
'''


def _kill_vqpu_when_busy(workdir: Path, killed: dict) -> None:
    event_file = workdir / ".snakemake" / "quantum" / "vqpu" / "vqpu.json"
    from snakemake_executor_plugin_quantum.backends.vqpu_client import VQPUClient

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if event_file.exists():
            try:
                client = VQPUClient("vqpu", {"QRMI_VQPU_EVENT_FILE": str(event_file)})
                if client.metadata()["running"] >= 1:
                    pid = json.loads(event_file.read_text())["pid"]
                    os.kill(pid, signal.SIGKILL)
                    killed.update(pid=pid, at=time.monotonic())
                    return
            except Exception:  # not ready yet
                pass
        time.sleep(0.2)


@pytest.mark.parametrize("retries", [0, 1])
def test_kill_9_of_the_vqpu_fails_jobs_fast_and_a_retry_recovers(tmp_path: Path, retries: int) -> None:
    workdir = write_workflow(tmp_path, KILLED_THEN_QUICK, {"slow.qasm": slow_qasm(qubits=20, layers=250),
                                                           "quick.qasm": (CIRCUITS / "ghz5.qasm").read_text()})
    killed: dict = {}
    killer = threading.Thread(target=_kill_vqpu_when_busy, args=(workdir, killed))
    killer.start()
    process = subprocess.Popen(
        [command("snakemake"), "--executor", "quantum", "--cores", "2", "--retries", str(retries)],
        cwd=workdir, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    _, stderr = process.communicate(timeout=280)
    ended = time.monotonic()
    killer.join()
    assert killed, "the vQPU was never busy"
    assert "vQPU 'vqpu' is gone: its process" in stderr, stderr[-3000:]
    if retries == 0:
        assert process.returncode != 0
        failed_at = [line for line in stderr.splitlines() if "Error in rule slow" in line]
        assert failed_at
        assert ended - killed["at"] < 10, f"the run took {ended - killed['at']:.1f} s to end after the vQPU was killed"
    else:
        assert process.returncode == 0, stderr[-3000:]
        assert launches(workdir, "vqpu") == 2, "the retried jobs run on a restarted vQPU"
        assert all((workdir / f"k{i}.json").exists() for i in range(2))
    assert not (workdir / ".snakemake" / "quantum" / "vqpu" / "vqpu.json").exists()
    assert not [p for p in quantum_processes() if str(workdir) in p or "qrun" in p]


def test_in_flight_jobs_fail_within_ten_seconds_of_a_vqpu_kill(tmp_path: Path) -> None:
    workdir = write_workflow(tmp_path, KILLED, {"slow.qasm": slow_qasm(qubits=20, layers=400)})
    killed: dict = {}
    killer = threading.Thread(target=_kill_vqpu_when_busy, args=(workdir, killed))
    killer.start()
    process = subprocess.Popen(
        [command("snakemake"), "--executor", "quantum", "--cores", "2"],
        cwd=workdir, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    process.wait(280)
    ended = time.monotonic()
    killer.join()
    assert process.returncode != 0
    print(f"in-flight jobs failed {ended - killed['at']:.2f} s after kill -9 of the vQPU (run ended)")
    assert ended - killed["at"] < 10, f"jobs took {ended - killed['at']:.1f} s to fail after the kill"


def test_ctrl_c_leaves_no_vqpu_qrun_or_event_file(tmp_path: Path) -> None:
    workdir = write_workflow(tmp_path, KILLED, {"slow.qasm": slow_qasm(qubits=20, layers=400)})
    process = subprocess.Popen(
        [command("snakemake"), "--executor", "quantum", "--cores", "2"],
        cwd=workdir, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    event_file = workdir / ".snakemake" / "quantum" / "vqpu" / "vqpu.json"
    deadline = time.monotonic() + 120
    while not event_file.exists():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    vqpu_pid = json.loads(event_file.read_text())["pid"]
    time.sleep(2)  # qrun jobs connected and running
    import psutil

    tree = [p.pid for p in psutil.Process(process.pid).children(recursive=True)]
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=120)
    assert not pid_alive(vqpu_pid)
    assert not [pid for pid in tree if pid_alive(pid)], "every process of the run must be gone"
    assert not event_file.exists()
    assert not list(workdir.glob("k*.json"))


def _cmdline(process) -> str:
    import psutil

    try:
        return " ".join(process.cmdline())
    except psutil.Error:  # a child that exited meanwhile (the job parent's first forks)
        return ""


def test_ctrl_c_while_the_vqpu_starts_stops_it_at_once_and_the_next_run_is_not_blocked(tmp_path: Path) -> None:
    """Jobs waiting for a starting vQPU give up on Ctrl-C: no task is sent, the starting
    vQPU is stopped, and no output is left for the next run to call incomplete."""
    import psutil

    workdir = write_workflow(tmp_path, KILLED, {"slow.qasm": slow_qasm(qubits=20, layers=400)})
    process = subprocess.Popen(
        [command("snakemake"), "--executor", "quantum", "--cores", "2"],
        cwd=workdir, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    vqpu_dir = workdir / ".snakemake" / "quantum" / "vqpu"
    deadline = time.monotonic() + 60
    starting = []
    while not starting:  # the vQPU process exists, its event file does not yet
        assert time.monotonic() < deadline and process.poll() is None, "the vQPU never started"
        starting = [p for p in psutil.Process(process.pid).children() if "serve" in _cmdline(p)]
        time.sleep(0.02)
    assert not (vqpu_dir / "vqpu.json").exists(), "the vQPU was ready before the test could interrupt its start"
    interrupted = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    took = time.monotonic() - interrupted
    assert took < 8, f"Snakemake took {took:.1f} s to stop after Ctrl-C"
    assert not pid_alive(starting[0].pid), "the starting vQPU must be stopped"
    assert not (vqpu_dir / "vqpu.json").exists()
    assert not list(workdir.glob("k*.json"))
    dry = snakemake(workdir, "--executor", "quantum", "--cores", "2", "-n")
    assert dry.returncode == 0 and "Incomplete" not in dry.stdout + dry.stderr, dry.stderr[-2000:]


def test_a_dead_external_vqpu_fails_the_run_with_one_line_naming_its_event_file(tmp_path: Path) -> None:
    """An external vQPU (QRMI_VQPU_EVENT_FILE in the config) is never replaced by a private one."""
    event_file = tmp_path / "shared" / "ext.json"
    event_file.parent.mkdir()
    event_file.write_text(json.dumps({"name": "ext", "host": "127.0.0.1", "port": 9, "pid": 2**22 + 17,
                                      "token": "x" * 32, "engine": "aer", "qubits": 30, "started": 0.0}))
    config = f"resources:\n  - name: ext\n    type: vqpu\n    environment: {{QRMI_VQPU_EVENT_FILE: {event_file}}}\n"
    workdir = write_workflow(tmp_path / "wf", KILLED.replace("resources: vqpu=1", 'resources: vqpu=1, vqpu_name="ext"'),
                             {"slow.qasm": slow_qasm(qubits=2, layers=1), "qrmi_config.yaml": config})
    result = snakemake(workdir, "--executor", "quantum", "--cores", "2")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if str(event_file) in line]
    assert errors and errors[0].startswith("Error: vQPU 'ext' is external"), result.stderr[-2000:]
    assert "Traceback" not in result.stderr and 'File "' not in result.stderr
    assert not (workdir / ".snakemake" / "quantum" / "vqpu").exists() or not list((workdir / ".snakemake" / "quantum" / "vqpu").glob("*.log")), "no private vQPU may start"
