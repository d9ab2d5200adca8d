"""tests/slurm/cluster.sh itself: 'down', or an 'up' stopped half-way, leaves the machine as
'up' found it.

A second, small cluster (2 nodes, no accounting, its own directory, ports, prefix and
subnet) goes up and down inside a private mount namespace whose /etc/slurm starts empty,
so its /etc/slurm/slurm.conf link is its own and the session's cluster is untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CLUSTER, unavailable

# With the Slurm tests on one xdist worker: run beside the session's cluster while a test
# restarts it, 'down' was seen to leave this cluster's namespaces behind.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("slurm")]

PREFIX = "qz"
SETTINGS = {"SLURM_TEST_PREFIX": PREFIX, "SLURM_TEST_SUBNET": "10.199.9", "SLURM_TEST_CLUSTER": "qztest",
            "SLURM_TEST_ACCOUNTING": "none", "SLURM_TEST_CTLD_PORT": "8817", "SLURM_TEST_SLURMD_PORT": "8818"}

# Both scripts run in the private mount namespace; $CLUSTER is cluster.sh, $D its directory.
PROLOGUE = r'''
set -euo pipefail
down() { [ -n "${downed:-}" ] || "$CLUSTER" down >>"$D.down.log" 2>&1; downed=1; }
trap down EXIT  # whatever happens, the test leaves nothing behind
mount --bind "$EMPTY" /etc/slurm
'''
# What is left afterwards, as one JSON line.
OBSERVE = r'''
alive=$(for p in $pids; do [ ! -d /proc/$p ] || echo $p; done)
python3 -c 'import json, sys; print(json.dumps(dict(zip(sys.argv[1::2], sys.argv[2::2]))))' \
  pids "$pids" linked "${linked:-}" alive "$alive" netns "$(ip netns list | grep "^$PREFIX-" || true)" \
  links "$(ip -br link | grep "^$PREFIX-" || true)" hosts "$(grep -F "snakemake-quantum-slurm:$D" /etc/hosts || true)" \
  etc "$(ls -A /etc/slurm)" seconds "${seconds:-}"
'''
UP_THEN_DOWN = PROLOGUE + r'''
"$CLUSTER" up --nodes 2 >"$D.up.log" 2>&1
pids=$(cat "$D"/pids/*.pid)
linked=$(readlink /etc/slurm/slurm.conf || true)
down
seconds=$(python3 -c 'import os, subprocess, time
start = time.monotonic()
subprocess.run(["scontrol", "show", "config"], capture_output=True, timeout=120,
               env={k: v for k, v in os.environ.items() if k != "SLURM_CONF"})
print(round(time.monotonic() - start, 3))')
''' + OBSERVE
# SIGTERM to 'up' once slurmctld has started, while it waits for the nodes.
UP_INTERRUPTED = PROLOGUE + r'''
"$CLUSTER" up --nodes 2 >"$D.up.log" 2>&1 &
up=$!
until [ -s "$D/pids/slurmctld.pid" ]; do kill -0 $up; sleep 0.05; done
pids=$(cat "$D"/pids/*.pid)
kill -TERM $up
wait $up || true
downed=1  # what is left is up's own doing
''' + OBSERVE


def _in_a_private_namespace(script: str) -> dict[str, str]:
    if os.geteuid() != 0 or shutil.which("slurmctld") is None:
        unavailable("needs root and the Slurm packages (tests/slurm/cluster.sh up installs them)")
    # Not under pytest's 0700 tmp directory: munged (user munge) must reach its socket there.
    base = Path(tempfile.mkdtemp(prefix="qz-slurm-"))
    try:
        base.chmod(0o755)
        (base / "etc").mkdir()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("SLURM")}, **SETTINGS, "PREFIX": PREFIX,
               "SLURM_TEST_DIR": str(base / "slurm"), "D": str(base / "slurm"), "EMPTY": str(base / "etc"), "CLUSTER": str(CLUSTER)}
        done = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", script],
                              capture_output=True, text=True, env=env, timeout=240)
        logs = "".join(p.read_text()[-2000:] for p in (base / "slurm.up.log", base / "slurm.down.log") if p.exists())
        assert done.returncode == 0, f"{done.stderr[-2000:]}\n{logs}"
        return json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(base)


@pytest.fixture(scope="module")
def up_then_down() -> Iterator[dict[str, str]]:
    yield _in_a_private_namespace(UP_THEN_DOWN)


def _nothing_left(seen: dict[str, str]) -> None:
    assert seen["alive"] == "", seen
    assert seen["netns"] == "" and seen["links"] == "" and seen["hosts"] == "", seen


def test_down_stops_every_process_and_removes_every_namespace_link_and_hosts_line(up_then_down: dict[str, str]) -> None:
    assert len(up_then_down["pids"].split()) == 4, up_then_down  # munged, slurmctld, 2 slurmd
    _nothing_left(up_then_down)


def test_after_down_no_slurm_client_waits_for_the_dead_controller(up_then_down: dict[str, str]) -> None:
    assert up_then_down["linked"].endswith("/slurm.conf"), "up links /etc/slurm/slurm.conf when there is none"
    assert up_then_down["etc"] == "", "down removes the link it made"
    assert float(up_then_down["seconds"]) < 2, f"scontrol show config took {up_then_down['seconds']} s after down"


def test_an_up_stopped_half_way_takes_down_what_it_started() -> None:
    seen = _in_a_private_namespace(UP_INTERRUPTED)
    assert len(seen["pids"].split()) >= 2, seen  # munged and slurmctld at least were running
    _nothing_left(seen)
    assert seen["etc"] == "", seen
