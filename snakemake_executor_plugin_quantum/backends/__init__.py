"""Backends behind the one resource contract (``base.QuantumResource``).

``open_resource`` imports a backend only when asked for it: the vQPU client must not
pay for qiskit or pulser, and the qrmi adapter needs an optional extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..resources.types import AER, PULSER, QRMI_TYPES, VQPU
from .base import QuantumResource, ResourceStatus, TaskStatus

if TYPE_CHECKING:
    from ..payloads.model import Limits

__all__ = ["QuantumResource", "ResourceStatus", "TaskStatus", "open_resource", "limits_from_settings"]


def limits_from_settings(settings: dict[str, str]) -> Limits:
    from ..payloads.model import Limits
    from ..resources.values import setting_number

    max_shots = setting_number(settings, "QRMI_MAX_SHOTS", minimum=1)
    return Limits() if max_shots is None else Limits(max_shots=max_shots)


def open_resource(name: str, resource_type: str, settings: dict[str, str], dedicated: bool = False) -> QuantumResource:
    """A ready resource object for ``name`` of ``resource_type`` with its QRMI_* settings.

    ``dedicated``: the caller's process uses Qiskit for nothing else (``qrun``'s simulating
    child), so an in-process simulator may take the process-wide shortcuts of ``AerEngine``.
    """
    if resource_type == VQPU:
        from .vqpu_client import VQPUClient

        return VQPUClient(name, settings)
    if resource_type in (AER, PULSER):
        from .local import in_process

        return in_process(name, resource_type, settings, limits_from_settings(settings), dedicated)
    if resource_type in QRMI_TYPES:
        from .qrmi import QRMIResource

        return QRMIResource(name, resource_type, settings)
    if resource_type.startswith("python:"):
        return _custom(name, resource_type, settings)
    raise ConfigError(f"resource '{name}' has unknown type {resource_type!r}")


def _custom(name: str, resource_type: str, settings: dict[str, str]) -> QuantumResource:
    """``python:module:Class``: a site's own backend behind the same contract."""
    import importlib

    _, module_name, class_name = resource_type.split(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"resource '{name}': cannot load {resource_type}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, QuantumResource)):
        raise ConfigError(f"resource '{name}': {resource_type} is not a QuantumResource subclass")
    return cls(name, settings)
