"""GPU slots: a job with gpu=N gets N GPUs no other running job has (CUDA_VISIBLE_DEVICES)."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import ConfigError


def parse_slots(value: str | None) -> list[str] | None:
    """'4' -> ['0','1','2','3']; '0,2' -> ['0','2']; None -> None (detect)."""
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip()
    if text.isdigit() and "," not in text:
        return [str(i) for i in range(int(text))]
    ids = [part.strip() for part in text.split(",") if part.strip()]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"--quantum-gpu-slots {value!r} lists a GPU twice")
    return ids


def detect_gpus() -> list[str]:
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


class GpuSlots:
    def __init__(self, ids: list[str]):
        self.ids = ids
        self._free = list(ids)
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, count: int, stop: threading.Event) -> Iterator[list[str]]:
        """Wait until ``count`` GPUs are free, hold them for the block."""
        with self._cond:
            while len(self._free) < count:
                if stop.is_set():
                    raise ConfigError("stopped while waiting for a GPU")
                self._cond.wait(0.5)
            taken, self._free = self._free[:count], self._free[count:]
        try:
            yield taken
        finally:
            with self._cond:
                self._free.extend(taken)
                self._cond.notify_all()
