"""Planted secrets (API keys in the config and in the environment, the vQPU token) never
show up in logs, results, reports or process command lines. The event file, mode 0600,
is the one place the vQPU token is written."""

from __future__ import annotations

import json
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import CIRCUITS, clean_env, command, snakemake, write_workflow

pytestmark = pytest.mark.slow

CONFIG_SECRET = "planted-config-secret-7f3a9c"
ENV_SECRET = "planted-env-secret-2b8e41"
CONFIG = f"""resources:
  - name: device
    type: qiskit-aer
    environment:
      QRMI_AER_SEED: "1"
      QRMI_DEVICE_API_KEY: "{CONFIG_SECRET}"
  - name: vqpu
    type: vqpu
    environment:
      QRMI_VQPU_ENGINE: aer
"""
WORKFLOW = r'''
rule all:
    input: "device.json", "vqpu.json", "plot.png"

rule on_device:
    output: "device.json"
    log: "logs/device.log"
    resources: qpu=1, qpu_name="device"
    shell: "qrun ghz5.qasm --shots 64 --logs -o {output} 2> {log}"

rule on_vqpu:
    output: "vqpu.json"
    log: "logs/vqpu.log"
    resources: vqpu=1
    shell: "qrun ghz5.qasm --shots 64 --logs -o {output} 2> {log}"

rule broken:
    output: "never.json"
    log: "logs/broken.log"
    resources: qpu=1, qpu_name="device"
    shell: "qrun broken.qasm -o {output} 2> {log}"

rule plot:
    input: "device.json", "vqpu.json"
    output: report("plot.png", caption="caption.rst")
    run:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        plt.bar([0, 1], [1, 2])
        plt.savefig(output[0])
'''


def _watch_command_lines(stop: threading.Event, seen: set[str]) -> None:
    while not stop.is_set():
        out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        seen.update(out.splitlines())
        time.sleep(0.05)


def test_planted_secrets_never_leak(tmp_path: Path) -> None:
    workdir = write_workflow(tmp_path, WORKFLOW, {
        "ghz5.qasm": (CIRCUITS / "ghz5.qasm").read_text(), "broken.qasm": "OPENQASM 3.0; qubit q; wobble q;",
        "qrmi_config.yaml": CONFIG, "caption.rst": "A plot.",
    })
    env = clean_env(device_QRMI_USER_TOKEN=ENV_SECRET)
    stop, seen = threading.Event(), set()
    watcher = threading.Thread(target=_watch_command_lines, args=(stop, seen))
    watcher.start()
    tokens: set[str] = set()
    process = subprocess.Popen([command("snakemake"), "--executor", "quantum", "--cores", "2"], cwd=workdir, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    event = workdir / ".snakemake" / "quantum" / "vqpu" / "vqpu.json"
    while process.poll() is None:
        if event.exists():
            try:
                tokens.add(json.loads(event.read_text())["token"])
                assert stat.S_IMODE(event.stat().st_mode) == 0o600
            except (ValueError, FileNotFoundError):
                pass
        time.sleep(0.05)
    stdout, stderr = process.communicate()
    stop.set()
    watcher.join()
    assert process.returncode == 0, stderr[-3000:]
    assert tokens, "the vQPU's token was never seen in its event file"
    failing = snakemake(workdir, "--executor", "quantum", "--cores", "1", "never.json", env=env)
    assert failing.returncode != 0 and "invalid OpenQASM 3" in (workdir / "logs" / "broken.log").read_text()
    report = snakemake(workdir, "--report", "report.html", env=env)
    assert report.returncode == 0, report.stderr[-2000:]

    secrets = {CONFIG_SECRET, ENV_SECRET, *tokens}
    texts = {"snakemake stdout": stdout, "snakemake stderr": stderr, "failing run": failing.stdout + failing.stderr,
             "report run": report.stdout + report.stderr, "command lines": "\n".join(seen)}
    for path in workdir.rglob("*"):
        if path.is_file() and path.suffix != ".png" and path.name != "qrmi_config.yaml":  # the config is the source
            texts[str(path.relative_to(workdir))] = path.read_text(errors="replace")
    leaks = [f"{secret[:12]}... in {where}" for where, text in texts.items() for secret in secrets if secret in text]
    assert leaks == []
    assert "report.html" in texts and "logs/device.log" in texts and any(".snakemake/log/" in name for name in texts)
