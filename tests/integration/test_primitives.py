"""Qiskit programs run unchanged on our SamplerV2/EstimatorV2: in-process Aer and a real vQPU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import Service, clean_env, snakemake, start_service, stop_service, write_workflow
from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister
from qiskit.circuit import Parameter, ParameterVector
from qiskit.primitives import (
    BaseEstimatorV2,
    BaseSamplerV2,
    StatevectorEstimator,
    StatevectorSampler,
)
from qiskit.quantum_info import SparsePauliOp, Statevector
from qrmi_payloads import exact_probabilities, within_sigmas

from snakemake_executor_plugin_quantum.backends import TaskStatus
from snakemake_executor_plugin_quantum.backends.vqpu_client import VQPUClient
from snakemake_executor_plugin_quantum.errors import (
    ConfigError,
    PayloadError,
    TaskFailedError,
    TaskTimeoutError,
)
from snakemake_executor_plugin_quantum.primitives import EstimatorV2, SamplerV2

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vqpu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = start_service("prims", tmp_path_factory.mktemp("events"), "--engine", "aer", "--lanes", "2", shared=True)
    yield service
    stop_service(service)


@pytest.fixture(params=["aer", "vqpu"])
def make(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    """Build a primitive as a program would: in-process Aer by name, or the job's only resource."""
    made: list[Any] = []
    if request.param == "aer":
        args: tuple[str, ...] = ("aer",)
        job_env = clean_env()
    else:
        args = ()
        job_env = request.getfixturevalue("vqpu").job_env()  # as in a Snakemake job with resources: vqpu=1
    for key in list(os.environ):
        if "QRMI" in key or key == "SNAKEMAKE_QUANTUM_CONFIG":
            monkeypatch.delenv(key)
    for key, value in job_env.items():
        if "QRMI" in key:
            monkeypatch.setenv(key, value)

    def build(cls: type, **kwargs: Any) -> Any:
        made.append(cls(*args, **kwargs))
        return made[-1]

    yield build
    for primitive in made:
        primitive.close()


# ---------------------------------------------------- programs written for Qiskit


def ghz_counts(sampler: BaseSamplerV2, qubits: int = 4, shots: int = 2000) -> dict[str, int]:
    circuit = QuantumCircuit(qubits)
    circuit.h(0)
    for i in range(qubits - 1):
        circuit.cx(i, i + 1)
    circuit.measure_all()
    return sampler.run([(circuit,)], shots=shots).result()[0].data.meas.get_counts()


def many_parameters() -> QuantumCircuit:
    """15 parameters whose names sort differently as text and as Qiskit orders them."""
    x = ParameterVector("x", 11)
    params = [*x, Parameter("a"), Parameter("b10"), Parameter("b2"), Parameter("θ")]
    circuit = QuantumCircuit(3)
    for i, p in enumerate(params):
        circuit.ry(p * (i + 1) / 5, i % 3)
        circuit.cx(i % 3, (i + 1) % 3)
    return circuit


def expectation_values(estimator: BaseEstimatorV2, circuit: QuantumCircuit, observables: object, values: np.ndarray, precision: float | None = None) -> np.ndarray:
    return estimator.run([(circuit, observables, values)], precision=precision).result()[0].data.evs


# ------------------------------------------------------------------- sampler


def test_ghz_program_gives_only_the_two_ghz_outcomes(make: Callable[..., Any]) -> None:
    reference = ghz_counts(StatevectorSampler(seed=1))
    counts = ghz_counts(make(SamplerV2))
    assert set(counts) == set(reference) == {"0000", "1111"}
    assert sum(counts.values()) == 2000 and min(counts.values()) > 850


def test_parameter_sweep_gives_one_bit_array_per_set_with_exact_probabilities(make: Callable[..., Any]) -> None:
    circuit = many_parameters()
    circuit.measure_all()
    values = np.random.default_rng(2).uniform(0, np.pi, (3, 2, circuit.num_parameters))
    result = make(SamplerV2, seed=11).run([(circuit, values)], shots=4000).result()[0]
    assert result.data.meas.shape == (3, 2) and result.data.meas.num_shots == 4000
    for index in np.ndindex(3, 2):
        counts = result.data.meas[index].get_counts()
        bound = dict(zip(circuit.parameters, values[index], strict=True))
        assert not within_sigmas(counts, exact_probabilities(circuit, bound), 4000), index


def test_registers_of_one_circuit_stay_correlated_shot_by_shot(make: Callable[..., Any]) -> None:
    q, a, b = QuantumRegister(2, "q"), ClassicalRegister(1, "a"), ClassicalRegister(2, "b")
    circuit = QuantumCircuit(q, a, b)
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.measure(0, a[0])
    circuit.measure(1, b[1])
    result = make(SamplerV2).run([circuit], shots=500).result()[0]
    assert set(result.data.a.get_counts()) == {"0", "1"} and set(result.data.b.get_counts()) == {"00", "10"}
    assert set(result.join_data().get_counts()) == {"000", "101"}  # b a, as Qiskit joins them


def test_same_seed_reproduces_samples_and_another_seed_does_not(make: Callable[..., Any]) -> None:
    circuit = QuantumCircuit(4)
    circuit.h(range(4))
    circuit.measure_all()
    runs = [make(SamplerV2, seed=seed).run([circuit]).result() for seed in (7, 7, 8)]
    counts = [r[0].data.meas.get_counts() for r in runs]
    assert counts[0] == counts[1] != counts[2]
    assert runs[0].metadata["seed"] == 7 and runs[0][0].metadata["shots"] == 1024


def test_job_reports_its_task_and_final_state(make: Callable[..., Any]) -> None:
    job = make(SamplerV2).run([QuantumCircuit.from_qasm_str(
        'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; x q[0]; measure q -> c;'
    )], shots=10)
    result = job.result()
    assert result[0].data.c.get_counts() == {"1": 10}
    assert job.status() is TaskStatus.COMPLETED and job.done() and job.in_final_state()
    assert not job.running() and not job.cancelled()
    assert result.metadata["task_id"] == job.job_id()


# ----------------------------------------------------------------- estimator


def test_estimator_sweep_with_broadcast_observables_is_exact(make: Callable[..., Any]) -> None:
    circuit = many_parameters()
    values = np.random.default_rng(4).uniform(0, np.pi, (5, circuit.num_parameters))
    observables = [[SparsePauliOp.from_list([("ZZI", 1.0), ("XIX", 0.5)])], [SparsePauliOp("IYY")]]  # (2, 1) x (5,)
    evs = expectation_values(make(EstimatorV2), circuit, observables, values)
    reference = expectation_values(StatevectorEstimator(), circuit, observables, values)
    exact = [[Statevector(circuit.assign_parameters(v)).expectation_value(o[0]).real for v in values] for o in observables]
    assert evs.shape == (2, 5)
    np.testing.assert_allclose(evs, exact, atol=1e-9)
    np.testing.assert_allclose(evs, reference, atol=1e-9)


def test_estimator_with_precision_is_within_five_sigma_and_reproducible(make: Callable[..., Any]) -> None:
    circuit = many_parameters()
    values = np.random.default_rng(5).uniform(0, np.pi, (4, circuit.num_parameters))
    observable = SparsePauliOp.from_list([("ZIZ", 1.0), ("IXI", -0.5)])
    exact = [Statevector(circuit.assign_parameters(v)).expectation_value(observable).real for v in values]
    runs = [make(EstimatorV2, seed=3).run([(circuit, observable, values)], precision=0.02).result()[0] for _ in range(2)]
    assert np.all(np.abs(runs[0].data.evs - exact) < 5 * 0.02)
    np.testing.assert_array_equal(runs[0].data.evs, runs[1].data.evs)
    assert runs[0].metadata["target_precision"] == 0.02 and runs[0].data.stds.shape == (4,)


# ------------------------------------------------------------- cancel, errors


def long_circuit(qubits: int = 20, layers: int = 40) -> QuantumCircuit:
    theta = ParameterVector("t", qubits)
    circuit = QuantumCircuit(qubits)
    for _ in range(layers):
        for i in range(qubits):
            circuit.rx(theta[i], i)
        for i in range(qubits - 1):
            circuit.cx(i, i + 1)
    circuit.measure_all()
    return circuit


def test_cancel_stops_a_running_task_on_the_vqpu(vqpu: Service) -> None:
    circuit = long_circuit()
    values = np.random.default_rng(6).uniform(0, 3, (100, circuit.num_parameters))  # many minutes of work
    sampler = SamplerV2(environ=vqpu.job_env())
    job = sampler.run([(circuit, values)], shots=10)
    deadline = time.monotonic() + 30
    while not job.running():
        assert time.monotonic() < deadline and not job.in_final_state(), job.status()
        time.sleep(0.05)
    started = time.monotonic()
    job.cancel()
    with pytest.raises(TaskFailedError, match=f"^task {job.job_id()} cancelled"):
        job.result()
    assert job.cancelled() and not job.done() and time.monotonic() - started < 5
    client = VQPUClient(vqpu.name, {"QRMI_VQPU_EVENT_FILE": str(vqpu.event_file)})
    assert client.metadata()["running"] == 0, "the worker running the task must have been stopped"
    client.close()
    sampler.close()


def test_cancel_from_another_thread_ends_a_waiting_result(vqpu: Service) -> None:
    circuit = long_circuit()
    values = np.random.default_rng(7).uniform(0, 3, (100, circuit.num_parameters))
    with SamplerV2(environ=vqpu.job_env()) as sampler, ThreadPoolExecutor(1) as pool:
        job = sampler.run([(circuit, values)], shots=10)
        waiting = pool.submit(job.result)
        while not job.running():
            assert not waiting.done(), waiting.exception()
            time.sleep(0.05)
        job.cancel()
        with pytest.raises(TaskFailedError, match="cancelled"):
            waiting.result(timeout=10)
        assert job.cancelled()


# A program as a user writes it: one long task, then it waits in result(). It prints the
# task id once the task runs, so the test knows when to interrupt it.
PROGRAM = """
import sys, time
import numpy as np
from qiskit.circuit import ParameterVector, QuantumCircuit
from snakemake_executor_plugin_quantum.primitives import SamplerV2

theta = ParameterVector("t", 20)
circuit = QuantumCircuit(20)
for _ in range(40):
    for i in range(20):
        circuit.rx(theta[i], i)
    for i in range(19):
        circuit.cx(i, i + 1)
circuit.measure_all()
job = SamplerV2(*sys.argv[1:]).run([(circuit, np.random.default_rng(6).uniform(0, 3, (100, 20)))], shots=10)
while not job.running():
    time.sleep(0.02)
print(job.job_id(), flush=True)
job.result()
"""


def interrupt_waiting_program(tmp_path: Path, sig: signal.Signals, *args: str, env: dict[str, str]) -> tuple[str, subprocess.Popen, float]:
    """(task id, finished program, seconds from the signal to its exit)."""
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    process = subprocess.Popen([sys.executable, str(script), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    task_id = process.stdout.readline().strip()
    assert task_id, process.communicate()[1]
    time.sleep(0.2)  # well inside result()
    sent = time.monotonic()
    process.send_signal(sig)
    process.communicate(timeout=60)
    return task_id, process, time.monotonic() - sent


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_while_result_waits_stops_the_task_on_the_vqpu(vqpu: Service, tmp_path: Path, sig: signal.Signals) -> None:
    task_id, process, seconds = interrupt_waiting_program(tmp_path, sig, env=vqpu.job_env())
    assert process.returncode == -sig, "the program still ends by the signal"
    assert seconds < 5, f"exited {seconds:.1f} s after {sig.name}"  # ~0.3-0.5 s on an idle machine; the task takes minutes
    client = VQPUClient(vqpu.name, {"QRMI_VQPU_EVENT_FILE": str(vqpu.event_file)})
    try:
        assert client.task_status(task_id) is TaskStatus.CANCELLED
    finally:
        client.close()


def test_ctrl_c_stops_an_in_process_simulation_at_once(tmp_path: Path) -> None:
    """Aer holds the GIL for a whole simulation: in the program's own process, Ctrl-C would wait for it."""
    _, process, seconds = interrupt_waiting_program(tmp_path, signal.SIGINT, "aer", env=clean_env())
    assert process.returncode == -signal.SIGINT
    assert seconds < 5, f"exited {seconds:.1f} s after SIGINT"  # ~1 s on an idle machine; the simulation takes minutes
    assert wait_gone_by_cmdline(str(tmp_path / "program.py")), "the simulating worker must be gone too"


def wait_gone_by_cmdline(text: str, timeout: float = 5) -> bool:
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(text in " ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"])):
            return True
        time.sleep(0.05)
    return False


def test_result_stops_the_task_at_the_jobs_time_limit(vqpu: Service) -> None:
    circuit = long_circuit()
    values = np.random.default_rng(8).uniform(0, 3, (100, circuit.num_parameters))
    with SamplerV2(environ=vqpu.job_env(prims_QRMI_JOB_TIMEOUT_SECONDS="1")) as sampler:
        job = sampler.run([(circuit, values)], shots=10)
        with pytest.raises(TaskTimeoutError, match=r"^the task on prims did not finish within 1 s \(the job's time limit prims_QRMI_JOB_TIMEOUT_SECONDS"):
            job.result()
        assert time.monotonic() - job._submitted < 3
        # Stopped, by whichever deadline acted first: the vQPU's own (the client sends the
        # job's limit with the task: Failed) or the primitive's (it stops the task: Cancelled).
        assert job.status() in (TaskStatus.CANCELLED, TaskStatus.FAILED)


def test_sampler_on_a_circuit_without_measurements_fails_at_run(make: Callable[..., Any]) -> None:
    circuit = QuantumCircuit(2)
    circuit.h(0)
    with pytest.raises(PayloadError, match=r"^pub 1: the circuit measures nothing; a sampler returns measured bits only$"):
        make(SamplerV2).run([QuantumCircuit.from_qasm_str(
            'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; measure q -> c;'
        ), circuit])


def test_circuit_too_large_to_simulate_fails_at_run_naming_the_limit(make: Callable[..., Any]) -> None:
    circuit = QuantumCircuit(45)
    circuit.h(range(45))
    circuit.t(range(45))
    circuit.measure_all()
    with pytest.raises(PayloadError, match=r"^pub 0: 45 active qubits exceed the \d+ that fit in"):
        make(SamplerV2).run([circuit])


def test_without_a_job_resource_the_name_is_required() -> None:
    with pytest.raises(ConfigError, match="^not inside a quantum job .* or name one of aer, pulser, vqpu, vqpu_pulser$"):
        SamplerV2(environ=clean_env()).run([QuantumCircuit(1, 1)])


def test_qpu_result_in_ibm_runtime_form_is_returned_as_qiskit_decodes_it() -> None:
    from qiskit_ibm_runtime import RuntimeEncoder

    from snakemake_executor_plugin_quantum.results import sampler_result

    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.measure_all()
    reference = StatevectorSampler(seed=1).run([circuit], shots=50).result()
    document = {"program": "qrmi", "vendor_result": json.loads(json.dumps(reference, cls=RuntimeEncoder))}
    decoded = sampler_result(document)
    assert decoded[0].data.meas.get_counts() == reference[0].data.meas.get_counts()


# ------------------------------------------------------------------ Snakemake

WORKFLOW = r'''
rule bell:
    output: "bell.txt"
    resources: vqpu=1
    run:
        from qiskit import QuantumCircuit
        from snakemake_executor_plugin_quantum.primitives import SamplerV2

        qc = QuantumCircuit(2)
        qc.h(0)
        qc.cx(0, 1)
        qc.measure_all()
        counts = SamplerV2().run([qc], shots=500).result()[0].data.meas.get_counts()
        with open(output[0], "w") as f:
            f.write(" ".join(sorted(counts)))
'''


def test_run_rule_with_a_vqpu_uses_the_job_resource(tmp_path: Path) -> None:
    workdir = write_workflow(tmp_path, WORKFLOW)
    result = snakemake(workdir, "--executor", "quantum", "--cores", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (workdir / "bell.txt").read_text() == "00 11"
