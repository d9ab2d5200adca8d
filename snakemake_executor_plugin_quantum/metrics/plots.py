"""Pictures of a run's quantum tasks, for Snakemake reports: when each task ran on which
resource (and vQPU lane), and how long tasks of each rule took."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

TIMELINE = "quantum_timeline.png"
TASK_TIMES = "quantum_task_times.png"


def plot(records: Sequence[dict[str, Any]], directory: str | Path) -> list[Path]:
    """Write the timeline and the task-time distribution into ``directory``; their paths."""
    import matplotlib

    matplotlib.use("Agg")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return [_timeline(records, directory / TIMELINE), _task_times(records, directory / TASK_TIMES)]


def _track(record: dict[str, Any]) -> str:
    lane = record.get("lane")
    if lane in (None, ""):
        return str(record.get("resource"))
    return f"{record.get('resource')} {lane}" if isinstance(lane, str) else f"{record.get('resource')} lane {lane}"


def _timeline(records: Sequence[dict[str, Any]], path: Path) -> Path:
    import matplotlib.pyplot as plt

    tracks = sorted({_track(r) for r in records})
    rules = sorted({str(r.get("rule")) for r in records})
    colours = {rule: plt.get_cmap("tab10")(i % 10) for i, rule in enumerate(rules)}
    origin = min((r["submitted"] for r in records), default=0.0)
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.45 * max(1, len(tracks))))
    for record in records:
        row = tracks.index(_track(record))
        start, end = record["started"] - origin, record["finished"] - origin
        ax.broken_barh([(start, max(end - start, 1e-3))], (row - 0.35, 0.7), color=colours[str(record.get("rule"))],
                       alpha=0.9 if record.get("status") == "completed" else 0.35, edgecolor="none")
        if record["started"] > record["submitted"]:  # waiting (lane queue)
            ax.plot([record["submitted"] - origin, start], [row, row], color="0.6", linewidth=0.6)
    ax.set_yticks(range(len(tracks)), tracks)
    ax.set_xlabel("seconds since the first task was submitted")
    ax.set_title(f"Quantum tasks over time ({len(records)} tasks; grey: waiting for a lane; pale: not completed)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[rule]) for rule in rules]
    if rules:
        ax.legend(handles, rules, title="rule", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _task_times(records: Sequence[dict[str, Any]], path: Path) -> Path:
    import matplotlib.pyplot as plt

    by_rule: dict[str, list[float]] = {}
    for record in records:
        by_rule.setdefault(str(record.get("rule")), []).append(1000 * (record["finished"] - record["submitted"]))
    rules = sorted(by_rule)
    fig, ax = plt.subplots(figsize=(9, 1.5 + 0.5 * max(1, len(rules))))
    if rules:
        ax.boxplot([by_rule[rule] for rule in rules], orientation="horizontal", showfliers=True)
        ax.set_yticks(range(1, len(rules) + 1), [f"{rule} ({len(by_rule[rule])})" for rule in rules])
    ax.set_xscale("log")
    ax.set_xlabel("task time, submitted to finished (ms, log scale)")
    ax.set_title("Quantum task time per rule (number of tasks)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
