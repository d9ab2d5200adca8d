"""N GHZ-5 tasks through a warm vQPU: one request each vs one batch request.

    python -m benchmarks.vqpu_batch [--tasks N ...] [--rounds R]

Both sides use one ``VQPUClient`` on a warm ``vqpu serve --lanes 2``: ``run`` called N
times, and ``run_many`` with the same N payloads. Each payload has its own seed, and the
counts of every task are checked to be the same both ways. Rounds alternate the sides;
the figures are medians over the rounds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from .common import SHOTS, ghz_qasm, vqpu_service


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    qasm = ghz_qasm(5)
    with tempfile.TemporaryDirectory() as scratch, vqpu_service("batch", Path(scratch), lanes=2) as service:
        client = service.client()
        print(f"GHZ-5, {SHOTS} shots, warm 2-lane vQPU, medians of {args.rounds} rounds")
        print("tasks   one by one (total, per task)   one batch (total, per task)   speed-up")
        for count in args.tasks:
            payloads = [
                {"program_id": "sampler", "parameters": {"pubs": [[qasm]], "shots": SHOTS, "options": {"simulator": {"seed_simulator": i}}}}
                for i in range(count)
            ]
            client.run_many(payloads[:10])  # warm
            alone_times, batch_times = [], []
            for _ in range(args.rounds):
                started = time.perf_counter()
                alone = [client.run(p) for p in payloads]
                alone_times.append(time.perf_counter() - started)
                started = time.perf_counter()
                together = client.run_many(payloads)
                batch_times.append(time.perf_counter() - started)
                counts = [[r["pubs"][0]["registers"]["c"]["counts"] for r in side] for side in (alone, together)]  # type: ignore[index]
                if counts[0] != counts[1]:
                    raise RuntimeError("a batch gave other counts than the same tasks one by one")
            one, many = statistics.median(alone_times), statistics.median(batch_times)
            print(f"{count:>5}   {one:8.3f} s  {one / count * 1e3:6.2f} ms          {many:8.3f} s  {many / count * 1e3:6.2f} ms        {one / many:5.2f}x")
        client.close()


if __name__ == "__main__":
    main()
