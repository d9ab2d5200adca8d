"""Which resource to use, and its settings: the QRMI job environment first, then the config.

Inside a job (Slurm ``--qpu`` or our executor) the name must be one the job was given,
as with QRMI's task runner; outside a job, any resource of the config, or a vQPU started
by hand (``vqpu serve NAME``) that its event file shows running. Used per job by ``qrun``
and by the primitives, so it imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from ..errors import ConfigError
from . import jobenv

CONFIG_ENV = "SNAKEMAKE_QUANTUM_CONFIG"


class ResolvedResource(NamedTuple):  # per-job path: no dataclass code generation
    name: str
    type: str
    settings: dict[str, str]


def resolve_resource(name: str | None, config_path: str | None, environ: Mapping[str, str]) -> ResolvedResource:
    given = jobenv.job_resources(environ)
    config = None
    config_path = config_path or environ.get(CONFIG_ENV) or None
    if given:
        names = [r.name for r in given]
        if name is None:
            if len(given) != 1:
                raise ConfigError(f"this job has {len(given)} resources ({', '.join(names)}); name the one to use")
            name = names[0]
        elif name not in names:
            raise ConfigError(f"resource '{name}' is not one of this job's resources: {', '.join(names)}")
        rtype = given[names.index(name)].type
        base = {}
        if config_path:
            config = _load(config_path)
            if name in config:
                base = dict(config.get(name).environment)
        return ResolvedResource(name, rtype, jobenv.resource_settings(name, environ, base))
    config = _load(config_path)
    if name is None:
        if len(config.resources) != 1:
            raise ConfigError(
                f"not inside a quantum job ({jobenv.RESOURCES_VAR} is not set) and no resource named: run it in a rule "
                "with resources: vqpu=1 or qpu=1 under snakemake --executor quantum, "
                f"or name one of {', '.join(config.names)}"
            )
        name = config.names[0]
    if name not in config:
        return _live_vqpu(name, environ, f"unknown resource '{name}' in {config.source}; known resources: {', '.join(config.names)}")
    definition = config.get(name)
    return ResolvedResource(name, definition.type, jobenv.resource_settings(name, environ, definition.environment))


def _live_vqpu(name: str, environ: Mapping[str, str], unknown: str) -> ResolvedResource:
    """A vQPU that no config names but that runs (``vqpu serve NAME``), found by its event file.

    Outside a job only: inside one, the job's environment says which resources exist.
    """
    from .events import default_event_dir, event_path, read_event
    from .types import VQPU

    settings = jobenv.resource_settings(name, environ)
    path = settings.get("QRMI_VQPU_EVENT_FILE") or event_path(settings.get("QRMI_VQPU_EVENT_DIR") or default_event_dir(), name)
    event = read_event(path)
    if event is None:
        raise ConfigError(f"{unknown}; and no vQPU named '{name}' is running ({path} does not exist; start one with: vqpu serve {name})")
    if event.process_alive() is False:
        raise ConfigError(f"{unknown}; and the vQPU named '{name}' is gone (process {event.pid} of {path} has exited)")
    return ResolvedResource(name, VQPU, {**settings, "QRMI_VQPU_EVENT_FILE": path})


def _load(path: str | None):  # type: ignore[no-untyped-def]
    import os

    from .config import find_config, load_config  # only when no job environment says it all

    return load_config(find_config(path, os.getcwd()))
