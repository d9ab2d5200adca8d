"""Write files so readers see the whole file or none: temp file, fsync, rename."""

from __future__ import annotations

import contextlib
import os
import tempfile

from .errors import QuantumError


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data``; on any failure nothing is left behind but the old file."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, mode)  # before any byte is written: secrets never sit world-readable
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        if isinstance(exc, OSError):
            raise QuantumError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
