"""The Prefect side of B3: N circuits as one Prefect 3 flow, one task per circuit.

    python benchmarks/b3_prefect_flow.py CIRCUITS_DIR OUT_DIR N [WORKERS]

Ephemeral local mode (no PREFECT_API_URL: Prefect starts its own temporary server). Each
task samples circuit ``c{i}.qasm`` with Aer exactly as the other sides do (1024 shots,
seed 1234, one warm AerSimulator(max_parallel_threads=1) and pass manager per worker
thread, the most favourable set-up for Prefect: no per-task imports) and writes
``s{i}.json``. Prints a JSON line with the in-flow timings.
"""

from __future__ import annotations

import json
import sys
import threading
import time

STARTED = time.perf_counter()

from prefect import flow, task  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402
from qiskit import qasm2  # noqa: E402
from qiskit.transpiler import generate_preset_pass_manager  # noqa: E402
from qiskit_aer import AerSimulator  # noqa: E402

SHOTS = 1024
SEED = 1234
_local = threading.local()


def _simulator() -> tuple[AerSimulator, object]:
    if not hasattr(_local, "sim"):
        _local.sim = AerSimulator(max_parallel_threads=1)
        _local.pm = generate_preset_pass_manager(optimization_level=1, backend=_local.sim)
    return _local.sim, _local.pm


@task
def sample(source: str, output: str) -> str:
    sim, pm = _simulator()
    circuit = qasm2.load(source)
    counts = sim.run(pm.run(circuit), shots=SHOTS, seed_simulator=SEED).result().get_counts()
    with open(output, "w") as handle:
        json.dump({"shots": SHOTS, "counts": counts}, handle)
    return output


def main() -> None:
    circuits, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    workers = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    imported = time.perf_counter()

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=workers), log_prints=False)
    def sampling() -> list[str]:
        futures = [sample.submit(f"{circuits}/c{i}.qasm", f"{out}/s{i}.json") for i in range(n)]
        return [future.result() for future in futures]

    flow_started = time.perf_counter()
    done = sampling()
    finished = time.perf_counter()
    assert len(done) == n
    print(json.dumps({"imports": imported - STARTED, "flow": finished - flow_started, "total_in_process": finished - STARTED}))


if __name__ == "__main__":
    main()
