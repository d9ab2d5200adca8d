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
        ({"name": "a", "type": "qiskit-aer", "slurm": ["cpu"]}, "slurm must be a mapping with keys among"),
        ({"name": "a", "type": "qiskit-aer", "slurm": {"nodes": 2}}, "slurm: unknown key 'nodes'; keys are partition, account"),
        ({"name": "a", "type": "qiskit-aer", "colour": "red"}, "unknown key 'colour'; keys are name, type, environment, lanes, slurm"),
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


# ------------------------------------------------------------ the commonest slips

@pytest.mark.parametrize(
    ("resource", "message"),
    [
        ({"name": "a", "type": "vqpu", "enviroment": {}}, "unknown key 'enviroment' (did you mean 'environment'?)"),
        ({"name": "a", "type": "vqpu", "lane": 2}, "unknown key 'lane' (did you mean 'lanes'?)"),
        ({"name": "a", "type": "vqpu", "slurm": {"partiton": "cpu"}}, "slurm: unknown key 'partiton' (did you mean 'partition'?)"),
    ],
)
def test_unknown_config_key_suggests_the_closest_known_one(resource: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"resources": [resource]}, "qrmi_config.yaml")
    assert str(info.value).startswith(f"qrmi_config.yaml: resource #1 'a': {message}")


def test_missing_resources_list_suggests_the_key() -> None:
    with pytest.raises(ConfigError, match=r"\(found 'resource': did you mean 'resources'\?\)$"):
        parse_config({"resource": [{"name": "a", "type": "vqpu"}]}, "qrmi_config.yaml")


@pytest.mark.parametrize(
    ("rtype", "key", "value", "allowed"),
    [
        ("vqpu", "QRMI_VQPU_ENGINE", "qiskit", "must be one of aer, pulser"),
        ("vqpu", "QRMI_VQPU_LANES", "two", "must be an integer >= 1"),
        ("vqpu", "QRMI_VQPU_LANES", 0, "must be an integer >= 1"),
        ("vqpu", "QRMI_VQPU_PORT", 70000, "must be an integer from 0 to 65535"),
        ("vqpu", "QRMI_VQPU_IDLE_TIMEOUT", "later", "must be a number of seconds >= 0"),
        ("qiskit-aer", "QRMI_AER_METHOD", "mps", "must be one of automatic, statevector, density_matrix, matrix_product_state, stabilizer"),
        ("qiskit-aer", "QRMI_AER_DEVICE", "TPU", "must be one of CPU, GPU"),
        ("qiskit-aer", "QRMI_AER_SEED", -1, "must be an integer >= 0"),
        ("qiskit-aer", "QRMI_TASK_TIMEOUT", 0, "must be a number of seconds > 0"),
        ("pulser-emulator", "QRMI_PULSER_MAX_ATOMS", 2.5, "must be an integer >= 0"),
    ],
)
def test_bad_value_of_our_own_setting_fails_at_load_naming_resource_key_and_allowed_values(rtype: str, key: str, value: object, allowed: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"resources": [{"name": "sim", "type": rtype, "environment": {key: value}}]}, "qrmi_config.yaml")
    assert str(info.value) == f"qrmi_config.yaml: resource #1 'sim': environment {key}={str(value)!r} {allowed}"


def test_good_values_of_our_own_settings_load() -> None:
    environment = {"QRMI_VQPU_ENGINE": "pulser", "QRMI_VQPU_LANES": 2, "QRMI_AER_DEVICE": "cpu", "QRMI_VQPU_WALLTIME": 0.5, "QRMI_AER_SEED": ""}
    assert parse_config({"resources": [{"name": "sim", "type": "vqpu", "environment": environment}]}, "t").get("sim").environment["QRMI_VQPU_LANES"] == "2"


def test_vendor_settings_of_qrmi_types_are_not_checked() -> None:
    config = parse_config({"resources": [{"name": "q", "type": "pasqal-cloud", "environment": {"QRMI_VQPU_LANES": "two"}}]}, "t")
    assert config.get("q").environment == {"QRMI_VQPU_LANES": "two"}


def test_every_qrmi_setting_the_package_reads_is_in_the_one_table() -> None:
    """resources/keys.py is the one list of our settings: a key read anywhere else must be in it."""
    import re

    import snakemake_executor_plugin_quantum as package
    from snakemake_executor_plugin_quantum.resources import keys

    root = Path(package.__file__).parent
    contract = {"QRMI_JOB_QPU_RESOURCES", "QRMI_JOB_QPU_TYPES", "QRMI_LIST_DELIMITER"}  # the job's, not a resource's
    vendor = {root / "backends" / "qrmi.py", root / "resources" / "config.py"}  # QRMI's own keys; __all__ names
    read = {
        (key, str(path.relative_to(root)))
        for path in root.rglob("*.py") if path not in vendor
        for key in re.findall(r"[\"'](QRMI_[A-Z0-9_]+)[\"']", path.read_text())
    }
    missing = sorted((key, where) for key, where in read if key not in keys.KEYS and key not in contract)
    assert not missing, f"add these to resources/keys.py: {missing}"


def test_allowed_values_are_those_of_the_modules_that_read_them() -> None:
    from snakemake_executor_plugin_quantum.engines.aer_options import METHODS
    from snakemake_executor_plugin_quantum.resources import keys
    from snakemake_executor_plugin_quantum.service.build import ENGINES

    assert keys.AER_METHODS == METHODS
    assert keys.VQPU_ENGINES == ENGINES


def test_outside_a_job_without_a_resource_name_says_how_to_run_in_a_job() -> None:
    with pytest.raises(ConfigError) as info:
        resolve_resource(None, None, {})
    assert str(info.value) == (
        "not inside a quantum job (QRMI_JOB_QPU_RESOURCES is not set) and no resource named: run it in a rule with "
        "resources: vqpu=1 or qpu=1 under snakemake --executor quantum, or name one of aer, pulser, vqpu, vqpu_pulser"
    )


def test_outside_a_job_a_running_vqpu_is_found_by_its_event_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from snakemake_executor_plugin_quantum.resources.events import (
        VQPUEvent,
        default_event_dir,
        event_path,
        write_event,
    )

    monkeypatch.setenv("HOME", str(tmp_path))
    path = event_path(default_event_dir(), "sim")
    write_event(path, VQPUEvent("sim", "127.0.0.1", 1, os.getpid(), "t" * 32, "aer", None, 0.0))
    resolved = resolve_resource("sim", None, {"sim_QRMI_VQPU_WAIT_SECONDS": "5"})
    assert (resolved.name, resolved.type) == ("sim", "vqpu")
    assert resolved.settings == {"QRMI_VQPU_EVENT_FILE": path, "QRMI_VQPU_WAIT_SECONDS": "5"}


def test_outside_a_job_a_stopped_vqpu_is_named_as_gone(tmp_path: Path) -> None:
    from snakemake_executor_plugin_quantum.resources.events import VQPUEvent, write_event

    path = tmp_path / "sim.json"
    write_event(str(path), VQPUEvent("sim", "127.0.0.1", 1, 2**22 + 12345, "t" * 32, "aer", None, 0.0))
    with pytest.raises(ConfigError, match=rf"unknown resource 'sim' in the embedded default config; .*; and the vQPU named 'sim' is gone \(process 4206649 of {path} has exited\)$"):
        resolve_resource("sim", None, {"sim_QRMI_VQPU_EVENT_FILE": str(path)})
