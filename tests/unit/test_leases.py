"""Lane leases within one run: a lane given back goes to a waiting job at once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from snakemake_executor_plugin_quantum.errors import ResourceUnavailableError
from snakemake_executor_plugin_quantum.resources.leases import LaneLeases


def _hold_for(leases: LaneLeases, seconds: float, held: threading.Event, times: dict[str, float]) -> None:
    with leases.hold("qpu", lanes=1):
        held.set()
        time.sleep(seconds)
        times["given back"] = time.monotonic()


def test_a_lane_given_back_in_this_process_goes_to_its_waiter_at_once(tmp_path: Path) -> None:
    # The waiter starts polling when the holder starts; a back-off from 20 ms (doubling to
    # 1 s) would look at 0.62 s and next at 1.26 s: 0.56 s with the lane free and unused.
    leases = LaneLeases(str(tmp_path))
    held, times = threading.Event(), {}
    holder = threading.Thread(target=_hold_for, args=(leases, 0.7, held, times))
    holder.start()
    held.wait(5)
    try:
        with leases.hold("qpu", lanes=1):
            taken = time.monotonic()
    finally:
        holder.join()
    assert taken - times["given back"] < 0.15


def test_a_stopped_run_wakes_its_waiters_at_once(tmp_path: Path) -> None:
    leases = LaneLeases(str(tmp_path))
    stop, held, times = threading.Event(), threading.Event(), {}
    holder = threading.Thread(target=_hold_for, args=(leases, 1.5, held, times))
    holder.start()
    held.wait(5)
    outcome: list[float] = []

    def wait() -> None:
        with pytest.raises(ResourceUnavailableError, match="stopped while waiting for a lane of 'qpu'"), \
                leases.hold("qpu", lanes=1, stop=stop):
            pass
        outcome.append(time.monotonic())

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.7)  # the waiter is in a long back-off by now
    stopped = time.monotonic()
    stop.set()
    leases.wake()  # as the executor's cancel() does
    waiter.join(5)
    holder.join()
    assert outcome and outcome[0] - stopped < 0.15
