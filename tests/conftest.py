"""Shared test helpers: run the real commands, start real vQPU processes, clean up."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CIRCUITS = REPO / "circuits"
BIN = Path(sys.executable).parent


def command(name: str) -> str:
    path = BIN / name
    return str(path) if path.exists() else name


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def clean_env(**extra: str) -> dict[str, str]:
    """The test process environment without any QRMI job variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if "QRMI" not in k and not k.startswith("SLURM_JOB_QPU")}
    env.pop("SNAKEMAKE_QUANTUM_CONFIG", None)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # as in an activated environment
    env.update(extra)
    return env


def run(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120) -> Run:
    started = time.monotonic()
    proc = subprocess.run(args, env=env or clean_env(), cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return Run(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


def qrun(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120) -> Run:
    return run([command("qrun"), *args], env=env, cwd=cwd, timeout=timeout)


@dataclass
class Service:
    name: str
    event_dir: Path
    process: subprocess.Popen

    @property
    def event_file(self) -> Path:
        return self.event_dir / f"{self.name}.json"

    @property
    def log_file(self) -> Path:
        """The service's output (stderr), as the executor keeps it: a file, never a pipe that
        nobody reads (a vQPU logs every task, and a full pipe would block it)."""
        return self.event_dir / f"{self.name}.log"

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def event(self) -> dict:
        return json.loads(self.event_file.read_text())

    def job_env(self, **extra: str) -> dict[str, str]:
        """The environment a job routed to this vQPU sees."""
        return clean_env(
            QRMI_JOB_QPU_RESOURCES=self.name,
            QRMI_JOB_QPU_TYPES="vqpu",
            **{f"{self.name}_QRMI_VQPU_EVENT_FILE": str(self.event_file)},
            **extra,
        )


# Processes that module- or session-scoped fixtures own: they outlive the test that first
# requested them, so the per-test leftover sweep must not take them for strays.
SHARED_PIDS: set[int] = set()


def start_service(
    name: str,
    event_dir: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    shared: bool = False,
) -> Service:
    """Start ``vqpu serve`` and wait for its event file; ``shared`` for fixtures wider than a test."""
    event_dir.mkdir(parents=True, exist_ok=True)
    with open(event_dir / f"{name}.log", "ab") as log_file:
        process = subprocess.Popen(
            [command("vqpu"), "serve", name, "--event-dir", str(event_dir), *extra],
            env=env or clean_env(),
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
    service = Service(name, event_dir, process)
    if shared:
        SHARED_PIDS.add(process.pid)
    deadline = time.monotonic() + timeout
    while not service.event_file.exists():
        if process.poll() is not None:
            raise RuntimeError(f"vqpu serve exited {process.returncode}: {service.log()}")
        if time.monotonic() > deadline:
            stop_service(service)
            raise RuntimeError("vqpu serve did not become ready")
        time.sleep(0.05)
    return service


def stop_service(service: Service) -> None:
    if service.process.poll() is None:
        service.process.send_signal(signal.SIGTERM)
        try:
            service.process.wait(15)
        except subprocess.TimeoutExpired:
            service.process.kill()
            service.process.wait()
    if service.process.stderr:
        service.process.stderr.close()


@pytest.fixture
def aer_vqpu(tmp_path: Path) -> Iterator[Service]:
    service = start_service("sim", tmp_path / "events", "--engine", "aer", "--lanes", "2")
    yield service
    stop_service(service)
    assert not service.event_file.exists(), "the event file must be removed on shutdown"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        with contextlib.suppress(ChildProcessError):  # reap our own children: no zombies
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    return not pid_alive(pid)


# ------------------------------------------------------------------ workflows

def snakemake(workdir: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> Run:
    """Run the real snakemake CLI in ``workdir``."""
    return run([command("snakemake"), *args], env=env or clean_env(), cwd=workdir, timeout=timeout)


def write_workflow(workdir: Path, snakefile: str, files: dict[str, str] | None = None) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "Snakefile").write_text(snakefile)
    for name, content in (files or {}).items():
        path = workdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return workdir


def quantum_processes() -> list[str]:
    """Command lines of live vqpu services and qrun processes (of any owner)."""
    import psutil

    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if "cli.vqpu serve" in cmdline or "vqpu serve" in cmdline or "/qrun " in cmdline or cmdline.startswith("qrun "):
            found.append(f"{process.pid}: {cmdline}")
    return found


# ------------------------------------------------------------------ the Slurm cluster

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
_cluster_started = False
_cluster_error = ""


def _cluster_up() -> bool:
    import shutil

    if shutil.which("sinfo") is None:
        return False
    return subprocess.run([str(CLUSTER), "status"], capture_output=True, timeout=60).returncode == 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Start the real Slurm cluster before any test if it will be needed.

    Also when the Slurm client is merely installed: the slurm executor plugin runs
    ``scontrol`` whenever Snakemake starts, which takes ~9.5 s with no controller up.
    """
    import shutil

    global _cluster_started, _cluster_error
    wanted = any(item.get_closest_marker("slurm") for item in items)
    if not (wanted or shutil.which("scontrol")) or os.geteuid() != 0 or _cluster_up():
        return
    started = subprocess.run([str(CLUSTER), "up"], capture_output=True, text=True, timeout=900)
    if started.returncode == 0:
        _cluster_started = True
    else:
        _cluster_error = " ".join((started.stderr or started.stdout).strip().splitlines()[-1:])


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _cluster_started:
        subprocess.run([str(CLUSTER), "down"], capture_output=True, timeout=300)


@pytest.fixture
def slurm_cluster(request: pytest.FixtureRequest) -> dict[str, str]:
    """The running test cluster's environment; skips (fails under CI=true) if there is none."""
    if not _cluster_up():
        reason = "needs root to start the Slurm test cluster" if os.geteuid() != 0 else f"the Slurm test cluster is not up: {_cluster_error}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    conf = os.environ.get("SLURM_TEST_DIR", "/tmp/snakemake-quantum-slurm") + "/slurm.conf"
    return {"SLURM_CONF": conf}


def _with_children(pid: int) -> list:
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


@pytest.fixture(autouse=True)
def _no_leftover_processes() -> Iterator[None]:
    """A failed or timed-out test must not leave its processes running into the next one.

    The product's own cleanup is asserted by PID inside the tests; this only mops up
    after a test that stopped half-way, and says so.
    """
    import warnings

    import psutil

    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    yield
    children = me.children(recursive=True)
    # Shared services after the snapshot: a worker a shared vQPU forked in between is theirs.
    shared = {p.pid for pid in SHARED_PIDS for p in _with_children(pid)}
    leftovers = [p for p in children if p.pid not in before | shared]
    for process in leftovers:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, alive = psutil.wait_procs(leftovers, timeout=10)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    if leftovers:
        warnings.warn(f"terminated {len(leftovers)} process(es) a test left behind", stacklevel=1)
