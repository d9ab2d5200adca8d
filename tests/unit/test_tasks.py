"""The qrun command line, and how long a task may run: its deadline and where that comes from."""

from __future__ import annotations

from pathlib import Path

import pytest

from snakemake_executor_plugin_quantum.errors import ConfigError, UsageError
from snakemake_executor_plugin_quantum.tasks import DEFAULT_TASK_TIMEOUT, parse, task_deadline


def test_timeout_flag_wins_over_the_job_time_limit() -> None:
    assert task_deadline(5.0, {"QRMI_JOB_TIMEOUT_SECONDS": "60"}, "qiskit-aer").seconds == 5.0


def test_job_time_limit_wins_over_the_task_timeout_setting() -> None:
    deadline = task_deadline(None, {"QRMI_JOB_TIMEOUT_SECONDS": "60", "QRMI_TASK_TIMEOUT": "7"}, "vqpu")
    assert deadline.seconds == 60
    assert deadline.expired("sim") == (
        "the task on sim did not finish within 60 s (the job's time limit sim_QRMI_JOB_TIMEOUT_SECONDS; "
        "raise the rule's runtime) and was stopped"
    )


@pytest.mark.parametrize("resource_type", ["qiskit-aer", "pulser-emulator", "vqpu"])
def test_local_simulators_outside_a_job_default_to_an_hour(resource_type: str) -> None:
    assert task_deadline(None, {}, resource_type).seconds == DEFAULT_TASK_TIMEOUT == 3600


def test_task_timeout_setting_sets_the_default() -> None:
    assert task_deadline(None, {"QRMI_TASK_TIMEOUT": "2.5"}, "qiskit-aer").seconds == 2.5


def test_qrmi_resources_outside_a_job_have_no_default_deadline() -> None:
    assert task_deadline(None, {}, "ibm-quantum-system").seconds is None


@pytest.mark.parametrize("value", ["soon", "0", "-1"])
def test_bad_task_timeout_setting_is_a_config_error(value: str) -> None:
    with pytest.raises(ConfigError, match=f"QRMI_TASK_TIMEOUT='{value}' must"):
        task_deadline(None, {"QRMI_TASK_TIMEOUT": value}, "qiskit-aer")


@pytest.mark.parametrize("output_exists", [False, True], ids=["new-output", "existing-output"])
def test_input_then_output_without_o_says_what_was_meant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output_exists: bool) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ghz5.qasm").write_text("OPENQASM 3.0;")
    if output_exists:
        (tmp_path / "out.json").write_text("{}")
    with pytest.raises(UsageError) as info:
        parse(["ghz5.qasm", "out.json"])
    assert str(info.value) == "'ghz5.qasm' is a file, not a resource name; to write the result to out.json use: qrun ghz5.qasm -o out.json"


def test_resource_then_input_is_the_qrmi_runner_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ghz5.qasm").write_text("OPENQASM 3.0;")
    (tmp_path / "aer").write_text("a file that happens to share the resource's name")
    invocation = parse(["aer", "ghz5.qasm"])
    assert (invocation.resource_name, invocation.input_path, invocation.output) == ("aer", "ghz5.qasm", None)
