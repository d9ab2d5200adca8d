"""Simulation engines shared by the in-process backends and the vQPU service.

An engine validates tasks (``check``, which returns what ``run`` needs, prepared), runs
them (``run``) and describes itself (``target``). ``EngineSpec`` is the picklable recipe
a worker process uses to build its own copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..payloads.model import Limits


@dataclass(frozen=True)
class EngineSpec:
    kind: str  # "aer" or "pulser"
    options: Any  # AerOptions or PulserOptions
    limits: Limits = Limits()


def spec_from_settings(kind: str, settings: dict[str, str], limits: Limits = Limits()) -> EngineSpec:
    """The engine a resource's ``QRMI_AER_*`` / ``QRMI_PULSER_*`` settings describe."""
    if kind == "aer":
        from .aer_options import AerOptions

        return EngineSpec("aer", AerOptions.from_settings(settings), limits)
    from .pulser import PulserOptions

    return EngineSpec("pulser", PulserOptions.from_settings(settings), limits)


def build_engine(spec: EngineSpec, dedicated: bool = False, preload: bool = True) -> Any:
    """The engine ``spec`` describes; ``dedicated`` see ``AerEngine``, ``preload`` see
    ``PulserEngine``."""
    if spec.kind == "aer":
        from .aer import AerEngine

        return AerEngine(spec.options, spec.limits, dedicated=dedicated)
    from .pulser import PulserEngine

    return PulserEngine(spec.options, spec.limits, preload=preload)
