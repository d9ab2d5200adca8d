"""Reading a run's metrics back: the records, a summary per resource, CSV.

The executor prints the summary at the end of every run; ``qmetrics`` prints it for any
past run and exports the records as CSV.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The columns of a record, in the order of docs/metrics.md (CSV keeps this order).
FIELDS = (
    "rule", "jobid", "wildcards", "resource", "resource_type", "task_id", "submitted", "started", "finished",
    "shots", "status", "program", "pubs", "parameter_sets", "queue_seconds", "lease_seconds", "acquire_seconds",
    "engine_seconds", "qubits", "depth", "lane", "lanes", "slurm_job_id", "host", "client", "batch", "error", "message",
)


def metrics_dir(workdir: str | os.PathLike[str]) -> Path:
    return Path(workdir) / ".snakemake" / "quantum" / "metrics"


def run_files(workdir: str | os.PathLike[str]) -> list[Path]:
    """The runs' metrics files in a working directory, oldest first (run ids sort by time)."""
    directory = metrics_dir(workdir)
    return sorted(directory.glob("*.jsonl")) if directory.is_dir() else []


def read(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of one run; a line cut short by a crash is skipped."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


@dataclass(frozen=True)
class ResourceSummary:
    resource: str
    resource_type: str
    tasks: int
    shots: int
    failures: int  # failed, timed out or cancelled
    p50_seconds: float
    p95_seconds: float
    wait_seconds: float  # queue (vQPU lane) plus lease waits, summed
    utilisation: float | None  # engine busy time / (lanes x active span); None when lanes are unknown


def summarise(records: Iterable[dict[str, Any]]) -> list[ResourceSummary]:
    by_resource: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_resource.setdefault(str(record.get("resource")), []).append(record)
    out = []
    for name, group in sorted(by_resource.items()):
        times = sorted(max(0.0, _f(r, "finished") - _f(r, "submitted")) for r in group)
        lanes = max((r.get("lanes") for r in group if isinstance(r.get("lanes"), int)), default=None)
        span = max(_f(r, "finished") for r in group) - min(_f(r, "submitted") for r in group)
        busy = sum(_f(r, "engine_seconds") for r in group)
        out.append(ResourceSummary(
            resource=name,
            resource_type=str(group[0].get("resource_type")),
            tasks=len(group),
            shots=sum(int(r["shots"]) for r in group if isinstance(r.get("shots"), int) and r.get("status") == "completed"),
            failures=sum(r.get("status") != "completed" for r in group),
            p50_seconds=_percentile(times, 50),
            p95_seconds=_percentile(times, 95),
            wait_seconds=sum(_f(r, "queue_seconds") + _f(r, "lease_seconds") for r in group),
            utilisation=min(1.0, busy / (lanes * span)) if lanes and span > 0 else None,
        ))
    return out


def format_summary(summaries: Sequence[ResourceSummary]) -> list[str]:
    """One header and one line per resource, for Snakemake's output and ``qmetrics``."""
    if not summaries:
        return ["Quantum tasks: none recorded"]
    rows = [("resource", "type", "tasks", "shots", "failed", "p50", "p95", "waited", "lanes busy")]
    for s in summaries:
        rows.append((s.resource, s.resource_type, str(s.tasks), str(s.shots), str(s.failures), _seconds(s.p50_seconds),
                     _seconds(s.p95_seconds), _seconds(s.wait_seconds),
                     "-" if s.utilisation is None else f"{100 * s.utilisation:.0f}%"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) if i < 2 else cell.rjust(width) for i, (cell, width) in enumerate(zip(row, widths, strict=True))).rstrip()
             for row in rows]
    return ["Quantum tasks of this run (task time = submitted to finished):", *lines]


def to_csv(records: Iterable[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: json.dumps(v, sort_keys=True) if isinstance(v, dict) else ("" if v is None else v)
                         for k, v in record.items()})
    return out.getvalue()


def _f(record: dict[str, Any], key: str) -> float:
    value = record.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _percentile(sorted_values: Sequence[float], p: float) -> float:
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"
