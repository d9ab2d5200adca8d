"""The result document every backend returns (documented in docs/results.md).

One stable JSON shape per program, so downstream rules never care where a task ran:

- sampler:   ``pubs[i].registers[<creg>].counts`` (a counts mapping per parameter set,
  nested like the pub's ``shape``), plus ``shots`` and ``num_bits``;
- estimator: ``pubs[i].evs`` and ``pubs[i].stds`` (nested like ``shape``);
- pulser:    ``counts`` of measured bitstrings over ``shots`` runs.

Sampler bitstrings follow Qiskit's convention (the last character is bit 0); Pulser
bitstrings follow Pulser's (the first character is the first atom of ``atoms``).
Counts are per classical register: which outcomes of two registers came together is not
kept (the primitives client measures into one register to keep it).
"""

from __future__ import annotations

from typing import Any

SCHEMA = "snakemake-quantum-result/1"


def document(
    program: str,
    resource: tuple[str, str],
    body: dict[str, Any],
    metadata: dict[str, Any],
    task_id: str | None = None,
) -> dict[str, Any]:
    name, rtype = resource
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "program": program,
        "status": "Completed",
        "resource": {"name": name, "type": rtype},
    }
    if task_id is not None:
        doc["task_id"] = task_id
    doc.update(body)
    doc["metadata"] = metadata
    return doc


def nest(flat: list[Any], shape: tuple[int, ...]) -> Any:
    """Reshape a flat list (row-major) into nested lists of ``shape``; () gives the item."""
    if not shape:
        return flat[0]
    step = len(flat) // shape[0] if shape[0] else 0
    return [nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]
