"""Validated tasks, as plain data. Parsing lives in ``parse.py``; running in ``engines/``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# A circuit as it arrived: OpenQASM text, or a QuantumCircuit decoded from a
# RuntimeEncoder QPY blob. Observables and parameter values stay JSON-like (lists,
# dicts, numbers, numpy arrays) until an engine turns them into qiskit objects.
Circuit = Any


@dataclass(frozen=True)
class SamplerPub:
    circuit: Circuit
    parameter_values: Any = None
    shots: int | None = None


@dataclass(frozen=True)
class EstimatorPub:
    circuit: Circuit
    observables: Any
    parameter_values: Any = None
    precision: float | None = None


@dataclass(frozen=True)
class PrimitiveTask:
    """A Qiskit primitive call in QRMI's ``{"program_id", "parameters"}`` form."""

    program: Literal["sampler", "estimator"]
    pubs: tuple[SamplerPub, ...] | tuple[EstimatorPub, ...]
    shots: int | None = None  # sampler: default shots per pub
    precision: float | None = None  # estimator: default target precision
    seed: int | None = None
    ignored_options: tuple[str, ...] = ()  # hardware-only options a simulator cannot honour

    @property
    def total_shots(self) -> int:
        if self.program != "sampler":
            return 0
        return sum((pub.shots or self.shots or 0) for pub in self.pubs)  # type: ignore[union-attr]


@dataclass(frozen=True)
class PulserTask:
    """A Pulser sequence in QRMI's ``{"sequence", "job_runs"}`` form."""

    sequence: str  # the abstract representation, always as JSON text
    shots: int
    seed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    program = "pulser"


Task = PrimitiveTask | PulserTask


@dataclass(frozen=True)
class Limits:
    """What a resource accepts; payloads beyond these fail before anything runs."""

    max_shots: int = 10_000_000
    max_pubs: int = 10_000
    max_parameter_sets: int = 1_000_000
    max_circuit_chars: int = 20_000_000
    max_memory_mb: int | None = None  # None: what the machine has available
