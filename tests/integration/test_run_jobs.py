"""run: jobs under --executor quantum: forked from a warm job parent, not a new Snakemake each."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from conftest import clean_env, command, snakemake, wait_gone, write_workflow

pytestmark = pytest.mark.slow

# Each job writes its PID, its parent's PID and what it sees.
PIDS = r'''
rule all:
    input: expand("o/{i}.json", i=range(6))

rule record:
    output: "o/{i}.json"
    run:
        import json, os
        json.dump({"pid": os.getpid(), "ppid": os.getppid()}, open(output[0], "w"))
'''


def records(workdir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((workdir / "o").glob("*.json"))]


def test_run_jobs_are_forked_from_one_job_parent_not_spawned(tmp_path: Path) -> None:
    workdir = write_workflow(tmp_path, PIDS)
    run = snakemake(workdir, "--executor", "quantum", "--cores", "2")
    assert run.returncode == 0, run.stderr[-3000:]
    seen = records(workdir)
    assert len(seen) == 6 and len({r["pid"] for r in seen}) == 6, "each job runs in a process of its own"
    parents = {r["ppid"] for r in seen}
    assert len(parents) == 1, f"a spawned job's parent is its own shell; forked jobs share the job parent: {parents}"
    assert not psutil.pid_exists(parents.pop()), "the job parent ends with the run"


def test_spawn_run_jobs_setting_runs_snakemakes_own_way(tmp_path: Path) -> None:
    workdir = write_workflow(tmp_path, PIDS.replace("range(6)", "range(2)"))
    run = snakemake(workdir, "--executor", "quantum", "--cores", "2", "--quantum-spawn-run-jobs")
    assert run.returncode == 0, run.stderr[-3000:]
    assert len({r["ppid"] for r in records(workdir)}) == 2


FAILING = r'''
rule all:
    input: expand("o/{i}.txt", i=range(4))

rule work:
    output: "o/{i}.txt"
    run:
        if wildcards.i == "2":
            raise ValueError("boom in job two")
        open(output[0], "w").write("ok")
'''


def test_a_run_job_that_raises_fails_only_itself_with_its_traceback(tmp_path: Path) -> None:
    workdir = write_workflow(tmp_path, FAILING)
    run = snakemake(workdir, "--executor", "quantum", "--cores", "2", "--keep-going")
    assert run.returncode != 0
    assert "boom in job two" in run.stderr and "ValueError" in run.stderr
    line = next(i for i, text in enumerate(FAILING.splitlines(), 1) if "raise ValueError" in text)
    assert f'Snakefile", line {line}' in run.stderr, "the error points at the Snakefile line that raised"
    assert sorted(p.name for p in (workdir / "o").glob("*.txt")) == ["0.txt", "1.txt", "3.txt"]


ISOLATED = r'''
rule all:
    input: "a.json", "b.json"

rule a:
    output: "a.json"
    resources: qpu=1, qpu_name="aer"
    run:
        import json, os
        os.environ["LEAKED_FROM_A"] = "1"
        globals()["LEAKED_GLOBAL"] = "1"
        json.dump({k: v for k, v in os.environ.items() if "QRMI" in k and "TOKEN" not in k}, open(output[0], "w"))

rule b:
    input: "a.json"
    output: "b.json"
    resources: qpu=1, qpu_name="pulser"
    run:
        import json, os
        seen = {k: v for k, v in os.environ.items() if "QRMI" in k and "TOKEN" not in k}
        seen["leaked"] = [os.environ.get("LEAKED_FROM_A"), globals().get("LEAKED_GLOBAL")]
        json.dump(seen, open(output[0], "w"))
'''


def test_each_run_job_sees_its_own_resources_and_nothing_of_another_job(tmp_path: Path) -> None:
    workdir = write_workflow(tmp_path, ISOLATED)
    run = snakemake(workdir, "--executor", "quantum", "--cores", "2")
    assert run.returncode == 0, run.stderr[-3000:]
    a = json.loads((workdir / "a.json").read_text())
    b = json.loads((workdir / "b.json").read_text())
    assert a["QRMI_JOB_QPU_RESOURCES"] == "aer" and b["QRMI_JOB_QPU_RESOURCES"] == "pulser"
    assert not any(k.startswith("pulser_") for k in a) and not any(k.startswith("aer_") for k in b)
    assert b["leaked"] == [None, None]


SLEEPING = r'''
rule all:
    input: "slept.txt"

rule sleep:
    output: "slept.txt"
    run:
        import os, time
        open("started.pid", "w").write(str(os.getpid()))
        time.sleep(120)
        open(output[0], "w").write("done")
'''


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_a_running_run_job_at_once(tmp_path: Path, sig: signal.Signals) -> None:
    workdir = write_workflow(tmp_path, SLEEPING)
    process = subprocess.Popen([command("snakemake"), "--executor", "quantum", "--cores", "2"], cwd=workdir,
                               env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    pid_file = workdir / "started.pid"
    deadline = time.monotonic() + 60
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline and process.poll() is None, "the run: job never started"
        time.sleep(0.05)
    job_pid = int(pid_file.read_text())
    signalled = time.monotonic()
    process.send_signal(sig)
    process.communicate(timeout=60)
    took = time.monotonic() - signalled
    assert took < 8, f"Snakemake took {took:.1f} s to stop after {sig.name}"
    assert wait_gone(job_pid, 2), "the run: job's process must be gone"
    assert not (workdir / "slept.txt").exists()
    dry = snakemake(workdir, "--executor", "quantum", "--cores", "2", "-n")
    assert dry.returncode == 0 and "Incomplete" not in dry.stdout + dry.stderr, dry.stderr[-2000:]


PRIMITIVES = r'''
rule all:
    input: expand("e{i}.json", i=range(3)), expand("s{i}.json", i=range(2))

rule estimate:
    output: "e{i}.json"
    resources: vqpu=1
    run:
        import json, sys
        preloaded = all(m in sys.modules for m in ("qiskit", "snakemake_executor_plugin_quantum.backends.vqpu_client"))
        from qiskit import QuantumCircuit
        from qiskit.quantum_info import SparsePauliOp
        from snakemake_executor_plugin_quantum.primitives import EstimatorV2
        qc = QuantumCircuit(2)
        qc.h(0)
        qc.cx(0, 1)
        evs = EstimatorV2().run([(qc, SparsePauliOp("ZZ"))]).result()[0].data.evs
        json.dump({"zz": float(evs), "preloaded": preloaded}, open(output[0], "w"))

rule sample:
    output: "s{i}.json"
    resources: vqpu=1
    script: "sample.py"
'''
SAMPLE_SCRIPT = r'''
import json, sys
preloaded = "qiskit" in sys.modules
from qiskit import QuantumCircuit
from snakemake_executor_plugin_quantum.primitives import SamplerV2
qc = QuantumCircuit(3)
qc.h(0)
qc.cx(0, 1)
qc.cx(1, 2)
qc.measure_all()
counts = SamplerV2(seed=5).run([qc], shots=200).result()[0].data.meas.get_counts()
json.dump({"counts": counts, "preloaded": preloaded, "main": __name__}, open(snakemake.output[0], "w"))
'''


def test_primitives_in_run_and_script_jobs_use_the_vqpu_and_a_preloaded_qiskit_and_client(tmp_path: Path) -> None:
    workdir = write_workflow(tmp_path, PRIMITIVES, {"sample.py": SAMPLE_SCRIPT})
    run = snakemake(workdir, "--executor", "quantum", "--cores", "2")
    assert run.returncode == 0, run.stderr[-3000:]
    for i in range(3):
        estimate = json.loads((workdir / f"e{i}.json").read_text())
        assert estimate == {"zz": pytest.approx(1.0), "preloaded": True}
    for i in range(2):
        sample = json.loads((workdir / f"s{i}.json").read_text())
        assert set(sample["counts"]) == {"000", "111"} and sum(sample["counts"].values()) == 200
        assert sample["preloaded"] and sample["main"] == "__main__"


FAILING_SCRIPT = r'''
rule all:
    input: "x.txt"

rule fail:
    output: "x.txt"
    resources: qpu=1, qpu_name="aer"
    script: "fail.py"
'''


def test_a_failing_quantum_script_fails_its_job_with_the_scripts_traceback(tmp_path: Path) -> None:
    workdir = write_workflow(tmp_path, FAILING_SCRIPT, {"fail.py": "def f():\n    raise RuntimeError('script says no')\nf()\n"})
    run = snakemake(workdir, "--executor", "quantum", "--cores", "2")
    assert run.returncode != 0
    assert "RuntimeError: script says no" in run.stderr and "in f" in run.stderr, run.stderr[-3000:]
    assert not (workdir / "x.txt").exists()


SAMPLER_RUN = r'''
rule all:
    input: "sampled.json"

rule sample:
    output: "sampled.json"
    resources: vqpu=1, vqpu_name="shared"
    run:
        import json, os
        from qiskit import QuantumCircuit
        from snakemake_executor_plugin_quantum.primitives import SamplerV2
        open("started.pid", "w").write(str(os.getpid()))
        circuit = QuantumCircuit.from_qasm_file("slow.qasm")
        result = SamplerV2().run([circuit], shots=10).result()
        json.dump(result[0].data.c.get_counts(), open(output[0], "w"))
'''


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_a_run_jobs_sampler_task_on_the_vqpu(tmp_path: Path, sig: signal.Signals) -> None:
    """The job process stops its vQPU task and is gone within seconds; nothing is left."""
    from conftest import start_service, stop_service
    from test_executor import slow_qasm

    from snakemake_executor_plugin_quantum.backends.vqpu_client import VQPUClient

    service = start_service("shared", tmp_path / "events", "--lanes", "1")
    try:
        config = f"resources:\n  - name: shared\n    type: vqpu\n    environment:\n      QRMI_VQPU_EVENT_FILE: {service.event_file}\n"
        workdir = write_workflow(tmp_path / "wf", SAMPLER_RUN, {"qrmi_config.yaml": config, "slow.qasm": slow_qasm(qubits=20, layers=400)})
        process = subprocess.Popen([command("snakemake"), "--executor", "quantum", "--cores", "2"], cwd=workdir,
                                   env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        client = VQPUClient("shared", {"QRMI_VQPU_EVENT_FILE": str(service.event_file)})
        deadline = time.monotonic() + 90
        while client.metadata()["running"] < 1:
            assert time.monotonic() < deadline and process.poll() is None, "the task never ran"
            time.sleep(0.1)
        job_pid = int((workdir / "started.pid").read_text())
        signalled = time.monotonic()
        process.send_signal(sig)
        process.communicate(timeout=60)
        took = time.monotonic() - signalled
        assert took < 8, f"Snakemake took {took:.1f} s to stop after {sig.name}"
        assert wait_gone(job_pid, 2), "the run: job's process must be gone, not left to PID 1"
        deadline = time.monotonic() + 5
        while (meta := client.metadata())["running"]:
            assert time.monotonic() < deadline, f"the task still runs on the vQPU: {meta}"
            time.sleep(0.1)
        assert meta["cancelled"] >= 1
        assert not (workdir / "sampled.json").exists()
        client.close()
    finally:
        stop_service(service)


@pytest.mark.parametrize("own_freeze", [False, True])
def test_a_program_that_runs_snakemake_gets_its_garbage_collector_back(tmp_path: Path, own_freeze: bool) -> None:
    """The executor keeps what exists at the start of a run out of the run's garbage
    collections (gc.freeze); a program running Snakemake in-process has its collector back
    afterwards as it was: nothing frozen, or its own freeze left alone."""
    workdir = write_workflow(tmp_path, PIDS)
    script = (
        "import gc, sys\n"
        f"if {own_freeze}: gc.freeze()\n"
        "from snakemake.cli import main\n"
        "try:\n"
        "    main(['--executor', 'quantum', '--cores', '2'])\n"
        "except SystemExit as exc:\n"
        "    print('exit', exc.code, 'frozen', gc.get_freeze_count() > 0)\n"
    )
    run = subprocess.run([command("python"), "-c", script], cwd=workdir, env=clean_env(), capture_output=True, text=True, timeout=300)
    assert run.stdout.split() == ["exit", "0", "frozen", str(own_freeze)], run.stdout + run.stderr[-3000:]
    assert len(records(workdir)) == 6


@pytest.mark.parametrize("how", ["console script", "python -m"])
def test_the_snakemake_command_keeps_the_freeze_until_it_exits(tmp_path: Path, how: str) -> None:
    """The command exits after its run: unfreezing would only make Python's last collection
    at exit walk (and free) everything again, a quarter of a second per run here."""
    workdir = write_workflow(tmp_path, 'import gc\nrule a:\n    output: "a.txt"\n    shell: "touch {output}"\n'
                                       'onsuccess:\n    print("frozen", gc.get_freeze_count() > 0)\n')
    prefix = [command("snakemake")] if how == "console script" else [command("python"), "-m", "snakemake"]
    run = subprocess.run([*prefix, "--executor", "quantum", "--cores", "1"], cwd=workdir, env=clean_env(),
                         capture_output=True, text=True, timeout=300)
    assert "frozen True" in run.stdout + run.stderr, run.stderr[-3000:]
