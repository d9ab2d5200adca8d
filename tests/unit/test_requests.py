"""Reading a rule's resources: what a job asks for, and each mistake as one line naming the rule."""

from __future__ import annotations

import pytest

from snakemake_executor_plugin_quantum.errors import ConfigError
from snakemake_executor_plugin_quantum.resources.config import embedded_default, parse_config
from snakemake_executor_plugin_quantum.resources.requests import RequestReader

CONFIG = parse_config({"resources": [
    {"name": "aer", "type": "qiskit-aer"},
    {"name": "one", "type": "vqpu", "environment": {"QRMI_VQPU_LANES": "1"}},
    {"name": "ibm", "type": "ibm-quantum-compute-service", "lanes": 2},
    {"name": "device", "type": "ibm-quantum-system"},
]}, "test config")


def read(config=CONFIG, **resources):
    return RequestReader(config).read("r", resources)


def test_vqpu_one_uses_the_embedded_aer_vqpu():
    request = read(embedded_default(), vqpu=1)
    assert [r.name for r in request.resources] == ["vqpu"] and request.kind == "vqpu"


@pytest.mark.parametrize(("resources", "message"), [
    ({"vqpu": 2, "vqpu_name": "one"}, "rule r: vqpu=2, but a job sends its tasks to one vQPU; use vqpu=1"),
    ({"qpu": 2, "qpu_name": "aer"}, "rule r: qpu=2 but resource 'aer' has only 1 lane (it runs in the job's own process); use qpu=1"),
    ({"qpu": 2, "qpu_name": "one"}, "rule r: qpu=2 but resource 'one' has only 1 lane (QRMI_VQPU_LANES); use qpu=1"),
    ({"qpu": 3, "qpu_name": "ibm"}, "rule r: qpu=3 but resource 'ibm' has only 2 lanes; use qpu=2"),
])
def test_more_lanes_than_a_resource_has_is_one_line(resources: dict, message: str):
    with pytest.raises(ConfigError) as error:
        read(**resources)
    assert str(error.value).startswith(message)


def test_qpu_lanes_on_hardware_without_a_lane_count_are_taken_as_asked():
    assert read(qpu=4, qpu_name="device").lanes == 4


def test_an_undetermined_value_defers_the_whole_request():
    from snakemake.common.tbdstring import TBDString

    request = read(qpu=TBDString(), qpu_name="aer")
    assert request.undetermined == ("qpu",) and not request.resources
