"""The plan behind qplan: summing jobs up and showing them as text, JSON and DOT."""

from __future__ import annotations

import json

from snakemake_executor_plugin_quantum.plan import (
    COLOURS,
    KINDS,
    PlannedJob,
    build_plan,
    format_json,
    format_text,
    job_dot,
    rule_dot,
)
from snakemake_executor_plugin_quantum.resources.config import parse_config
from snakemake_executor_plugin_quantum.resources.requests import RequestReader

CONFIG = parse_config(
    {
        "resources": [
            {"name": "aer", "type": "qiskit-aer"},
            {"name": "sim", "type": "vqpu", "environment": {"QRMI_VQPU_ENGINE": "pulser"}},
            {"name": "ext", "type": "vqpu", "environment": {"QRMI_VQPU_EVENT_FILE": "/shared/ext.json"}},
        ]
    },
    source="test config",
)
READER = RequestReader(CONFIG)


def job(jobid: int, rule: str, resources: dict | None = None, shots: int | None = None, deps: tuple[int, ...] = (), **wildcards: str) -> PlannedJob:
    params = {} if shots is None else {"shots": shots}
    request = READER.read(rule, resources or {}, params)
    return PlannedJob(jobid, rule, request, tuple(sorted(wildcards.items())), deps)


HYBRID = [
    job(0, "all", deps=(3, 4)),
    job(1, "prepare", i="0"),
    job(2, "sample", {"vqpu": 1, "vqpu_name": "sim"}, shots=1000, deps=(1,), i="0"),
    job(5, "sample", {"vqpu": 1, "vqpu_name": "sim"}, shots=500, deps=(1,), i="1"),
    job(3, "post", {"gpu": 2}, deps=(2, 5)),
    job(4, "hardware", {"qpu": 1, "qpu_name": "aer"}, deps=(3,)),
    job(6, "check", {"vqpu": 1, "vqpu_name": "ext"}, shots=64),
]


def test_jobs_are_counted_per_stage_kind() -> None:
    stages = build_plan(HYBRID, {}).rules_by_kind()
    assert {kind: sum(rules.values()) for kind, rules in stages.items()} == {"cpu": 2, "gpu": 1, "qpu": 1, "vqpu": 3}
    assert stages["vqpu"] == {"sample": 2, "check": 1}


def test_shots_are_summed_per_resource_and_missing_shots_counted() -> None:
    uses = {u.name: u for u in build_plan(HYBRID, {}).resources}
    assert (uses["sim"].jobs, uses["sim"].shots, uses["sim"].jobs_without_shots) == (2, 1500, 0)
    assert (uses["aer"].type, uses["aer"].shots, uses["aer"].jobs_without_shots) == ("qiskit-aer", 0, 1)
    assert "shots unknown (1 job without params.shots)" in format_text(build_plan(HYBRID, {}))


def test_vqpus_show_engine_and_whether_they_are_external() -> None:
    vqpus = {v.name: v for v in build_plan(HYBRID, {}).vqpus}
    assert (vqpus["sim"].engine, vqpus["sim"].external, vqpus["sim"].jobs) == ("pulser", False, 2)
    assert (vqpus["ext"].engine, vqpus["ext"].external, vqpus["ext"].event_file) == ("aer", True, "/shared/ext.json")


def test_engine_follows_name_prefixed_environment_override() -> None:
    vqpus = {v.name: v for v in build_plan(HYBRID, {"sim_QRMI_VQPU_ENGINE": "aer"}).vqpus}
    assert vqpus["sim"].engine == "aer"


def test_gpu_demand_is_summed() -> None:
    gpus = build_plan(HYBRID, {}).gpus
    assert (gpus.jobs, gpus.total, gpus.max_per_job) == (1, 2, 2)


def test_json_has_the_documented_keys() -> None:
    data = json.loads(format_json(build_plan(HYBRID, {})))
    assert set(data) == {"version", "total_jobs", "stages", "resources", "vqpus", "gpus", "checkpoints", "undetermined", "jobs"}
    assert set(data["stages"]) == set(KINDS)
    assert set(data["jobs"][0]) == {"id", "rule", "wildcards", "kind", "resources", "lanes", "gpus", "shots", "depends_on"}
    assert [j["id"] for j in data["jobs"]] == [0, 1, 2, 3, 4, 5, 6]


def test_empty_plan_says_nothing_to_do() -> None:
    plan = build_plan([], {})
    assert format_text(plan).startswith("Nothing to be done")
    assert json.loads(format_json(plan))["total_jobs"] == 0


def test_rule_graph_has_one_node_per_rule_coloured_by_stage() -> None:
    dot = rule_dot(build_plan(HYBRID, {}))
    assert dot.count("label=\"sample\\n2 jobs") == 1
    assert "vqpu: sim (1500 shots)" in dot
    assert all(colour in dot for colour in COLOURS.values())
    assert "cluster_legend" in dot


def test_job_graph_quotes_wildcard_values() -> None:
    tricky = [job(1, "prepare", name='a "b" \\c')]
    dot = job_dot(build_plan(tricky, {}))
    assert 'label="prepare\\nname=a \\"b\\" \\\\c"' in dot
