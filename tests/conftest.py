"""Shared test helpers: run the real commands, start real vQPU processes, clean up."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
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


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Test files in a fresh directory that the run removes, not in pytest's kept
    ``/tmp/pytest-of-<user>`` (the tests leave the machine as they found it). xdist workers
    get theirs inside it; ``--basetemp`` still chooses one to keep."""
    if config.option.basetemp is None and not hasattr(config, "workerinput"):
        config.option.basetemp = config.stash[_SCRATCH] = tempfile.mkdtemp(prefix="quantum-tests-")


def pytest_unconfigure(config: pytest.Config) -> None:
    scratch = config.stash.get(_SCRATCH, None)
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)


_SCRATCH = pytest.StashKey[str]()


@pytest.fixture(scope="session", autouse=True)
def _own_lease_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Lane leases of this test process's runs in its own directory: tests running side by
    side (pytest-xdist workers) must not wait on each other's leases of the same name."""
    previous = os.environ.get("SNAKEMAKE_QUANTUM_LEASE_DIR")
    os.environ["SNAKEMAKE_QUANTUM_LEASE_DIR"] = str(tmp_path_factory.mktemp("leases"))
    yield
    if previous is None:
        os.environ.pop("SNAKEMAKE_QUANTUM_LEASE_DIR", None)
    else:
        os.environ["SNAKEMAKE_QUANTUM_LEASE_DIR"] = previous


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
    """Command lines of live vqpu services and qrun processes started from this environment.

    Every process on the machine is looked at (a leaked one may have been re-parented to
    PID 1), but only those running this environment's Python: another checkout's tests
    on the same machine are not ours.
    """
    import psutil

    ours = str(BIN)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    found = []
    for process in psutil.process_iter(["cmdline"]):
        words = process.info["cmdline"] or []
        cmdline = " ".join(words)
        if not any(word.startswith(ours) for word in words[:2]):
            continue
        if "cli.vqpu serve" in cmdline or "vqpu serve" in cmdline or "executor.sender" in cmdline or "/qrun " in cmdline or cmdline.startswith("qrun "):
            if worker and _worker_of(process) not in (worker, None):
                continue  # another pytest-xdist worker's test, running beside this one
            found.append(f"{process.pid}: {cmdline}")
    return found


def _worker_of(process) -> str | None:
    """The pytest-xdist worker a process was started by (inherited in its environment)."""
    import psutil

    try:
        return process.environ().get("PYTEST_XDIST_WORKER")
    except psutil.Error:
        return None


# ------------------------------------------------------------------ the Slurm cluster

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
SLURM_DIR = Path(os.environ.get("SLURM_TEST_DIR", "/tmp/snakemake-quantum-slurm"))
_cluster_started = False
_cluster_error = ""


def _cluster_up() -> bool:
    import shutil

    if shutil.which("sinfo") is None:
        return False
    return subprocess.run([str(CLUSTER), "status"], capture_output=True, timeout=60).returncode == 0


def slurm_nodes_wanted(item: pytest.Item) -> int:
    """0 for a test that needs no Slurm, else how many nodes: ``@pytest.mark.slurm(nodes=3)``."""
    marker = item.get_closest_marker("slurm")
    return 0 if marker is None else int(marker.kwargs.get("nodes", 1))


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slurm tests share one cluster (and some kill its nodes, or restart it without
    accounting): under pytest-xdist they all run on one worker, one after the other
    (``--dist loadgroup``)."""
    for item in items:
        if item.get_closest_marker("slurm"):
            item.add_marker(pytest.mark.xdist_group("slurm"))


def _start_cluster(nodes: int) -> None:
    """Start the real Slurm cluster, as root, the first time a selected test needs it: so
    ``tests/unit`` or ``-m "not slurm"`` never start it. It gets as many nodes as the most
    demanding selected test asks for. A lock keeps two test processes from starting it at once."""
    import fcntl

    global _cluster_started, _cluster_error
    if _cluster_started or os.geteuid() != 0:
        return
    SLURM_DIR.parent.mkdir(parents=True, exist_ok=True)
    with open(str(SLURM_DIR) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _cluster_up():
            return
        started = subprocess.run([str(CLUSTER), "up", "--nodes", str(nodes)], capture_output=True, text=True, timeout=900)
    if started.returncode == 0:
        _cluster_started = True
    else:
        _cluster_error = " ".join((started.stderr or started.stdout).strip().splitlines()[-1:])


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A cluster this test process started is taken down again: the machine is left as the
    tests found it (namespaces, /etc/slurm/slurm.conf, daemons). One that was already up,
    started by hand, stays up."""
    if _cluster_started:
        subprocess.run([str(CLUSTER), "down"], capture_output=True, timeout=300)


@dataclass(frozen=True)
class SlurmNodes:
    """The cluster's nodes: cpu ones (partition cpu only) and gpu ones, with their addresses.

    Each node is a host of its own: a network namespace named after it (tests/slurm/README.md).
    """

    cpu: tuple[str, ...]
    gpu: tuple[str, ...]
    address: dict[str, str]


def slurm_nodes(env: dict[str, str]) -> SlurmNodes:
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N|%P|%o"], capture_output=True, text=True, env=env, timeout=60).stdout
    partitions: dict[str, set[str]] = {}
    address = {}
    for line in out.split():
        node, partition, addr = line.split("|")
        partitions.setdefault(node, set()).add(partition.rstrip("*"))
        address[node] = addr
    gpu = tuple(sorted(n for n, p in partitions.items() if "gpu" in p))
    cpu = tuple(sorted(n for n, p in partitions.items() if "gpu" not in p))
    return SlurmNodes(cpu, gpu, address)


def node_processes(node: str) -> list[str]:
    """Command lines of the processes on a node (its network namespace) other than its slurmd."""
    slurmd = (SLURM_DIR / "pids" / f"slurmd.{node}.pid").read_text().strip()
    pids = subprocess.run(["ip", "netns", "pids", node], capture_output=True, text=True, timeout=30).stdout.split()
    found = []
    for pid in pids:
        with contextlib.suppress(OSError):  # exited meanwhile
            if pid != slurmd:
                found.append(f"{pid}: " + Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200])
    return found


def slurm_env(cluster: dict[str, str], **extra: str) -> dict[str, str]:
    """A run's environment on the cluster: status checks at most 3 s apart (the wait doubles
    while nothing finishes, which short test jobs would otherwise partly spend waiting)."""
    return clean_env(**cluster, SNAKEMAKE_QUANTUM_SLURM_MAX_STATUS_INTERVAL="3", **extra)


@dataclass(frozen=True)
class SlurmJob:
    name: str
    state: str
    nodes: str
    tres: str
    start: str
    end: str
    partition: str


def sacct_jobs(env: dict[str, str]) -> dict[str, SlurmJob]:
    """Jobs of the last two hours by id, as accounting knows them (allocations only)."""
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-S", "now-2hours", "-o", "JobID,JobName%60,State,NodeList%200,AllocTRES%200,Start,End,Partition"],
        capture_output=True, text=True, env=env, timeout=60,
    ).stdout
    return {fields[0]: SlurmJob(*fields[1:]) for fields in (line.split("|") for line in out.splitlines())}


def squeue_ids(env: dict[str, str]) -> list[str]:
    return subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, env=env, timeout=60).stdout.split()


def submitted_jobs(stderr: str) -> tuple[list[str], list[str]]:
    """(work job ids, vQPU job ids) a run submitted, as it logged them."""
    work = re.findall(r"has been submitted with SLURM jobid (\d+)", stderr)
    vqpus = re.findall(r"vQPU '\w+' submitted as Slurm job (\d+)", stderr)
    return work, vqpus


def jobs_of_rule(stderr: str, rule: str) -> list[str]:
    """Slurm job ids of a rule's jobs, from Snakemake's log ('rule R:' ... 'jobid: N', then
    'Job N has been submitted with SLURM jobid M'), retries included."""
    rules, current = {}, None
    for line in stderr.splitlines():
        if m := re.match(r"rule (\w+):$", line.strip()):
            current = m.group(1)
        elif (m := re.match(r"jobid: (\d+)$", line.strip())) and current:
            rules[m.group(1)] = current
    return [slurm for job, slurm in re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", stderr) if rules.get(job) == rule]


def assert_nothing_left(env: dict[str, str], timeout: float = 20) -> None:
    """Nothing queued, and no process on any node but its slurmd (cancelled jobs take a few seconds)."""
    nodes = slurm_nodes(env)
    deadline = time.monotonic() + timeout
    while True:
        queued = squeue_ids(env)
        strays = {node: found for node in nodes.cpu + nodes.gpu if (found := node_processes(node))}
        if not queued and not strays:
            return
        assert time.monotonic() < deadline, f"left over after {timeout:g} s: squeue {queued}, processes {strays}"
        time.sleep(0.5)


def restore_cluster() -> None:
    """Bring back what a fault test killed (a slurmd, a node): 'up' starts what is missing."""
    up = subprocess.run([str(CLUSTER), "up"], capture_output=True, text=True, timeout=300)
    assert up.returncode == 0, f"could not restore the cluster: {up.stderr[-2000:]}"


def unavailable(reason: str) -> None:
    """Skip, or fail under CI=true: CI must run every test."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def require_slurm(nodes: int = 1) -> dict[str, str]:
    """The running test cluster's environment; skips (fails under CI=true) if there is none.

    With ``nodes >= 3`` it also needs two cpu nodes and a gpu node.
    """
    if not _cluster_up():
        unavailable("needs root to start the Slurm test cluster" if os.geteuid() != 0 else f"the Slurm test cluster is not up: {_cluster_error}")
    env = {"SLURM_CONF": str(SLURM_DIR / "slurm.conf")}
    if nodes >= 3:
        found = slurm_nodes(env)
        if len(found.cpu) < 2 or not found.gpu:
            unavailable(f"needs 2 cpu nodes and a gpu node; the cluster has {found.cpu + found.gpu} "
                         "(tests/slurm/cluster.sh down, then up --nodes 3)")
    return env


@pytest.fixture
def slurm_cluster(request: pytest.FixtureRequest) -> dict[str, str]:
    """``require_slurm`` for the nodes the test's ``slurm`` marker asks for (the cluster is
    started for the first Slurm test, with the most nodes any selected test wants)."""
    if getattr(request.config.option, "loadgroup", False) and not request.node.nodeid.endswith("@slurm"):
        # pytest-xdist groups by rewriting node ids, which some pytest releases ignore: the
        # Slurm tests would then run at once on several workers, one restarting the cluster
        # under another's run.
        pytest.fail(f"pytest {pytest.__version__} with pytest-xdist did not put the Slurm tests in one group "
                    "(--dist loadgroup); use a pytest that pyproject.toml allows")
    _start_cluster(max((slurm_nodes_wanted(item) for item in request.session.items), default=1))
    return require_slurm(slurm_nodes_wanted(request.node) or 1)


def _with_children(pid: int) -> list:
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


@pytest.fixture(autouse=True)
def _no_leftover_processes() -> Iterator[None]:
    """A test that leaves a process running fails, and its processes are stopped.

    The product promises that nothing it starts outlives a run; a test that leaks a
    process shows that promise broken (or the test itself broken). Processes still
    exiting get a short grace; shared fixtures' services are spared.
    """
    import psutil

    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    yield
    children = me.children(recursive=True)
    # Shared services after the snapshot: a worker a shared vQPU forked in between is theirs.
    shared = {p.pid for pid in SHARED_PIDS for p in _with_children(pid)}
    leftovers = [p for p in children if p.pid not in before | shared]
    _, alive = psutil.wait_procs(leftovers, timeout=3)  # exiting on their own (a vQPU that saw its parent go)
    described = []
    for process in alive:
        with contextlib.suppress(psutil.Error):
            described.append(f"{process.pid}: {' '.join(process.cmdline())[:200]}")
            process.terminate()
    _, stubborn = psutil.wait_procs(alive, timeout=10)
    for process in stubborn:
        with contextlib.suppress(psutil.Error):
            process.kill()
    if described:
        pytest.fail(f"the test left {len(described)} process(es) running: " + "; ".join(described), pytrace=False)
