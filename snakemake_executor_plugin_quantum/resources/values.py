"""Numbers from ``QRMI_*`` settings, read and checked one way for every resource type."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError


def setting_number(
    settings: Mapping[str, Any], key: str, default: Any = None, kind: type = int, minimum: float = 0
) -> Any:
    """``settings[key]`` as ``kind`` (int or float), ``default`` when unset or empty."""
    value = settings.get(key)
    if value in (None, ""):
        return default
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={value!r} must be {'an integer' if kind is int else 'a number'}") from None
    if number < minimum:
        raise ConfigError(f"{key}={value!r} must " + ("not be negative" if minimum == 0 else f"be at least {minimum:g}"))
    return number
