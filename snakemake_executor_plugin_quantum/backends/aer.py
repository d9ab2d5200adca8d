"""In-process Qiskit Aer resource (type ``qiskit-aer``)."""

from __future__ import annotations

from ..engines.aer import AerEngine, AerOptions
from ..payloads.model import Limits
from ..resources.config import AER
from .local import LocalResource


class AerResource(LocalResource):
    def __init__(self, resource_id: str, settings: dict[str, str], limits: Limits = Limits()):
        super().__init__(resource_id, AER, AerEngine(AerOptions.from_settings(settings), limits), limits)
