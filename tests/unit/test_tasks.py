"""How long a task may run: the deadline every task gets, and where it comes from."""

from __future__ import annotations

import pytest

from snakemake_executor_plugin_quantum.errors import ConfigError
from snakemake_executor_plugin_quantum.tasks import DEFAULT_TASK_TIMEOUT, task_deadline


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
