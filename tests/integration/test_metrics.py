"""Per-task metrics of a real run: one record per task from every writer, consistent, secret-free."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest
from conftest import CIRCUITS, clean_env, command, run, snakemake, write_workflow

pytestmark = pytest.mark.slow

REQUIRED = ("rule", "jobid", "wildcards", "resource", "resource_type", "task_id", "submitted", "started",
            "finished", "shots", "status")

# 20 sampling tasks on the vQPU: 12 sent by the executor itself (a plain qrun), 8 by a qrun
# process (shell syntax around it); and two tasks from the primitives in a run: job.
TWENTY = r'''
rule all:
    input: expand("inline/{i}.json", i=range(12)), expand("process/{i}.json", i=range(8)), "primitives.json"

rule inline:
    input: "ghz5.qasm"
    output: "inline/{i}.json"
    resources: vqpu=1
    shell: "qrun {input} --shots 100 -o {output}"

rule process:
    input: "ghz5.qasm"
    output: "process/{i}.json"
    resources: vqpu=1
    shell: "qrun {input} --shots 200 -o {output} && true"

rule primitives:
    output: "primitives.json"
    resources: vqpu=1
    run:
        import json
        from qiskit import QuantumCircuit
        from snakemake_executor_plugin_quantum.primitives import SamplerV2
        qc = QuantumCircuit(2)
        qc.h(0)
        qc.cx(0, 1)
        qc.measure_all()
        sampler = SamplerV2()
        first = sampler.run([qc], shots=300).result()[0].data.meas.get_counts()
        second = sampler.run([qc, qc], shots=50).result()
        json.dump(first, open(output[0], "w"))
'''


@pytest.fixture(scope="module")
def twenty(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    workdir = write_workflow(tmp_path_factory.mktemp("metrics"), TWENTY, {"ghz5.qasm": (CIRCUITS / "ghz5.qasm").read_text()})
    result = snakemake(workdir, "--executor", "quantum", "--cores", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, result.stderr


def records(workdir: Path) -> list[dict]:
    (path,) = (workdir / ".snakemake" / "quantum" / "metrics").glob("*.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_task_has_exactly_one_record_with_the_required_fields(twenty: tuple[Path, str]) -> None:
    workdir, _ = twenty
    found = records(workdir)
    by_rule = {rule: [r for r in found if r["rule"] == rule] for rule in ("inline", "process", "primitives")}
    assert [len(by_rule[rule]) for rule in by_rule] == [12, 8, 2] and len(found) == 22
    assert len({r["task_id"] for r in found}) == 22, "one record per task"
    for record in found:
        assert all(record.get(key) is not None for key in REQUIRED), record
        assert record["submitted"] <= record["started"] <= record["finished"], record
        assert record["status"] == "completed" and record["resource"] == "vqpu" and record["resource_type"] == "vqpu"
    assert {r["client"] for r in by_rule["inline"]} == {"inline"} and {r["client"] for r in by_rule["process"]} == {"qrun"}
    assert sorted(int(r["wildcards"]["i"]) for r in by_rule["inline"]) == list(range(12))
    assert {r["shots"] for r in by_rule["inline"]} == {100} and {r["shots"] for r in by_rule["process"]} == {200}
    assert sorted(r["shots"] for r in by_rule["primitives"]) == [100, 300], "two pubs of 50 shots, then one of 300"
    jobids = {r["jobid"] for r in by_rule["inline"]}
    assert len(jobids) == 12, "each record names its own Snakemake job"
    for record in by_rule["inline"] + by_rule["process"]:  # GHZ-5 as simulated: 5 qubits, at least 5 layers
        assert record["qubits"] == 5 and isinstance(record["depth"], int) and record["depth"] >= 5, record
        assert record["lanes"] == min(4, os.cpu_count() or 1) and record["lane"] in (*range(record["lanes"]), "inline"), record


def test_each_records_shots_match_the_result_file(twenty: tuple[Path, str]) -> None:
    workdir, _ = twenty
    for record in records(workdir):
        if record["rule"] == "primitives":
            continue
        result = json.loads((workdir / record["rule"] / f"{record['wildcards']['i']}.json").read_text())
        assert result["task_id"] == record["task_id"] and result["shots"] == record["shots"]


def test_the_run_ends_with_a_summary_per_resource(twenty: tuple[Path, str]) -> None:
    _, stderr = twenty
    lines = stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Quantum tasks of this run"))
    header, row = lines[start + 1].split(), lines[start + 2].split()
    assert header[:5] == ["resource", "type", "tasks", "shots", "failed"]
    assert row[:5] == ["vqpu", "vqpu", "22", str(12 * 100 + 8 * 200 + 400), "0"]
    assert row[-1].endswith("%"), "lane utilisation is known: the vQPU says how many lanes it has"


def test_qmetrics_prints_the_same_summary_and_exports_every_task_as_csv(twenty: tuple[Path, str]) -> None:
    workdir, stderr = twenty
    shown = run([command("qmetrics")], cwd=workdir)
    assert shown.returncode == 0, shown.stderr
    summary = [line for line in shown.stdout.splitlines() if line.startswith("vqpu")]
    assert summary and summary[0] in stderr, "the same line as at the end of the run"
    exported = run([command("qmetrics"), "--csv", "-"], cwd=workdir)
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert len(rows) == 22 and {row["status"] for row in rows} == {"completed"}
    assert run([command("qmetrics"), "nosuchrun"], cwd=workdir).returncode == 2


FAILING = r'''
rule all:
    input: "late.json", "bad.json"

rule late:
    input: "loop.qasm"
    output: "late.json"
    resources: qpu=1, qpu_name="aer", runtime=1
    shell: "qrun {input} --timeout 2 -o {output}"

rule bad:
    output: "bad.json"
    resources: qpu=1, qpu_name="leaky"
    shell: "qrun ghz5.qasm -o {output}"
'''
LOOP = (CIRCUITS / "never_ends.qasm").read_text()
# A site backend whose error quotes the key it was given, as some endpoints do.
LEAKY = '''
from snakemake_executor_plugin_quantum.backends.base import QuantumResource
from snakemake_executor_plugin_quantum.errors import ResourceUnavailableError


class Leaky(QuantumResource):
    def __init__(self, name, settings):
        super().__init__(name, "python:leaky:Leaky")
        self.key = settings["QRMI_IBM_QCS_IAM_APIKEY"]

    def acquire(self):
        return "t0ken-of-the-leaky-site"

    def release(self, token):
        pass

    def task_start(self, payload):
        raise ResourceUnavailableError(f"https://qpu.example/api?apikey={self.key} refused the task")

    task_stop = task_status = task_result = task_logs = lambda self, task_id: None
    target = metadata = lambda self: {}
'''
SECRET = "planted-credential-4f2b9c"


def test_failed_and_timed_out_tasks_are_recorded_without_any_secret(tmp_path: Path) -> None:
    config = ("resources:\n  - {name: aer, type: qiskit-aer}\n"
              f"  - {{name: leaky, type: 'python:leaky:Leaky', environment: {{QRMI_IBM_QCS_IAM_APIKEY: {SECRET}}}}}\n")
    workdir = write_workflow(tmp_path, FAILING, {"loop.qasm": LOOP, "ghz5.qasm": (CIRCUITS / "ghz5.qasm").read_text(),
                                                 "leaky.py": LEAKY, "qrmi_config.yaml": config})
    result = snakemake(workdir, "--executor", "quantum", "--cores", "2", "--keep-going",
                       env=clean_env(PYTHONPATH=os.pathsep.join(filter(None, [str(workdir), os.environ.get("PYTHONPATH")]))))
    assert result.returncode != 0
    by_rule = {r["rule"]: r for r in records(workdir)}
    assert by_rule["late"]["status"] == "timeout" and by_rule["late"]["error"] == "TaskTimeoutError"
    assert by_rule["late"]["finished"] - by_rule["late"]["submitted"] == pytest.approx(2, abs=1.5)
    assert by_rule["bad"]["status"] == "failed" and by_rule["bad"]["error"] == "ResourceUnavailableError"
    assert "apikey=***" in by_rule["bad"]["message"]
    metrics_text = "".join(p.read_text() for p in (workdir / ".snakemake" / "quantum" / "metrics").glob("*"))
    for secret in (SECRET, "t0ken-of-the-leaky-site"):
        assert secret not in metrics_text
        assert secret not in result.stderr + result.stdout, "nor in what the run printed"
    assert "token" not in json.dumps(list(by_rule.values())).lower().replace("tokens", "")
