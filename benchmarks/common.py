"""Shared helpers for the benchmarks: timing, statistics, result rows, processes, workflows.

Every benchmark module exposes ``run(ctx: Context) -> Section``. A ``Section`` holds
``Row``s (one measured comparison each) and the text that explains them; ``run.py``
prints the rows as a table and writes all sections to BENCHMARKS.md.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CIRCUITS = REPO / "circuits"
SEED = 1234
SHOTS = 1024


# ------------------------------------------------------------------ statistics


@dataclass(frozen=True)
class Stats:
    """Repeated measurements of one quantity (seconds, or any unit the row names)."""

    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        if not values:
            raise ValueError("no measurements")
        return cls(tuple(float(v) for v in values))

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def max(self) -> float:
        return max(self.values)

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile (p in 0..100)."""
        ordered = sorted(self.values)
        rank = max(1, math.ceil(p / 100 * len(ordered)))
        return ordered[rank - 1]

    def scaled(self, factor: float) -> Stats:
        return Stats(tuple(v * factor for v in self.values))


def paired_ratio(ours: Sequence[float], base: Sequence[float]) -> float:
    """Median of per-round ratios ours/base: robust to drift when the rounds were interleaved."""
    return statistics.median(o / b for o, b in zip(ours, base, strict=True))


# ------------------------------------------------------------------ result rows


@dataclass
class Row:
    """One comparison: ``ours`` against ``base`` (either may be absent), and its target."""

    metric: str
    ours: Stats | None = None
    base: Stats | None = None
    unit: str = "s"  # "s" values are shown in the best of s/ms; anything else as is
    ratio: float | None = None  # computed from the stats when None and both are present
    ratio_label: str = "ours/base"
    target: str = ""
    met: bool | None = None  # None: no target, or not applicable
    base_name: str = ""
    note: str = ""
    display: str = ""  # shown instead of ours' min/median/max (e.g. latency percentiles)

    def __post_init__(self) -> None:
        if self.ratio is None and self.ours is not None and self.base is not None:
            if self.ours.n == self.base.n and self.ours.n > 1:
                self.ratio = paired_ratio(self.ours.values, self.base.values)
            elif self.base.median:
                self.ratio = self.ours.median / self.base.median


@dataclass
class Section:
    id: str
    title: str
    rows: list[Row] = field(default_factory=list)
    method: str = ""  # what was measured and how
    findings: list[str] = field(default_factory=list)  # paragraphs written from the numbers
    skipped: str = ""  # reason, when the benchmark could not run
    seconds: float = 0.0
    data: dict[str, float] = field(default_factory=dict)  # named medians for the cross-benchmark analysis

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def note(self, text: str) -> None:
        self.findings.append(text)


@dataclass
class Context:
    quick: bool
    workdir: Path  # scratch space for this run (removed at the end)
    log: Callable[[str], None] = print
    deadline: float = float("inf")  # time.monotonic() by which the whole suite should be done
    reserve: float = 0.0  # seconds the benchmarks after this one need at least (set by run.py)

    def size(self, quick: Any, full: Any) -> Any:
        return quick if self.quick else full

    def optional(self, seconds: float, what: str = "") -> bool:
        """May an extra repeat that takes about ``seconds`` run within the suite's budget?
        Never in quick mode; in a full run only if the later benchmarks keep their share."""
        if self.quick:
            return False
        ok = self.deadline - time.monotonic() - self.reserve > seconds
        if not ok and what:
            self.log(f"  (skipping {what}: not enough of the time budget left)")
        return ok


def fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        if value >= 10:
            return f"{value:.1f} s"
        if value >= 1:
            return f"{value:.2f} s"
        if value >= 0.01:
            return f"{value * 1e3:.0f} ms"
        return f"{value * 1e3:.2f} ms"
    if unit == "MB":
        return f"{value:.0f} MB"
    if abs(value) >= 100:
        return f"{value:.0f} {unit}".strip()
    return f"{value:.3g} {unit}".strip()


def fmt_stats(stats: Stats | None, unit: str) -> str:
    if stats is None:
        return "-"
    if stats.n == 1:
        return f"{fmt_value(stats.median, unit)} (n=1)"
    return f"{fmt_value(stats.min, unit)} / {fmt_value(stats.median, unit)} / {fmt_value(stats.max, unit)} (n={stats.n})"


def fmt_ratio(ratio: float | None) -> str:
    if ratio is None:
        return "-"
    return f"{ratio:.2f}x" if ratio < 100 else f"{ratio:.0f}x"


def fmt_met(met: bool | None) -> str:
    return {True: "yes", False: "NO", None: "-"}[met]


# ------------------------------------------------------------------ timing


def time_call(func: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = func()
    return time.perf_counter() - started, value


def interleave(sides: dict[str, Callable[[], Any]], rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    """Time every side once per round, the order rotating each round; warm-ups equal for all."""
    names = list(sides)
    for _ in range(warmup):
        for name in names:
            sides[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            seconds, _ = time_call(sides[name])
            times[name].append(seconds)
    return times


# ------------------------------------------------------------------ processes


def bench_env(**extra: str) -> dict[str, str]:
    """This environment without QRMI job variables, the venv first on PATH, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if "QRMI" not in k and not k.startswith("SLURM_JOB_QPU")}
    env.pop("SNAKEMAKE_QUANTUM_CONFIG", None)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def command(name: str) -> str:
    path = BIN / name
    return str(path) if path.exists() else name


@dataclass
class Measured:
    seconds: float
    returncode: int
    stdout: str
    stderr: str
    peak_rss_mb: float = 0.0
    samples: list[tuple[float, int]] = field(default_factory=list)  # (t, progress) when watched
    output_times: list[float] = field(default_factory=list)  # outputs' mtimes, seconds after the start, sorted
    user_seconds: float = 0.0  # CPU time of the process and every descendant it (or they) reaped
    system_seconds: float = 0.0


def run_process(
    args: list[str],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 900,
    check: bool = True,
    watch_rss: bool = False,
    progress: Callable[[], int] | None = None,
    interval: float = 0.2,
    log: Path | None = None,
    outputs: Path | None = None,
) -> Measured:
    """Run a command, timing it from start to exit; optionally sample its RSS and progress.

    The exit is caught by a blocking ``wait()`` (``Popen.wait(timeout)`` polls with sleeps of
    up to 50 ms, too coarse for a 100 ms process); sampling runs in a helper thread, and a
    watchdog timer stops the process (by its PID) after ``timeout`` seconds. With ``outputs``,
    the modification times of the files in that directory give when each output appeared.
    """
    import psutil

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started_wall = time.time()
        started = time.perf_counter()
        proc = subprocess.Popen(args, cwd=cwd, env=env or bench_env(), stdout=out, stderr=err, text=True)
        peak = [0]
        samples: list[tuple[float, int]] = []
        done = threading.Event()
        timed_out = threading.Event()

        def sample() -> None:
            handle = psutil.Process(proc.pid) if watch_rss else None
            while not done.wait(interval):
                if handle is not None:
                    with contextlib.suppress(psutil.Error):
                        peak[0] = max(peak[0], handle.memory_info().rss)
                if progress is not None:
                    samples.append((time.perf_counter() - started, progress()))

        def expire() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()

        sampler = threading.Thread(target=sample, daemon=True) if (watch_rss or progress) else None
        watchdog = threading.Timer(timeout, expire)
        watchdog.daemon = True
        watchdog.start()
        if sampler is not None:
            sampler.start()
        try:
            proc.wait()
        except BaseException:
            stop_process(proc)
            raise
        finally:
            seconds = time.perf_counter() - started
            watchdog.cancel()
            done.set()
            if sampler is not None:
                sampler.join()
        if progress is not None:
            samples.append((seconds, progress()))
        if timed_out.is_set():
            raise TimeoutError(f"{' '.join(args[:4])} ... did not finish within {timeout:g} s (stopped)")
        out.seek(0)
        err.seek(0)
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = Measured(seconds, proc.returncode, out.read(), err.read(), peak[0] / 2**20, samples,
                          user_seconds=used.ru_utime - before.ru_utime, system_seconds=used.ru_stime - before.ru_stime)
    if outputs is not None:
        result.output_times = output_times(outputs, started_wall)
    if log is not None:
        log.write_text(f"$ {' '.join(args)}\n# {seconds:.2f} s, exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    if check and result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"{' '.join(args[:4])} ... exited {result.returncode}:\n{tail}")
    return result


def stop_process(proc: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM our own child (by PID), SIGKILL if it does not go."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------ vQPU services


@dataclass
class Service:
    name: str
    event_file: Path
    process: subprocess.Popen
    start_seconds: float
    acquisition_token: str | None = None

    def client(self) -> Any:
        from snakemake_executor_plugin_quantum.backends.vqpu_client import VQPUClient

        return VQPUClient(self.name, {"QRMI_VQPU_EVENT_FILE": str(self.event_file)})

    def job_env(self) -> dict[str, str]:
        """What a job routed to this vQPU sees (as the executor or spank_qrmi would set it),
        with a token acquired from it once (the vQPU refuses tasks under unknown tokens)."""
        if self.acquisition_token is None:
            holder = self.client()
            self.acquisition_token = holder.acquire()
            holder.close()
        return bench_env(
            QRMI_JOB_QPU_RESOURCES=self.name,
            QRMI_JOB_QPU_TYPES="vqpu",
            **{
                f"{self.name}_QRMI_VQPU_EVENT_FILE": str(self.event_file),
                f"{self.name}_QRMI_JOB_ACQUISITION_TOKEN": self.acquisition_token,
            },
        )


@contextlib.contextmanager
def vqpu_service(name: str, event_dir: Path, lanes: int = 2, engine: str = "aer", seed: int | None = SEED,
                 timeout: float = 180) -> Iterator[Service]:
    """A warm vQPU (``vqpu serve``), started and stopped by its own PID."""
    event_dir.mkdir(parents=True, exist_ok=True)
    event_file = event_dir / f"{name}.json"
    extra = {f"{name}_QRMI_AER_SEED": str(seed)} if seed is not None else {}
    log_file = open(event_dir / f"{name}.log", "w")  # noqa: SIM115 - closed below
    started = time.perf_counter()
    proc = subprocess.Popen(
        [command("vqpu"), "serve", name, "--event-dir", str(event_dir), "--engine", engine, "--lanes", str(lanes),
         "--idle-timeout", "0"],
        env=bench_env(**extra), stdout=subprocess.DEVNULL, stderr=log_file,
    )
    try:
        while not event_file.exists():
            if proc.poll() is not None:
                raise RuntimeError(f"vqpu serve exited {proc.returncode}: {(event_dir / f'{name}.log').read_text()[-500:]}")
            if time.perf_counter() - started > timeout:
                raise RuntimeError(f"vqpu serve did not become ready within {timeout:g} s")
            time.sleep(0.02)
        yield Service(name, event_file, proc, time.perf_counter() - started)
    finally:
        stop_process(proc)
        log_file.close()


# ------------------------------------------------------------------ circuits


def ghz_qasm(n: int = 5, phase: float | None = None) -> str:
    """GHZ-n as OpenQASM 2; ``phase`` adds an rz before measurement that changes no outcome
    probability but makes the text (and so any preparation cache key) distinct."""
    lines = ["OPENQASM 2.0;", 'include "qelib1.inc";', f"qreg q[{n}];", f"creg c[{n}];", "h q[0];"]
    lines += [f"cx q[{i}],q[{i + 1}];" for i in range(n - 1)]
    if phase is not None:
        lines.append(f"rz({phase:.9f}) q[0];")
    lines.append("measure q -> c;")
    return "\n".join(lines) + "\n"


def layered_qasm(n: int = 16, layers: int = 10, seed: int = 7) -> str:
    """A fixed non-Clifford n-qubit circuit: ``layers`` of ry/rz on every qubit and a cx brick."""
    import random

    rng = random.Random(seed)
    lines = ["OPENQASM 2.0;", 'include "qelib1.inc";', f"qreg q[{n}];", f"creg c[{n}];"]
    for layer in range(layers):
        for q in range(n):
            lines.append(f"ry({rng.uniform(0, math.pi):.9f}) q[{q}];")
            lines.append(f"rz({rng.uniform(0, math.pi):.9f}) q[{q}];")
        lines += [f"cx q[{q}],q[{q + 1}];" for q in range(layer % 2, n - 1, 2)]
    lines.append("measure q -> c;")
    return "\n".join(lines) + "\n"


def sampler_payload(qasm: str, shots: int = SHOTS, seed: int = SEED) -> dict[str, Any]:
    return {
        "program_id": "sampler",
        "parameters": {"pubs": [[qasm]], "shots": shots, "version": 2,
                       "options": {"simulator": {"seed_simulator": seed}}},
    }


# Per-job script of the classical baseline: a fresh Python process imports Qiskit and Aer,
# transpiles and samples one circuit, and writes its counts (what users do without a vQPU).
AER_SCRIPT = '''\
import json, sys
from qiskit import qasm2, transpile
from qiskit_aer import AerSimulator

source, output, shots, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
circuit = qasm2.load(source)
simulator = AerSimulator(max_parallel_threads=1)
counts = simulator.run(transpile(circuit, simulator), shots=shots, seed_simulator=seed).result().get_counts()
with open(output, "w") as handle:
    json.dump({"shots": shots, "counts": counts}, handle)
'''


def write_circuits(directory: Path, count: int) -> list[Path]:
    """``count`` distinct GHZ-5 circuit files (see ``ghz_qasm``'s phase)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = directory / f"c{i}.qasm"
        if not path.exists():
            path.write_text(ghz_qasm(5, phase=0.001 * (i + 1)))
        paths.append(path)
    return paths


def vqpu_config(name: str, lanes: int = 2, seed: int = SEED) -> str:
    return (
        "resources:\n"
        f"  - name: {name}\n"
        "    type: vqpu\n"
        "    environment:\n"
        "      QRMI_VQPU_ENGINE: aer\n"
        f'      QRMI_VQPU_LANES: "{lanes}"\n'
        f'      QRMI_AER_SEED: "{seed}"\n'
    )


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def count_files(directory: Path) -> Callable[[], int]:
    def count() -> int:
        try:
            return sum(1 for _ in os.scandir(directory))
        except FileNotFoundError:
            return 0

    return count


def output_times(directory: Path, since_wall: float) -> list[float]:
    """When each file in ``directory`` was last written, in seconds after ``since_wall``, sorted."""
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    return sorted(entry.stat().st_mtime - since_wall for entry in entries)


# ------------------------------------------------------------------ machine


def machine_info() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    info = {
        "CPU": cpu,
        "cores": str(os.cpu_count()),
        "RAM": ram,
        "OS": platform.platform(),
        "Python": platform.python_version(),
    }
    for package in ("qiskit", "qiskit-aer", "snakemake", "snakemake-executor-plugin-slurm", "prefect", "fastapi",
                    "snakemake-executor-plugin-quantum"):
        try:
            info[package] = version(package)
        except PackageNotFoundError:
            info[package] = "not installed"
    with contextlib.suppress(OSError):
        info["load average at start"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    info["date"] = time.strftime("%Y-%m-%d %H:%M %Z")
    return info


def load_now() -> float:
    return os.getloadavg()[0]


class LoadWatch:
    """Samples the 1-minute load average during a benchmark (is the machine quiet?)."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(2.0):
            self.samples.append(load_now())

    def __enter__(self) -> LoadWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> float:
        return max(self.samples, default=load_now())


def dump_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, default=str) + "\n")


# ------------------------------------------------------------------ sampling workflows

SAMPLING_SNAKEFILE = '''\
N = int(config["n"])
CIRCUITS = config["circuits"]

rule all:
    input: expand("out/s{{i}}.json", i=range(N))

rule sample:
    input: CIRCUITS + "/c{{i}}.qasm"
    output: "out/s{{i}}.json"
{body}
'''
OURS_BODY = (
    '    resources: vqpu=1, vqpu_name="bench"\n'
    f'    shell: "qrun {{input}} --shots {SHOTS} -o {{output}}"\n'
)
BASE_BODY = f'    shell: "python aer_sample.py {{input}} {{output}} {SHOTS} {SEED}"\n'
# ours, each job with a log, as Snakemake's linter asks of every rule
LOGGED_BODY = (
    '    log: "logs/s{i}.log"\n'
    '    resources: vqpu=1, vqpu_name="bench"\n'
    f'    shell: "qrun {{input}} --shots {SHOTS} -o {{output}} 2> {{log}}"\n'
)


def sampling_workflow(directory: Path, side: str, logged: bool = False) -> Path:
    """A workflow of N sampling jobs: ``ours`` (qrun on a vQPU sidecar; ``logged``: with
    ``log:`` and ``2> {log}``) or ``base`` (a script per job)."""
    directory.mkdir(parents=True, exist_ok=True)
    body = (LOGGED_BODY if logged else OURS_BODY) if side == "ours" else BASE_BODY
    (directory / "Snakefile").write_text(SAMPLING_SNAKEFILE.format(body=body))
    if side == "ours":
        (directory / "qrmi_config.yaml").write_text(vqpu_config("bench", lanes=2))
    else:
        (directory / "aer_sample.py").write_text(AER_SCRIPT)
    return directory


FANOUT_SNAKEFILE = '''\
N = int(config["count"])

rule all:
    input: expand("out/{{i}}.{ext}", i=range(N))

rule job:
    output: "out/{{i}}.{ext}"
{body}'''
TOUCH_BODY = '    shell: "touch {output}"\n'


def fanout_workflow(directory: Path, body: str = TOUCH_BODY, ext: str = "txt") -> Path:
    """``--config count=N`` independent jobs, job i running ``body`` (a rule's lines) for ``out/{i}.<ext>``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Snakefile").write_text(FANOUT_SNAKEFILE.format(ext=ext, body=body))
    return directory


def reset_workflow(directory: Path) -> None:
    """Remove outputs and Snakemake's metadata: every run starts from nothing."""
    for name in ("out", "logs", ".snakemake"):
        shutil.rmtree(directory / name, ignore_errors=True)


def snakemake_args(side: str, cores: int = 2) -> list[str]:
    """Both sides with the scheduling ``profiles/local`` sets (our scheduler, no 100 jobs/s cap: B10)."""
    executor = "quantum" if side == "ours" else "local"
    return [command("snakemake"), "--executor", executor, "--cores", str(cores), "--scheduler", "quantum",
            "--max-jobs-per-timespan", "1000/1s"]


def run_sampling(directory: Path, side: str, n: int, circuits: Path, timeout: float = 900, extra: tuple[str, ...] = ()) -> Measured:
    reset_workflow(directory)
    (directory / "config.yaml").write_text(json.dumps({"n": n, "circuits": str(circuits)}) + "\n")
    result = run_process(
        [*snakemake_args(side), *extra, "--configfile", "config.yaml"],
        cwd=directory, timeout=timeout, outputs=directory / "out",
    )
    done = count_files(directory / "out")()
    if done != n:
        raise RuntimeError(f"{side} workflow in {directory} produced {done} of {n} outputs")
    return result


def pure_simulation_seconds(circuits: list[Path], sample: int = 20) -> float:
    """Median seconds to sample one of these circuits in a warm process (reused pass manager,
    1 thread): the simulation work every side has to do, with no dispatch at all."""
    from qiskit import qasm2
    from qiskit.transpiler import generate_preset_pass_manager
    from qiskit_aer import AerSimulator

    sim = AerSimulator(max_parallel_threads=1)
    pm = generate_preset_pass_manager(optimization_level=1, backend=sim)
    loaded = [qasm2.load(str(p)) for p in circuits[:sample]]
    sim.run(pm.run(loaded[0]), shots=SHOTS, seed_simulator=SEED).result()
    times = []
    for circuit in loaded:
        seconds, _ = time_call(lambda c=circuit: sim.run(pm.run(c), shots=SHOTS, seed_simulator=SEED).result().get_counts())
        times.append(seconds)
    return statistics.median(times)


def phases(result: Measured, total: int) -> tuple[float | None, float | None]:
    """(seconds until the first output appeared, jobs/s from the first to the last output), from the
    outputs' modification times when known, else from the sampled progress."""
    times = result.output_times
    if times:
        first, last = times[0], times[-1]
    else:
        first = next((t for t, n in result.samples if n >= 1), None)
        last = next((t for t, n in result.samples if n >= total), result.seconds)
    if first is None or total < 2 or last <= first:
        return first, None
    return first, (len(times) - 1 if times else total - 1) / (last - first)
