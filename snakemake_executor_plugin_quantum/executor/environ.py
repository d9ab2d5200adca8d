"""Per-job environment variables for jobs that run in threads of this process.

Snakemake's local executor runs shell, script and run jobs in a thread pool, and
``shell()`` builds each job's environment from ``dict(os.environ)`` at call time. Jobs
running side by side need different QRMI variables (one uses resource ``a``, another
``b``) and different CUDA_VISIBLE_DEVICES, so ``os.environ`` is wrapped by a mapping
that adds the *current thread's* job variables when read. Writes go to the real
environment, as before; the wrapper is removed when the executor shuts down.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, MutableMapping


class _JobEnviron(MutableMapping[str, str]):
    def __init__(self, base: MutableMapping[str, str]):
        self.base = base
        self._local = threading.local()

    def _overlay(self) -> dict[str, str]:
        return getattr(self._local, "overlay", None) or {}

    def __getitem__(self, key: str) -> str:
        overlay = self._overlay()
        return overlay[key] if key in overlay else self.base[key]

    def __setitem__(self, key: str, value: str) -> None:
        self.base[key] = value

    def __delitem__(self, key: str) -> None:
        del self.base[key]

    def __iter__(self) -> Iterator[str]:
        overlay = self._overlay()
        yield from overlay
        yield from (k for k in self.base if k not in overlay)

    def __len__(self) -> int:
        overlay = self._overlay()
        return len(overlay) + sum(1 for k in self.base if k not in overlay)

    def __contains__(self, key: object) -> bool:
        return key in self._overlay() or key in self.base

    def copy(self) -> dict[str, str]:
        return dict(self)

    # os._Environ API used by the standard library
    def setdefault(self, key: str, value: str) -> str:  # type: ignore[override]
        if key not in self:
            self[key] = value
        return self[key]


_installed: _JobEnviron | None = None
_lock = threading.Lock()
_users = 0


def install() -> None:
    """Wrap ``os.environ`` (reference-counted: several executors may share a process)."""
    global _installed, _users
    with _lock:
        _users += 1
        if _installed is None:
            _installed = _JobEnviron(os.environ)
            os.environ = _installed  # type: ignore[assignment]  # noqa: B003 - wrapping, not clearing


def uninstall() -> None:
    global _installed, _users
    with _lock:
        _users = max(0, _users - 1)
        if _users == 0 and _installed is not None:
            os.environ = _installed.base  # type: ignore[assignment]  # noqa: B003
            _installed = None


@contextlib.contextmanager
def job_environment(variables: dict[str, str]) -> Iterator[None]:
    """Within this block, this thread's ``os.environ`` also shows ``variables``."""
    if _installed is None or not variables:
        yield
        return
    local = _installed._local
    previous = getattr(local, "overlay", None)
    local.overlay = {**(previous or {}), **variables}
    try:
        yield
    finally:
        local.overlay = previous


def snapshot() -> dict[str, str]:
    """The environment this thread's job sees, for subprocesses started without ``shell()``."""
    return dict(os.environ)
