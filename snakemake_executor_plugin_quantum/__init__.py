"""snakemake-executor-plugin-quantum: ``snakemake --executor quantum``.

Snakemake discovers the plugin through ``common_settings``, ``ExecutorSettings`` and
``Executor`` here. They are loaded lazily (PEP 562) because ``qrun`` also lives in
this package and runs once per job: it must not pay for importing Snakemake.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Executor", "ExecutorSettings", "common_settings"]


def __getattr__(name: str) -> object:
    if name in ("ExecutorSettings", "common_settings"):
        from . import settings

        return getattr(settings, name)
    if name == "Executor":
        from .executor.executor import Executor

        return Executor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
