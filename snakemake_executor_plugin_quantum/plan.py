"""The quantum work in a workflow before it runs: a plan built from jobs, shown as text, JSON or DOT.

Pure logic, no Snakemake: ``qplan`` (cli/qplan.py) builds the DAG and hands over one
:class:`PlannedJob` per job that would run; :func:`build_plan` sums them up.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

from .resources import jobenv
from .resources.config import ResourceDef
from .resources.requests import JobRequest

KINDS = ("cpu", "gpu", "qpu", "vqpu")
# Fill colours of the stages in DOT graphs (ColorBrewer Set2: distinct, printable).
COLOURS = {"cpu": "#d9d9d9", "gpu": "#a6d854", "qpu": "#8da0cb", "vqpu": "#fc8d62"}
JSON_VERSION = 1


@dataclass(frozen=True)
class PlannedJob:
    jobid: int
    rule: str
    request: JobRequest
    wildcards: tuple[tuple[str, str], ...] = ()
    depends_on: tuple[int, ...] = ()  # jobids of planned jobs this one waits for
    checkpoint: bool = False

    @property
    def label(self) -> str:
        return "\n".join([self.rule, *(f"{k}={v}" for k, v in self.wildcards)])


@dataclass(frozen=True)
class ResourceUse:
    name: str
    type: str
    jobs: int
    shots: int  # sum of params.shots over the jobs that set it
    jobs_without_shots: int


@dataclass(frozen=True)
class VQPUUse:
    name: str
    engine: str
    external: bool  # started by hand (QRMI_VQPU_EVENT_FILE in the config): attached, not launched
    event_file: str | None
    jobs: int


@dataclass(frozen=True)
class GpuDemand:
    jobs: int
    total: int
    max_per_job: int


@dataclass(frozen=True)
class Plan:
    jobs: tuple[PlannedJob, ...]
    resources: tuple[ResourceUse, ...]
    vqpus: tuple[VQPUUse, ...]
    gpus: GpuDemand

    def rules_by_kind(self) -> dict[str, dict[str, int]]:
        """{kind: {rule: jobs}} for all four kinds, rules in DAG order."""
        out: dict[str, dict[str, int]] = {kind: {} for kind in KINDS}
        for job in self.jobs:
            rules = out[job.request.kind]
            rules[job.rule] = rules.get(job.rule, 0) + 1
        return out

    @property
    def undetermined(self) -> dict[str, int]:
        """{rule: jobs} whose quantum resources are decided only when they run."""
        out: dict[str, int] = {}
        for job in self.jobs:
            if job.request.undetermined:
                out[job.rule] = out.get(job.rule, 0) + 1
        return out

    @property
    def checkpoints(self) -> list[str]:
        return sorted({job.rule for job in self.jobs if job.checkpoint})


def build_plan(jobs: Iterable[PlannedJob], environ: Mapping[str, str]) -> Plan:
    """``environ``: where ``NAME_QRMI_*`` overrides of the config come from (as for ``vqpu serve``)."""
    ordered = tuple(sorted(jobs, key=lambda j: j.jobid))
    uses: dict[str, list[JobRequest]] = {}
    definitions: dict[str, ResourceDef] = {}
    for job in ordered:
        for resource in job.request.resources:
            uses.setdefault(resource.name, []).append(job.request)
            definitions[resource.name] = resource
    resources = tuple(
        ResourceUse(name, definitions[name].type, len(requests),
                    sum(r.shots for r in requests if r.shots is not None),
                    sum(r.shots is None for r in requests))
        for name, requests in uses.items()
    )
    vqpus = []
    for name, requests in uses.items():
        resource = definitions[name]
        if resource.is_vqpu:
            settings = jobenv.resource_settings(name, environ, resource.environment)
            event_file = resource.environment.get("QRMI_VQPU_EVENT_FILE")  # as the executor's SidecarManager
            vqpus.append(VQPUUse(name, settings.get("QRMI_VQPU_ENGINE") or "aer", bool(event_file), event_file or None, len(requests)))
    demands = [job.request.gpus for job in ordered if job.request.gpus]
    return Plan(ordered, resources, tuple(vqpus), GpuDemand(len(demands), sum(demands), max(demands, default=0)))


# ------------------------------------------------------------------ text and JSON


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _shots(use: ResourceUse) -> str:
    if not use.jobs_without_shots:
        return f"{use.shots} shots"
    unknown = f"unknown ({_n(use.jobs_without_shots, 'job')} without params.shots)"
    return f"{use.shots} shots + {unknown}" if use.jobs_without_shots < use.jobs else f"shots {unknown}"


def format_text(plan: Plan) -> str:
    if not plan.jobs:
        return "Nothing to be done: no job would run (use --forceall to plan every job).\n"
    lines = [f"{_n(len(plan.jobs), 'job')} would run.", "", "Stages:"]
    for kind, rules in plan.rules_by_kind().items():
        detail = ", ".join(f"{rule} x{count}" if count > 1 else rule for rule, count in rules.items())
        lines.append(f"  {kind:<5} {_n(sum(rules.values()), 'job'):<8}  {detail}".rstrip())
    lines += ["", "Quantum resources:"]
    lines += [f"  {u.name:<14} {u.type:<28} {_n(u.jobs, 'job'):<8}  {_shots(u)}" for u in plan.resources] or ["  none"]
    lines += ["", "vQPUs:"]
    for v in plan.vqpus:
        how = f"external: attached via {v.event_file}" if v.external else "launched by the executor"
        lines.append(f"  {v.name:<14} engine {v.engine:<7} {_n(v.jobs, 'job'):<8}  {how}")
    if not plan.vqpus:
        lines.append("  none")
    g = plan.gpus
    lines += ["", "GPUs:", f"  {_n(g.jobs, 'job')} with gpu=N: {_n(g.total, 'GPU')} in all, at most {g.max_per_job} per job" if g.jobs else "  none"]
    if plan.undetermined:
        rules = ", ".join(f"{rule} x{count}" if count > 1 else rule for rule, count in plan.undetermined.items())
        lines += ["", f"Note: {rules}: resources come from functions of files that earlier jobs write; "
                  "they are read when those jobs have run (counted as cpu here)."]
    if plan.checkpoints:
        names = ", ".join(plan.checkpoints)
        lines += ["", f"Note: the jobs after checkpoint {names} are not known until it has run; they are not in this plan."]
    return "\n".join(lines) + "\n"


def to_dict(plan: Plan) -> dict:
    """The JSON form; keys are documented in docs/qplan.md (bump JSON_VERSION on change)."""
    return {
        "version": JSON_VERSION,
        "total_jobs": len(plan.jobs),
        "stages": {kind: {"jobs": sum(rules.values()), "rules": rules} for kind, rules in plan.rules_by_kind().items()},
        "resources": [asdict(u) for u in plan.resources],
        "vqpus": [asdict(v) for v in plan.vqpus],
        "gpus": asdict(plan.gpus),
        "checkpoints": plan.checkpoints,
        "undetermined": plan.undetermined,
        "jobs": [
            {
                "id": job.jobid,
                "rule": job.rule,
                "wildcards": dict(job.wildcards),
                "kind": job.request.kind,
                "resources": [r.name for r in job.request.resources],
                "lanes": job.request.lanes,
                "gpus": job.request.gpus,
                "shots": job.request.shots,
                "depends_on": list(job.depends_on),
            }
            for job in plan.jobs
        ],
    }


def format_json(plan: Plan) -> str:
    return json.dumps(to_dict(plan), indent=2) + "\n"


# ------------------------------------------------------------------------- DOT

_RANK = {kind: i for i, kind in enumerate(KINDS)}


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _demand(requests: Sequence[JobRequest]) -> list[str]:
    """Label lines: what these jobs (of one node) ask for."""
    lines = []
    names = list(dict.fromkeys(r.name for req in requests for r in req.resources))
    if names:
        kind = "vqpu" if any(req.vqpus for req in requests) else "qpu"
        known = [req.shots for req in requests if req.shots is not None]
        shots = f"{sum(known)} shots" if len(known) == len(requests) else "shots unknown" if not known else f"{sum(known)}+? shots"
        lines.append(f"{kind}: {','.join(names)} ({shots})")
    gpus = max((req.gpus for req in requests), default=0)
    if gpus:
        lines.append(f"gpu={gpus}")
    return lines


def _graph(nodes: list[tuple[str, str, str]], edges: Iterable[tuple[str, str]]) -> str:
    """nodes: (id, label, kind)."""
    out = [
        "digraph qplan {",
        '  graph [bgcolor=white, rankdir=TB, fontname=sans];',
        '  node [shape=box, style="rounded,filled", fontname=sans, fontsize=10, penwidth=1.5];',
        "  edge [color=grey40];",
    ]
    out += [f"  {nid} [label={_quote(label)}, fillcolor={_quote(COLOURS[kind])}];" for nid, label, kind in nodes]
    out += [f"  {a} -> {b};" for a, b in sorted(set(edges))]
    out += ['  subgraph cluster_legend {', '    label="stages"; fontsize=10; style=dashed; color=grey60;']
    out += [f'    legend_{kind} [label="{kind.upper() if kind != "vqpu" else "vQPU"}", fillcolor={_quote(COLOURS[kind])}];' for kind in KINDS]
    out += ["    " + " -> ".join(f"legend_{k}" for k in KINDS) + " [style=invis];", "  }", "}"]
    return "\n".join(out) + "\n"


def rule_dot(plan: Plan) -> str:
    """One node per rule: job count, stage colour, what it asks for."""
    by_rule: dict[str, list[PlannedJob]] = {}
    for job in plan.jobs:
        by_rule.setdefault(job.rule, []).append(job)
    ids = {rule: f"r{i}" for i, rule in enumerate(by_rule)}
    rule_of = {job.jobid: job.rule for job in plan.jobs}
    nodes = []
    for rule, jobs in by_rule.items():
        kind = max((j.request.kind for j in jobs), key=_RANK.__getitem__)  # mixed rules show their most quantum stage
        label = "\n".join([rule, _n(len(jobs), "job"), *_demand([j.request for j in jobs])])
        nodes.append((ids[rule], label, kind))
    edges = [(ids[rule_of[dep]], ids[job.rule]) for job in plan.jobs for dep in job.depends_on if rule_of[dep] != job.rule]
    return _graph(nodes, edges)


def job_dot(plan: Plan) -> str:
    """One node per job."""
    nodes = [(f"j{job.jobid}", "\n".join([job.label, *_demand([job.request])]), job.request.kind) for job in plan.jobs]
    edges = [(f"j{dep}", f"j{job.jobid}") for job in plan.jobs for dep in job.depends_on]
    return _graph(nodes, edges)
