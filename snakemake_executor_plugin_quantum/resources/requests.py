"""What a job asks of quantum resources, read from its rule's ``resources``.

    qpu=N             N lanes of QPU (an integer, so ``--resources qpu=N`` caps it)
    qpu_name="a,b"    which resources from the config (like ``sbatch --qpu=a,b``)
    vqpu=1            run through a warm vQPU sidecar
    vqpu_name="x"     which vQPU (a ``vqpu`` resource of the config)
    gpu=N             N GPUs (distinct CUDA_VISIBLE_DEVICES per running job)

Every mistake names the rule and the fix. It is found before any job runs, except where
a rule's resource function can only be evaluated once upstream jobs have run; then it is
found when the job runs, and fails that job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..snakemake_compat import is_undetermined
from .config import ResourceConfig, ResourceDef, embedded_default
from .types import AER, PULSER, VQPU

KEYS = ("qpu", "qpu_name", "vqpu", "vqpu_name", "gpu")


@dataclass(frozen=True)
class JobRequest:
    rule: str
    resources: tuple[ResourceDef, ...] = ()
    lanes: int = 1
    gpus: int = 0
    shots: int | None = None
    # Keys whose values Snakemake cannot evaluate yet (a resource function that reads a
    # file an upstream job creates): read again when the job runs, as Snakemake does.
    undetermined: tuple[str, ...] = ()

    @property
    def is_quantum(self) -> bool:
        return bool(self.resources)

    @property
    def vqpus(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.resources if r.is_vqpu)

    @property
    def kind(self) -> str:
        """cpu, gpu, qpu or vqpu: what the job's stage is, for plans and graphs."""
        if self.vqpus:
            return "vqpu"
        if self.resources:
            return "qpu"
        return "gpu" if self.gpus else "cpu"


class RequestReader:
    """Reads job requests against one resource config and the default-resource settings."""

    def __init__(self, config: ResourceConfig, default_qpu: str | None = None, default_vqpu: str | None = None):
        self.config = config
        self.default_qpu = default_qpu
        self.default_vqpu = default_vqpu
        for setting, name in (("--quantum-default-qpu", default_qpu), ("--quantum-default-vqpu", default_vqpu)):
            if name is not None and name not in config:
                raise ConfigError(f"{setting} {name}: not in {config.source}; known resources: {', '.join(config.names)}")

    def read(self, rule: str, resources: Any, params: Any = None) -> JobRequest:
        """``resources``/``params`` as Snakemake gives them (mapping-like, ``.get``)."""
        pending = tuple(key for key in KEYS if is_undetermined(resources.get(key)))
        if pending:
            return JobRequest(rule, undetermined=pending)
        qpu = _count(rule, "qpu", resources.get("qpu"))
        vqpu = _count(rule, "vqpu", resources.get("vqpu"))
        gpus = _count(rule, "gpu", resources.get("gpu"), allow_zero=True) or 0
        qpu_names = _names(rule, "qpu_name", resources.get("qpu_name"))
        vqpu_names = _names(rule, "vqpu_name", resources.get("vqpu_name"))
        chosen: list[ResourceDef] = []
        if qpu is not None or qpu_names:
            chosen += [self._resource(rule, n, "qpu_name") for n in (qpu_names or [self._default_qpu(rule)])]
        if vqpu is not None or vqpu_names:
            for name in vqpu_names or [self._default_vqpu_name(rule)]:
                resource = _default_vqpu() if name == "vqpu" and name not in self.config else self._resource(rule, name, "vqpu_name")
                if not resource.is_vqpu:
                    raise ConfigError(f"rule {rule}: vqpu_name '{name}' is a {resource.type} resource, not a vqpu; use qpu_name for it")
                chosen.append(resource)
        unique = tuple({r.name: r for r in chosen}.values())
        if vqpu is not None and vqpu > 1:
            raise ConfigError(f"rule {rule}: vqpu={vqpu}, but a job sends its tasks to one vQPU; use vqpu=1 "
                              "(a vQPU's own lanes, QRMI_VQPU_LANES, set how many tasks it runs at once)")
        lanes = qpu or 1
        for resource in unique:
            available = _lanes(resource)
            if available is not None and lanes > available:
                raise ConfigError(f"rule {rule}: qpu={lanes} but resource '{resource.name}' has only "
                                  f"{_n(available, 'lane')}{_LANE_REASON.get(resource.type, '')}; use qpu={available}")
        return JobRequest(rule, unique, lanes, gpus, _shots(params))

    def _resource(self, rule: str, name: str, key: str) -> ResourceDef:
        if name not in self.config:
            raise ConfigError(
                f"rule {rule}: {key} '{name}' is not in {self.config.source}; known resources: {', '.join(self.config.names)}"
            )
        return self.config.get(name)

    def _default_qpu(self, rule: str) -> str:
        if self.default_qpu:
            return self.default_qpu
        if len(self.config.resources) == 1:
            return self.config.names[0]
        raise ConfigError(
            f"rule {rule} asks for qpu but names no resource and {self.config.source} has "
            f"{len(self.config.resources)} ({', '.join(self.config.names)}); set resources: qpu_name=\"...\" "
            "in the rule or --quantum-default-qpu"
        )

    def _default_vqpu_name(self, rule: str) -> str:
        if self.default_vqpu:
            return self.default_vqpu
        vqpus = [r.name for r in self.config.resources if r.is_vqpu]
        if len(vqpus) == 1:
            return vqpus[0]
        if not vqpus or "vqpu" in vqpus:
            return "vqpu"  # the config's 'vqpu', or (no vQPU configured) the built-in Aer vQPU
        raise ConfigError(
            f"rule {rule} asks for vqpu but names none and {self.config.source} has several "
            f"({', '.join(vqpus)}); set resources: vqpu_name=\"...\" in the rule or --quantum-default-vqpu"
        )


def _count(rule: str, key: str, value: Any, allow_zero: bool = False) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"rule {rule}: resources {key}={value!r} must be an integer")
    if value < 0 or (value == 0 and not allow_zero):
        fix = "drop the resource" if value == 0 else "use a positive number"
        raise ConfigError(f"rule {rule}: resources {key}={value} requests no {key.upper()}; {fix} or set {key}>=1")
    return value


def _names(rule: str, key: str, value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if not isinstance(value, str):
        raise ConfigError(f"rule {rule}: resources {key}={value!r} must be a string such as \"a\" or \"a,b\"")
    return [n.strip() for n in value.split(",") if n.strip()]


def _shots(params: Any) -> int | None:
    if params is None:
        return None
    try:
        shots = params.get("shots")
    except (AttributeError, TypeError):
        return None
    return shots if isinstance(shots, int) and not isinstance(shots, bool) else None


_LANE_REASON = {
    AER: " (it runs in the job's own process)",
    PULSER: " (it runs in the job's own process)",
    VQPU: " (QRMI_VQPU_LANES)",
}


def _lanes(resource: ResourceDef) -> int | None:
    """How many lanes a job may take on ``resource``; None when the config does not say."""
    if resource.lanes is not None:
        return resource.lanes
    if resource.type in (AER, PULSER):
        return 1
    if resource.type == VQPU:
        value = resource.environment.get("QRMI_VQPU_LANES", "")
        return int(value) if value.isdigit() and int(value) > 0 else None
    return None


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _default_vqpu() -> ResourceDef:
    """The embedded default's Aer vQPU: what ``vqpu=1`` means when the config has none."""
    return embedded_default().get("vqpu")
