"""The per-job path imports nothing heavy: qrun runs once per job, on a vQPU in ~0.1 s."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("qiskit", "qiskit_aer", "numpy", "pulser", "jsonschema", "yaml")


def test_qrun_reads_a_bare_input_and_resolves_a_resource_without_heavy_imports(tmp_path: Path) -> None:
    bare = tmp_path / "params.json"
    bare.write_text(json.dumps({"pubs": [["OPENQASM 3.0; qubit[1] q; bit[1] c; c[0] = measure q[0];", [0.1]]], "version": 2}))
    code = f"""
import os, sys
from snakemake_executor_plugin_quantum.cli import qrun
from snakemake_executor_plugin_quantum.tasks import parse, read_payload, task_deadline
from snakemake_executor_plugin_quantum.resources.resolve import resolve_resource
invocation = parse([{str(bare)!r}, "-o", "out.json"])
assert read_payload(invocation)["program_id"] == "sampler"
found = resolve_resource("vqpu", None, {{}})
task_deadline(None, found.settings, found.type)
print(",".join(m for m in {HEAVY!r} if m in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"imported on the per-job path: {result.stdout.strip()}"
