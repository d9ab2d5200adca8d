"""Resource configuration: the ``spank_qrmi`` config format, in JSON or YAML.

``{"resources": [{"name", "type", "environment"}]}`` is read unchanged, so a site's
``qrmi_config.json`` works as is. Two optional keys per resource are ours:
``lanes`` (how many jobs may use the resource at once, across every Snakemake run
sharing the lease directory) and ``slurm``: for a vQPU, the sbatch options of its
sidecar job; for a QPU, the GRES its jobs ask for (other options of a QPU job come from
the rule's resources, as with the slurm plugin).
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from . import keys
from .types import AER, KNOWN_TYPES, LOCAL_TYPES, PULSER, QRMI_TYPES, VQPU

__all__ = ["AER", "PULSER", "VQPU", "LOCAL_TYPES", "QRMI_TYPES", "KNOWN_TYPES", "ResourceDef", "ResourceConfig", "load_config"]

# Resource names become environment variable prefixes ({name}_QRMI_...), so they must be
# usable as shell variable names.
NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESOURCE_KEYS = ("name", "type", "environment", "lanes", "slurm")
SLURM_KEYS = ("partition", "account", "gres", "qos", "constraint", "time", "mem_mb", "cpus", "extra")
ENV_KEY_PATTERN = re.compile(r"^QRMI_[A-Z0-9_]+$")
# A site's own backend: a QuantumResource subclass, constructed as Class(name, settings).
PYTHON_TYPE = re.compile(r"^python:[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class ResourceDef:
    name: str
    type: str
    environment: Mapping[str, str] = field(default_factory=dict)
    lanes: int | None = None
    slurm: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_vqpu(self) -> bool:
        return self.type == VQPU

    @property
    def is_local(self) -> bool:
        return self.type in LOCAL_TYPES


@dataclass(frozen=True)
class ResourceConfig:
    resources: tuple[ResourceDef, ...]
    source: str

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.resources]

    def get(self, name: str) -> ResourceDef:
        for resource in self.resources:
            if resource.name == name:
                return resource
        known = ", ".join(self.names) or "none"
        raise ConfigError(f"unknown resource '{name}' in {self.source}; known resources: {known}")

    def __contains__(self, name: object) -> bool:
        return any(r.name == name for r in self.resources)


EMBEDDED_DEFAULT = {
    "resources": [
        {"name": "aer", "type": AER, "environment": {"QRMI_AER_METHOD": "automatic"}},
        {"name": "pulser", "type": PULSER, "environment": {}},
        {"name": "vqpu", "type": VQPU, "environment": {"QRMI_VQPU_ENGINE": "aer"}},
        {"name": "vqpu_pulser", "type": VQPU, "environment": {"QRMI_VQPU_ENGINE": "pulser"}},
    ]
}


@functools.cache
def embedded_default() -> ResourceConfig:
    """Local simulators only: what runs on a laptop with no config file."""
    return parse_config(EMBEDDED_DEFAULT, source="the embedded default config")


# Looked for in the working directory when no config is named, as sites keep qrmi_config.json.
CONVENTIONAL_NAMES = ("qrmi_config.yaml", "qrmi_config.yml", "qrmi_config.json")


def find_config(explicit: str | None, workdir: str | os.PathLike[str]) -> str | None:
    """The config to use: the one named, else a qrmi_config.* in ``workdir``, else None (embedded)."""
    if explicit:
        return explicit
    for name in CONVENTIONAL_NAMES:
        candidate = os.path.join(workdir, name)
        if os.path.isfile(candidate):
            return candidate
    return None


def load_config(path: str | os.PathLike[str] | None) -> ResourceConfig:
    """Read a config file (JSON or YAML); ``None`` gives the embedded default."""
    if path is None or str(path) == "":
        return embedded_default()
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise ConfigError(f"resource config {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read resource config {path}: {exc.strerror}") from None
    return parse_config(_decode(text, path), source=str(path))


def _decode(text: str, path: str) -> Any:
    if path.lower().endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"resource config {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    import yaml  # YAML only when needed: qrun reads JSON or the job environment

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"resource config {path} is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None


def parse_config(data: Any, source: str) -> ResourceConfig:
    if not isinstance(data, dict) or not isinstance(data.get("resources"), list):
        hint = _did_you_mean(data, ("resources",)) if isinstance(data, dict) and "resources" not in data else ""
        raise ConfigError(f"{source}: expected a mapping with a 'resources' list, as in qrmi_config.json{hint}")
    resources = []
    seen: set[str] = set()
    for index, item in enumerate(data["resources"]):
        resource = _parse_resource(item, f"{source}: resource #{index + 1}")
        if resource.name in seen:
            raise ConfigError(f"{source}: resource name '{resource.name}' is defined twice")
        seen.add(resource.name)
        resources.append(resource)
    return ResourceConfig(tuple(resources), source)


def _parse_resource(item: Any, where: str) -> ResourceDef:
    if not isinstance(item, dict):
        raise ConfigError(f"{where} must be a mapping with name, type and environment")
    name = item.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ConfigError(
            f"{where}: name {name!r} must be a letter or '_' followed by letters, digits or '_' "
            "(it prefixes environment variables such as NAME_QRMI_...)"
        )
    where = f"{where} '{name}'"
    rtype = item.get("type")
    if rtype not in KNOWN_TYPES and not (isinstance(rtype, str) and PYTHON_TYPE.match(rtype)):
        raise ConfigError(f"{where}: unknown type {rtype!r}; known types: {', '.join(KNOWN_TYPES)}, or python:module:Class")
    unknown = _unknown_keys(item, RESOURCE_KEYS)
    if unknown:
        raise ConfigError(f"{where}: {unknown}")
    environment = _parse_environment(item.get("environment", {}), where)
    if rtype in LOCAL_TYPES:
        _check_values(environment, where)
    lanes = item.get("lanes")
    if lanes is not None and (isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1):
        raise ConfigError(f"{where}: lanes must be an integer >= 1, got {lanes!r}")
    slurm = item.get("slurm", {}) or {}
    if not isinstance(slurm, dict):
        raise ConfigError(f"{where}: slurm must be a mapping with keys among {', '.join(SLURM_KEYS)}")
    unknown = _unknown_keys(slurm, SLURM_KEYS)
    if unknown:
        raise ConfigError(f"{where}: slurm: {unknown}")
    return ResourceDef(name, rtype, environment, lanes, dict(slurm))


def _unknown_keys(mapping: dict[Any, Any], allowed: tuple[str, ...]) -> str:
    """'unknown key 'x' (did you mean 'y'?); keys are ...', or '' when all are known."""
    unknown = [key for key in mapping if key not in allowed]
    if not unknown:
        return ""
    described = ", ".join(f"{key!r}{_did_you_mean({key: None}, allowed, short=True)}" for key in unknown)
    return f"unknown key{'s' if len(unknown) > 1 else ''} {described}; keys are {', '.join(allowed)}"


def _did_you_mean(mapping: dict[Any, Any], allowed: tuple[str, ...], short: bool = False) -> str:
    import difflib

    for key in mapping:
        match = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
        if match:
            return f" (did you mean {match[0]!r}?)" if short else f" (found {key!r}: did you mean {match[0]!r}?)"
    return ""


def _check_values(environment: dict[str, str], where: str) -> None:
    """Values of our own keys (resources/keys.py), checked now rather than when a vQPU starts."""
    for key, value in environment.items():
        wrong = keys.problem(key, value)
        if wrong:
            raise ConfigError(f"{where}: environment {key}={value!r} {wrong}")


def _parse_environment(env: Any, where: str) -> dict[str, str]:
    if env is None:
        return {}
    if not isinstance(env, dict):
        raise ConfigError(f"{where}: environment must be a mapping of QRMI_* keys to values")
    out = {}
    for key, value in env.items():
        if not isinstance(key, str) or not ENV_KEY_PATTERN.match(key):
            raise ConfigError(f"{where}: environment key {key!r} must look like QRMI_SOMETHING")
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (int, float)):
            value = str(value)
        elif value is None:
            value = ""
        elif not isinstance(value, str):
            raise ConfigError(f"{where}: environment value of {key} must be a string or a number")
        out[key] = value
    return out
