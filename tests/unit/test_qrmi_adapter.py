"""The adapter over the real qrmi package, offline.

Constructing a qrmi resource from config makes no network call, so that part is real.
What would reach IBM or Pasqal (acquire, task_*) goes to a stand-in recording the calls:
the one place a mock is allowed, since the cloud cannot exist here.
"""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import pytest

qrmi = pytest.importorskip("qrmi")

from snakemake_executor_plugin_quantum.backends import open_resource  # noqa: E402
from snakemake_executor_plugin_quantum.backends.base import TaskStatus  # noqa: E402
from snakemake_executor_plugin_quantum.backends.qrmi import RESOURCE_TYPES, QRMIResource  # noqa: E402
from snakemake_executor_plugin_quantum.errors import (  # noqa: E402
    ConfigError,
    MissingExtraError,
    PayloadError,
    TaskFailedError,
)
from snakemake_executor_plugin_quantum.resources import jobenv  # noqa: E402

IBM_QS = {
    "QRMI_IBM_QS_ENDPOINT": "http://127.0.0.1:1",
    "QRMI_IBM_QS_IAM_ENDPOINT": "http://127.0.0.1:1",
    "QRMI_IBM_QS_IAM_APIKEY": "planted-api-key-123",
    "QRMI_IBM_QS_SERVICE_CRN": "crn:v1:test",
    "QRMI_IBM_QS_AWS_ACCESS_KEY_ID": "a",
    "QRMI_IBM_QS_AWS_SECRET_ACCESS_KEY": "planted-secret-456",
    "QRMI_IBM_QS_S3_ENDPOINT": "http://127.0.0.1:1",
    "QRMI_IBM_QS_S3_BUCKET": "b",
    "QRMI_IBM_QS_S3_REGION": "r",
}
BELL = 'OPENQASM 3.0; include "stdgates.inc"; qubit[2] q; bit[2] c; h q[0]; cx q[0], q[1]; c = measure q;'


class CloudStandIn:
    """Records what the adapter would send to the vendor; answers like qrmi does."""

    def __init__(self, statuses: list[object] | None = None):
        self.calls: list[tuple[str, tuple]] = []
        self.statuses = statuses or [qrmi.TaskStatus.Completed]

    def __getattr__(self, name: str):  # noqa: ANN204
        def call(*args: object) -> object:
            self.calls.append((name, args))
            if name == "acquire":
                return "vendor-token"
            if name == "task_start":
                return "vendor-task-1"
            if name == "task_status":
                return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            if name == "task_result":
                return SimpleNamespace(value=json.dumps({"results": [{"data": "..."}]}))
            if name == "task_logs":
                return "queued\nfailed: calibration in progress"
            if name == "target":
                return SimpleNamespace(value=json.dumps({"num_qubits": 133}))
            if name == "metadata":
                return {"backend": "ibm_test"}
            return None

        return call


def test_every_qrmi_type_name_maps_to_a_real_qrmi_resource_type() -> None:
    for name, member in RESOURCE_TYPES.items():
        assert hasattr(qrmi.ResourceType, member), name


def test_settings_come_from_config_with_user_overrides_and_build_a_real_resource() -> None:
    settings = jobenv.resource_settings("heron", {"heron_QRMI_IBM_QS_S3_REGION": "eu-de", "heron_QRMI_JOB_TIMEOUT_SECONDS": "60"}, IBM_QS)
    resource = open_resource("heron", "ibm-quantum-system", settings)
    assert isinstance(resource, QRMIResource)
    assert resource.config["QRMI_IBM_QS_S3_REGION"] == "eu-de"
    assert resource.config["QRMI_JOB_TIMEOUT_SECONDS"] == "60"  # qrmi's task_start needs it
    assert resource._inner.resource_id() == "heron"
    assert str(resource._inner.resource_type()).endswith("IBMQuantumSystem")


def test_legacy_type_names_are_accepted() -> None:
    resource = QRMIResource("heron", "direct-access", IBM_QS)
    assert str(resource._inner.resource_type()).endswith("IBMQuantumSystem")


def test_a_missing_setting_names_the_key_but_never_a_value() -> None:
    settings = {k: v for k, v in IBM_QS.items() if k != "QRMI_IBM_QS_SERVICE_CRN"}
    with pytest.raises(ConfigError) as info:
        QRMIResource("heron", "ibm-quantum-system", settings)
    message = str(info.value)
    assert "QRMI_IBM_QS_SERVICE_CRN" in message and "heron" in message
    assert "planted" not in message


def test_sampler_payload_is_sent_unchanged_as_a_qiskit_primitive() -> None:
    cloud = CloudStandIn()
    resource = QRMIResource("heron", "ibm-quantum-system", IBM_QS, inner=cloud)
    parameters = {"pubs": [[BELL, None, 100]], "version": 2, "shots": 100, "options": {"dynamical_decoupling": {"enable": True}}}
    task = resource.task_start({"program_id": "sampler", "parameters": parameters})
    assert task == "vendor-task-1"
    (name, (payload,)), = cloud.calls
    assert name == "task_start" and isinstance(payload, qrmi.Payload.QiskitPrimitive)
    assert payload.program_id == "sampler" and json.loads(payload.input) == parameters


def test_pulser_sequence_as_object_or_string_becomes_a_pasqal_payload() -> None:
    cloud = CloudStandIn()
    resource = QRMIResource("fresnel", "pasqal-cloud", {"QRMI_PASQAL_CLOUD_PROJECT_ID": "p", "QRMI_PASQAL_CLOUD_AUTH_TOKEN": "t"}, inner=cloud)
    sequence = {"version": "1", "name": "seq"}
    resource.task_start({"sequence": sequence, "job_runs": 50})
    resource.task_start({"sequence": json.dumps(sequence), "job_runs": 50})
    sent = [args[0] for name, args in cloud.calls if name == "task_start"]
    assert all(isinstance(p, qrmi.Payload.PasqalCloud) for p in sent)
    assert [json.loads(p.sequence) for p in sent] == [sequence, sequence] and {p.job_runs for p in sent} == {50}


def test_other_vendor_payloads_map_to_their_qrmi_kinds() -> None:
    resource = QRMIResource("x", "iqm-server", {}, inner=CloudStandIn())
    assert isinstance(resource.to_qrmi_payload({"iqmjson": "{}", "job_type": "circuit"}), qrmi.Payload.IQMServer)
    assert isinstance(resource.to_qrmi_payload({"human_qir": "qir", "input_params": {"nbShots": 10}}), qrmi.Payload.AliceBobFelis)
    assert isinstance(resource.to_qrmi_payload({"job_spec": {"program": ["OPENQASM 3;"]}}), qrmi.Payload.Oqtopus)


@pytest.mark.parametrize(
    "payload",
    [{"program_id": "sampler", "parameters": {"pubs": []}}, {"sequence": {}, "job_runs": 0}, {"what": 1}, [1]],
)
def test_bad_payloads_fail_before_anything_is_sent(payload: object) -> None:
    cloud = CloudStandIn()
    resource = QRMIResource("heron", "ibm-quantum-system", IBM_QS, inner=cloud)
    with pytest.raises(PayloadError):
        resource.task_start(payload)
    assert cloud.calls == []


def test_task_statuses_map_one_to_one() -> None:
    expected = {"Queued": TaskStatus.QUEUED, "Running": TaskStatus.RUNNING, "Completed": TaskStatus.COMPLETED,
                "Failed": TaskStatus.FAILED, "Cancelled": TaskStatus.CANCELLED}
    for name, ours in expected.items():
        resource = QRMIResource("heron", "ibm-quantum-system", IBM_QS, inner=CloudStandIn([getattr(qrmi.TaskStatus, name)]))
        assert resource.task_status("t") is ours


def test_results_keep_the_vendor_document_and_failures_say_why() -> None:
    done = QRMIResource("heron", "ibm-quantum-system", IBM_QS, inner=CloudStandIn())
    document = done.task_result("t")
    assert document["program"] == "qrmi" and document["vendor_result"] == {"results": [{"data": "..."}]}
    assert document["resource"] == {"name": "heron", "type": "ibm-quantum-system"}
    failed = QRMIResource("heron", "ibm-quantum-system", IBM_QS, inner=CloudStandIn([qrmi.TaskStatus.Failed]))
    with pytest.raises(TaskFailedError, match="is Failed: failed: calibration in progress"):
        failed.task_result("t")


def test_acquire_release_target_metadata_go_through() -> None:
    cloud = CloudStandIn()
    resource = QRMIResource("heron", "ibm-quantum-system", IBM_QS, inner=cloud)
    token = resource.acquire()
    resource.release(token)
    assert resource.target() == {"num_qubits": 133} and resource.metadata() == {"backend": "ibm_test"}
    assert [name for name, _ in cloud.calls] == ["acquire", "release", "target", "metadata"]
    assert cloud.calls[1][1] == ("vendor-token",)


def test_without_the_qrmi_extra_the_error_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "qrmi", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'snakemake-executor-plugin-quantum\[qrmi\]'"):
        open_resource("heron", "ibm-quantum-system", IBM_QS)
