"""Resource configuration (spank_qrmi format) and the QRMI job environment contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from snakemake_executor_plugin_quantum.errors import ConfigError
from snakemake_executor_plugin_quantum.resources import jobenv
from snakemake_executor_plugin_quantum.resources.config import (
    embedded_default,
    load_config,
    parse_config,
)
from snakemake_executor_plugin_quantum.resources.resolve import resolve_resource

SPANK_EXAMPLE = Path(__file__).resolve().parents[1] / "data" / "qrmi_config.example.json"
EXAMPLE = {
    "resources": [
        {"name": "test_heron", "type": "ibm-quantum-system", "environment": {"QRMI_IBM_QS_ENDPOINT": "http://", "QRMI_IBM_QS_IAM_APIKEY": "secret"}},
        {"name": "FRESNEL", "type": "pasqal-cloud", "environment": {"QRMI_PASQAL_CLOUD_PROJECT_ID": ""}},
        {"name": "sim", "type": "qiskit-aer", "lanes": 2, "environment": {"QRMI_AER_SEED": 7}},
    ]
}


def test_spank_qrmi_config_example_loads_unchanged() -> None:
    config = load_config(SPANK_EXAMPLE)
    assert config.names == ["test_heron", "test_eagle", "alt_marrakesh", "FRESNEL"]
    assert config.get("FRESNEL").type == "pasqal-cloud"
    assert config.get("alt_marrakesh").environment["QRMI_IBM_QCS_ENDPOINT"] == "https://quantum.cloud.ibm.com/api/v1"


def test_yaml_and_json_give_the_same_config(tmp_path: Path) -> None:
    import yaml

    (tmp_path / "c.json").write_text(json.dumps(EXAMPLE))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(EXAMPLE))
    assert load_config(tmp_path / "c.json").resources == load_config(tmp_path / "c.yaml").resources


def test_numbers_in_environment_become_strings() -> None:
    config = parse_config(EXAMPLE, "test")
    assert config.get("sim").environment["QRMI_AER_SEED"] == "7"
    assert config.get("sim").lanes == 2


def test_unknown_resource_error_lists_known_names() -> None:
    with pytest.raises(ConfigError, match="known resources: test_heron, FRESNEL, sim"):
        parse_config(EXAMPLE, "test").get("nope")


@pytest.mark.parametrize(
    ("resource", "message"),
    [
        ({"name": "a", "type": "warp-drive"}, "unknown type 'warp-drive'; known types: qiskit-aer"),
        ({"name": "bad-name", "type": "qiskit-aer"}, "name 'bad-name' must be"),
        ({"name": "a", "type": "qiskit-aer", "lanes": 0}, "lanes must be an integer >= 1"),
        ({"name": "a", "type": "qiskit-aer", "environment": {"seed": "1"}}, "must look like QRMI_SOMETHING"),
        ({"name": "a", "type": "qiskit-aer", "slurm": {"nodes": 2}}, "slurm must be a mapping with keys among"),
        ({"name": "a", "type": "qiskit-aer", "colour": "red"}, "unknown keys colour"),
    ],
)
def test_malformed_resource_is_rejected_with_the_reason(resource: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"resources": [resource]}, "test")


def test_duplicate_names_are_rejected() -> None:
    with pytest.raises(ConfigError, match="defined twice"):
        parse_config({"resources": [{"name": "a", "type": "vqpu"}, {"name": "a", "type": "vqpu"}]}, "test")


@pytest.mark.parametrize("text", ["{", "[]", '{"resources": 3}'])
def test_malformed_config_file_is_one_line_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "\n" not in str(info.value)
    assert "bad.json" in str(info.value)


def test_missing_config_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.yaml")


def test_embedded_default_has_local_simulators() -> None:
    config = embedded_default()
    assert {r.type for r in config.resources} == {"qiskit-aer", "pulser-emulator", "vqpu"}


def test_job_resources_read_qrmi_and_legacy_names() -> None:
    env = {"QRMI_JOB_QPU_RESOURCES": "a,b", "QRMI_JOB_QPU_TYPES": "qiskit-aer,vqpu"}
    assert [(r.name, r.type) for r in jobenv.job_resources(env)] == [("a", "qiskit-aer"), ("b", "vqpu")]
    legacy = {"SLURM_JOB_QPU_RESOURCES": "x", "SLURM_JOB_QPU_TYPES": "pasqal-cloud"}
    assert [(r.name, r.type) for r in jobenv.job_resources(legacy)] == [("x", "pasqal-cloud")]


def test_job_resources_honour_the_list_delimiter() -> None:
    env = {"QRMI_JOB_QPU_RESOURCES": "a;b", "QRMI_JOB_QPU_TYPES": "vqpu;vqpu", "QRMI_LIST_DELIMITER": ";"}
    assert [r.name for r in jobenv.job_resources(env)] == ["a", "b"]


def test_mismatched_resource_and_type_lists_fail() -> None:
    with pytest.raises(ConfigError, match="lists 2 resources but QRMI_JOB_QPU_TYPES lists 1"):
        jobenv.job_resources({"QRMI_JOB_QPU_RESOURCES": "a,b", "QRMI_JOB_QPU_TYPES": "vqpu"})


def test_user_variables_override_the_config() -> None:
    settings = jobenv.resource_settings("sim", {"sim_QRMI_AER_SEED": "99", "other_QRMI_AER_SEED": "1"}, {"QRMI_AER_SEED": "7", "QRMI_AER_METHOD": "statevector"})
    assert settings == {"QRMI_AER_SEED": "99", "QRMI_AER_METHOD": "statevector"}


def test_build_job_env_matches_spank_qrmi_contract() -> None:
    config = parse_config(EXAMPLE, "test")
    env = jobenv.build_job_env(
        [config.get("test_heron"), config.get("sim")],
        tokens={"test_heron": "tok-1"},
        user_environ={"sim_QRMI_AER_SEED": "11"},
        timeout_seconds=3600,
    )
    assert env["QRMI_JOB_QPU_RESOURCES"] == "test_heron,sim" == env["SLURM_JOB_QPU_RESOURCES"]
    assert env["QRMI_JOB_QPU_TYPES"] == "ibm-quantum-system,qiskit-aer" == env["SLURM_JOB_QPU_TYPES"]
    assert env["test_heron_QRMI_JOB_ACQUISITION_TOKEN"] == "tok-1"
    assert env["test_heron_QRMI_IBM_QS_ENDPOINT"] == "http://"
    assert env["sim_QRMI_AER_SEED"] == "11"  # the user's value wins, as with spank_qrmi
    assert env["sim_QRMI_JOB_TIMEOUT_SECONDS"] == "3600"
    # and it reads back the same way qrun will read it
    assert [r.name for r in jobenv.job_resources(env)] == ["test_heron", "sim"]


def test_resolve_defaults_to_the_jobs_only_resource() -> None:
    env = {"QRMI_JOB_QPU_RESOURCES": "sim", "QRMI_JOB_QPU_TYPES": "qiskit-aer", "sim_QRMI_AER_SEED": "5"}
    resolved = resolve_resource(None, None, env)
    assert (resolved.name, resolved.type, resolved.settings) == ("sim", "qiskit-aer", {"QRMI_AER_SEED": "5"})


def test_resolve_rejects_a_resource_the_job_was_not_given() -> None:
    env = {"QRMI_JOB_QPU_RESOURCES": "a,b", "QRMI_JOB_QPU_TYPES": "vqpu,vqpu"}
    with pytest.raises(ConfigError, match="not one of this job's resources: a, b"):
        resolve_resource("c", None, env)
    with pytest.raises(ConfigError, match="this job has 2 resources"):
        resolve_resource(None, None, env)
