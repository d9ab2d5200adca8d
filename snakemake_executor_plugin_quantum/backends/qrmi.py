"""Real QPUs through the ``qrmi`` package (IBM, Pasqal, IQM, Alice & Bob, OQTOPUS).

The adapter turns our contract into qrmi calls: settings become the ``from_config``
mapping (the same ``QRMI_*`` keys spank_qrmi exports), payloads become ``qrmi.Payload``
objects carrying the user's JSON unchanged, statuses map one to one. Payloads are
validated before they are sent: a malformed one must not cost queue time on a QPU.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import (
    ConfigError,
    MissingExtraError,
    PayloadError,
    ResourceUnavailableError,
    TaskFailedError,
)
from ..payloads import results
from .base import QuantumResource, ResourceStatus, TaskStatus

# Our type names (QRMI's, with the legacy aliases it still accepts) -> qrmi.ResourceType.
RESOURCE_TYPES = {
    "ibm-quantum-system": "IBMQuantumSystem",
    "direct-access": "IBMQuantumSystem",
    "ibm-quantum-compute-service": "IBMQuantumComputeService",
    "qiskit-runtime-service": "IBMQiskitRuntimeService",
    "pasqal-cloud": "PasqalCloud",
    "pasqal-local": "PasqalLocal",
    "alice-bob-felis": "AliceBobFelis",
    "iqm-server": "IQMServer",
    "oqtopus": "OQTOPUS",
}
STATUSES = {s.value: s for s in TaskStatus}


def _qrmi() -> Any:
    try:
        import qrmi
    except ImportError:
        raise MissingExtraError("QRMI resource types (IBM, Pasqal, ...)", "qrmi") from None
    return qrmi


class QRMIResource(QuantumResource):
    def __init__(self, resource_id: str, resource_type: str, settings: dict[str, str], inner: Any = None):
        super().__init__(resource_id, resource_type)
        if resource_type not in RESOURCE_TYPES:
            raise ConfigError(f"resource '{resource_id}': {resource_type!r} is not a QRMI type")
        self.qrmi = _qrmi()
        # Everything, job keys included: qrmi reads QRMI_JOB_TIMEOUT_SECONDS (required by
        # IBM task_start) and QRMI_JOB_ACQUISITION_TOKEN from the same mapping.
        self.config = dict(settings)
        self._inner = inner if inner is not None else self._construct()

    def _construct(self) -> Any:
        kind = getattr(self.qrmi.ResourceType, RESOURCE_TYPES[self.resource_type])
        try:
            return self.qrmi.QuantumResource.from_config(self.resource_id, kind, self.config)
        except self.qrmi.ConfigError as exc:
            # qrmi names the missing key; the values (API keys) never appear in the message.
            raise ConfigError(f"resource '{self.resource_id}' ({self.resource_type}): {exc}") from None

    def _call(self, what: str, method: str, *args: Any) -> Any:
        try:
            return getattr(self._inner, method)(*args)
        except self.qrmi.QrmiError as exc:
            raise ResourceUnavailableError(f"{self.resource_id}: {what} failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None

    # ---------------------------------------------------------------- contract

    def status(self) -> ResourceStatus:
        raw = self._call("status", "status")
        text = str(getattr(raw, "status", raw)).split(".")[-1].lower()
        return {"online": ResourceStatus.ONLINE, "paused": ResourceStatus.PAUSED}.get(text, ResourceStatus.OFFLINE)

    def acquire(self) -> str:
        return str(self._call("acquire", "acquire"))

    def release(self, token: str) -> None:
        self._call("release", "release", token)

    def task_start(self, payload: dict[str, Any]) -> str:
        return str(self._call("task start", "task_start", self.to_qrmi_payload(payload)))

    def task_stop(self, task_id: str) -> None:
        self._call("task stop", "task_stop", task_id)

    def task_status(self, task_id: str) -> TaskStatus:
        raw = self._call("task status", "task_status", task_id)
        return STATUSES[str(raw).split(".")[-1]]

    def task_result(self, task_id: str) -> dict[str, Any]:
        status = self.task_status(task_id)
        if status is not TaskStatus.COMPLETED:
            raise TaskFailedError(f"task {task_id} on {self.resource_id} is {status.value}: {self._last_log_line(task_id)}")
        raw = self._call("task result", "task_result", task_id)
        return self.to_document(task_id, getattr(raw, "value", raw))

    def task_logs(self, task_id: str) -> str:
        return str(self._call("task logs", "task_logs", task_id))

    def target(self) -> dict[str, Any]:
        raw = self._call("target", "target")
        value = getattr(raw, "value", raw)
        return json.loads(value) if isinstance(value, str) else dict(value)

    def metadata(self) -> dict[str, Any]:
        return dict(self._call("metadata", "metadata"))

    # ---------------------------------------------------------------- mapping

    def to_qrmi_payload(self, payload: dict[str, Any]) -> Any:
        """The user's payload as a qrmi.Payload, after validating it locally."""
        from ..payloads.parse import parse_payload

        if not isinstance(payload, dict):
            raise PayloadError("payload must be a JSON object")
        Payload = self.qrmi.Payload
        if "program_id" in payload:
            parse_payload(payload)
            return Payload.QiskitPrimitive(input=json.dumps(payload["parameters"]), program_id=payload["program_id"])
        if "sequence" in payload:
            parse_payload(payload)
            sequence = payload["sequence"]
            text = sequence if isinstance(sequence, str) else json.dumps(sequence)
            return Payload.PasqalCloud(sequence=text, job_runs=payload["job_runs"])
        if "human_qir" in payload:
            return Payload.AliceBobFelis(human_qir=payload["human_qir"], input_params=json.dumps(payload.get("input_params", {})))
        if "iqmjson" in payload:
            return Payload.IQMServer(
                iqmjson=payload["iqmjson"], job_type=payload.get("job_type", "circuit"),
                use_timeslot=bool(payload.get("use_timeslot", False)), tag=payload.get("tag"),
            )
        if "job_spec" in payload:
            spec = payload["job_spec"]
            return Payload.Oqtopus(job_spec=spec if isinstance(spec, str) else json.dumps(spec))
        raise PayloadError("payload matches no QRMI payload kind (program_id, sequence, human_qir, iqmjson or job_spec)")

    def to_document(self, task_id: str, value: Any) -> dict[str, Any]:
        """Vendor results keep their own shape under ``vendor_result``."""
        try:
            vendor = json.loads(value) if isinstance(value, str) else value
        except ValueError:
            vendor = value
        return results.document(
            "qrmi",
            (self.resource_id, self.resource_type),
            {"vendor_result": vendor},
            {"engine": "qrmi", "vendor_type": self.resource_type},
            task_id=task_id,
        )

    def _last_log_line(self, task_id: str) -> str:
        try:
            lines = [line for line in self.task_logs(task_id).splitlines() if line.strip()]
        except ResourceUnavailableError:
            return "no logs"
        return lines[-1][:300] if lines else "no logs"
