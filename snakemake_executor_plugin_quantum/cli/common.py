"""What every command shares: one-line errors, and finding the resource a job was given."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from typing import NamedTuple

from ..errors import ConfigError, QuantumError
from ..resources import jobenv

CONFIG_ENV = "SNAKEMAKE_QUANTUM_CONFIG"


class ResolvedResource(NamedTuple):  # per-job path: no dataclass code generation
    name: str
    type: str
    settings: dict[str, str]


def resolve_resource(name: str | None, config_path: str | None, environ: Mapping[str, str]) -> ResolvedResource:
    """The resource to use: from the QRMI job environment if there is one, else the config.

    Inside a job (Slurm ``--qpu`` or our executor) the name must be one the job was
    given, as with QRMI's task runner; outside, any resource of the config.
    """
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
            raise ConfigError(f"name a resource; known resources: {', '.join(config.names)}")
        name = config.names[0]
    definition = config.get(name)
    return ResolvedResource(name, definition.type, jobenv.resource_settings(name, environ, definition.environment))


def _load(path: str | None):  # type: ignore[no-untyped-def]
    from ..resources.config import load_config

    return load_config(path)


def run_command(prog: str, main: Callable[[list[str]], int], argv: list[str] | None = None) -> int:
    """Run ``main``; a QuantumError becomes one line on stderr and its exit code."""
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv or os.environ.get("SNAKEMAKE_QUANTUM_DEBUG") == "1"
    import logging  # only configured here; the library modules that log import it themselves

    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format=f"{prog}: %(message)s")
    try:
        return main(argv)
    except QuantumError as exc:
        if debug:
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
