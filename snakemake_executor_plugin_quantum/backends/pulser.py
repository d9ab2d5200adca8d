"""In-process Pulser emulator resource (type ``pulser-emulator``)."""

from __future__ import annotations

from ..engines.pulser import PulserEngine, PulserOptions
from ..payloads.model import Limits
from ..resources.config import PULSER
from .local import LocalResource


class PulserResource(LocalResource):
    def __init__(self, resource_id: str, settings: dict[str, str], limits: Limits = Limits()):
        super().__init__(resource_id, PULSER, PulserEngine(PulserOptions.from_settings(settings), limits), limits)
