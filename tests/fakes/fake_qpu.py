"""A QPU behind the resource contract whose acquire can fail, hang or be slow.

Used as ``type: python:fakes.fake_qpu:FakeQPU`` (tests/ on PYTHONPATH). Settings:
QRMI_FAKE_ACQUIRE = ok | fail | hang; QRMI_FAKE_DELAY = seconds acquire takes when ok.
Tasks complete at once with a fixed Bell-like result, so a job can succeed too.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from snakemake_executor_plugin_quantum.backends.base import QuantumResource, TaskStatus
from snakemake_executor_plugin_quantum.errors import ResourceUnavailableError
from snakemake_executor_plugin_quantum.payloads import results


class FakeQPU(QuantumResource):
    def __init__(self, resource_id: str, settings: dict[str, str]):
        super().__init__(resource_id, "python:fakes.fake_qpu:FakeQPU")
        self.mode = settings.get("QRMI_FAKE_ACQUIRE", "ok")
        self.delay = float(settings.get("QRMI_FAKE_DELAY", "0"))
        self.tasks: dict[str, TaskStatus] = {}

    def acquire(self) -> str:
        if self.mode == "fail":
            raise ResourceUnavailableError(f"{self.resource_id}: acquire refused: the device is in maintenance")
        if self.mode == "hang":
            threading.Event().wait()  # never returns
        time.sleep(self.delay)
        return uuid.uuid4().hex

    def release(self, token: str) -> None:
        pass

    def task_start(self, payload: dict[str, Any]) -> str:
        task_id = uuid.uuid4().hex
        self.tasks[task_id] = TaskStatus.COMPLETED
        return task_id

    def task_stop(self, task_id: str) -> None:
        self.tasks[task_id] = TaskStatus.CANCELLED

    def task_status(self, task_id: str) -> TaskStatus:
        return self.tasks[task_id]

    def task_result(self, task_id: str) -> dict[str, Any]:
        body = {"shots": 4, "pubs": [{"shape": [], "shots": 4, "parameter_sets": 1, "registers": {"c": {"num_bits": 2, "counts": {"00": 2, "11": 2}}}}]}
        return results.document("sampler", (self.resource_id, self.resource_type), body, {"engine": "fake"}, task_id=task_id)

    def task_logs(self, task_id: str) -> str:
        return ""

    def target(self) -> dict[str, Any]:
        return {"num_qubits": 2}

    def metadata(self) -> dict[str, Any]:
        return {"mode": self.mode}
