"""How much memory a simulation may use on this machine."""

from __future__ import annotations


def available_memory_mb() -> int:
    """Memory available now, less a quarter for everything else on the node."""
    import psutil

    return int(psutil.virtual_memory().available * 0.75 / 2**20)
