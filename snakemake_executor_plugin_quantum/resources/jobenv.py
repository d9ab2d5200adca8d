"""The QRMI job environment contract, read and written.

A job started by Slurm's ``spank_qrmi`` plugin with ``--qpu=a,b`` sees
``QRMI_JOB_QPU_RESOURCES=a,b``, ``QRMI_JOB_QPU_TYPES=<types>`` (and the legacy
``SLURM_JOB_QPU_*`` names), ``{name}_QRMI_<KEY>`` settings and
``{name}_QRMI_JOB_ACQUISITION_TOKEN``. Our executor writes exactly that, and ``qrun``
reads exactly that, so programs written for one work under the other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

from ..errors import ConfigError

if TYPE_CHECKING:
    from .config import ResourceDef

RESOURCES_VAR = "QRMI_JOB_QPU_RESOURCES"
TYPES_VAR = "QRMI_JOB_QPU_TYPES"
LEGACY_RESOURCES_VAR = "SLURM_JOB_QPU_RESOURCES"
LEGACY_TYPES_VAR = "SLURM_JOB_QPU_TYPES"
DELIMITER_VAR = "QRMI_LIST_DELIMITER"
TOKEN_KEY = "QRMI_JOB_ACQUISITION_TOKEN"
TIMEOUT_KEY = "QRMI_JOB_TIMEOUT_SECONDS"


class JobResource(NamedTuple):
    name: str
    type: str


def _split(environ: Mapping[str, str], var: str, legacy: str) -> list[str] | None:
    value = environ.get(var, environ.get(legacy))
    if value is None:
        return None
    delimiter = environ.get(DELIMITER_VAR, ",") or ","
    return [item.strip() for item in value.split(delimiter) if item.strip()]


def job_resources(environ: Mapping[str, str]) -> list[JobResource]:
    """The resources this job was given; empty when not run as a quantum job."""
    names = _split(environ, RESOURCES_VAR, LEGACY_RESOURCES_VAR)
    if names is None:
        return []
    types = _split(environ, TYPES_VAR, LEGACY_TYPES_VAR) or []
    if len(types) != len(names):
        raise ConfigError(
            f"{RESOURCES_VAR} lists {len(names)} resources but {TYPES_VAR} lists {len(types)} types; "
            "set both with the same number of entries"
        )
    return [JobResource(n, t) for n, t in zip(names, types, strict=True)]


def resource_settings(
    name: str, environ: Mapping[str, str], base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Settings of one resource: the config's environment, overridden by ``{name}_QRMI_*``."""
    settings = dict(base or {})
    prefix = f"{name}_"
    for key, value in environ.items():
        if key.startswith(prefix) and key[len(prefix):].startswith("QRMI_"):
            settings[key[len(prefix):]] = value
    return settings


def build_job_env(
    resources: Sequence[ResourceDef],
    tokens: Mapping[str, str],
    user_environ: Mapping[str, str],
    extra: Mapping[str, Mapping[str, str]] | None = None,
    timeout_seconds: int | None = None,
    delimiter: str = ",",
) -> dict[str, str]:
    """The variables a job using ``resources`` sees, as spank_qrmi would set them.

    ``{name}_QRMI_*`` values already in ``user_environ`` win over the config, as with
    spank_qrmi. ``extra`` adds settings known only at run time (a vQPU's event file).
    """
    names = delimiter.join(r.name for r in resources)
    types = delimiter.join(r.type for r in resources)
    env = {
        RESOURCES_VAR: names,
        TYPES_VAR: types,
        LEGACY_RESOURCES_VAR: names,
        LEGACY_TYPES_VAR: types,
    }
    if delimiter != ",":
        env[DELIMITER_VAR] = delimiter
    for resource in resources:
        settings = resource_settings(resource.name, user_environ, resource.environment)
        settings.update((extra or {}).get(resource.name, {}))
        if resource.name in tokens:
            settings[TOKEN_KEY] = tokens[resource.name]
        if timeout_seconds is not None:
            settings[TIMEOUT_KEY] = str(int(timeout_seconds))
        for key, value in settings.items():
            env[f"{resource.name}_{key}"] = value
    return env
