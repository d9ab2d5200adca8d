"""Waiting for a vQPU's event file: found soon after it appears, without hammering the filesystem."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from snakemake_executor_plugin_quantum.errors import ResourceUnavailableError
from snakemake_executor_plugin_quantum.resources import events
from snakemake_executor_plugin_quantum.resources.events import (
    VQPUEvent,
    wait_for_event,
    write_event,
)


def _event() -> VQPUEvent:
    return VQPUEvent("sim", "127.0.0.1", 1, os.getpid(), "t" * 32, "aer", None, 0.0)


def test_an_event_written_while_a_local_vqpu_would_start_is_found_at_once(tmp_path: Path) -> None:
    # A vQPU that becomes ready 0.7 s in: an exponential back-off from 10 ms (capped at
    # 0.5 s) would look at 0.63 s and next at 1.13 s, leaving the run idle for 0.4 s.
    path = str(tmp_path / "sim.json")
    written: list[float] = []

    def write_later() -> None:
        time.sleep(0.7)
        write_event(path, _event())
        written.append(time.monotonic())

    writer = threading.Thread(target=write_later)
    writer.start()
    try:
        assert wait_for_event(path, timeout=10).name == "sim"
        found = time.monotonic()
    finally:
        writer.join()
    assert found - written[0] < 0.15


def test_a_long_wait_backs_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # After the quick phase the delay doubles up to max_delay: a vQPU queued on Slurm may
    # take minutes, and its event file sits on a shared filesystem.
    reads: list[float] = []
    real = events.read_event

    def counting(path: str) -> VQPUEvent | None:
        reads.append(time.monotonic())
        return real(path)

    monkeypatch.setattr(events, "read_event", counting)
    with pytest.raises(ResourceUnavailableError, match="within 1.2 s"):
        wait_for_event(str(tmp_path / "none.json"), timeout=1.2, quick=0.01, quick_for=0.2, max_delay=0.4)
    assert len([t for t in reads if t - reads[0] < 0.2]) >= 10  # every 10 ms at first
    assert len([t for t in reads if t - reads[0] > 0.7]) <= 3  # then 320, 400 ms apart (polling on: ~50)


def test_a_vqpu_that_died_while_starting_fails_the_wait_at_once(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(ResourceUnavailableError, match="exited with status 1"):
        wait_for_event(str(tmp_path / "none.json"), timeout=30, alive=lambda: "exited with status 1")
    assert time.monotonic() - started < 1
