"""The example workflows under workflows/, run small with the quantum executor, checked for the science.

Each workflow is copied with circuits/ into a temporary tree that mirrors the repository
(so ``../../circuits`` resolves), planned with ``qplan --json`` and ``snakemake -n``, then
run once with the local profile and a small config file. The run happens in a
module-scoped fixture, so each test below checks one thing of a run it shares.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, Run, clean_env, command, quantum_processes, run, snakemake
from qrmi_payloads import within_sigmas

pytestmark = pytest.mark.slow

PROFILE = REPO / "profiles" / "local"
BUILD_OUTPUTS = shutil.ignore_patterns(".snakemake", "payloads", "samples", "results", "report*.html", "report*.zip", "__pycache__")

# Small sizes: the whole file runs in a few minutes on 2 cores.
SMALL = {
    "hybrid": """
ghz_sizes: [2, 5]
ghz_shots: 1000
maxcut_graphs: [ring4, k4]
qaoa_grid: 6
qaoa_shots: 256
rydberg_durations: [100, 700]
rydberg_shots: 300
""",
    "primitives": """
sampler_shots: 2000
estimator_points: 7
estimator_default_shots: 4000
""",
    "variational": """
initial_points: [0.5]
landscape_points: 11
""",
    "pulser": """
final_detunings: [-3, 9]
shots: 600
""",
    "sweep": """
circuits: 120
batch_size: 50
shots: 128
""",
}

# H2 (STO-3G, 0.735 Å, parity mapping, two-qubit reduction): the standard coefficients.
H2_TERMS = {"II": -1.052373245772859, "IZ": 0.39793742484318045, "ZI": -0.39793742484318045,
            "ZZ": -0.01128010425623538, "XX": 0.18093119978423156}
PAULI = {"I": np.eye(2), "X": np.array([[0, 1], [1, 0]]), "Y": np.array([[0, -1j], [1j, 0]]), "Z": np.diag([1, -1])}


@dataclass
class WorkflowRun:
    workdir: Path
    plan: dict
    dry_run: Run
    result: Run
    leftover_processes: list[str]
    leftover_event_files: list[Path]

    def json(self, path: str) -> dict:
        return json.loads((self.workdir / path).read_text())

    def vqpu_launches(self, name: str) -> int:
        log = self.workdir / ".snakemake" / "quantum" / "vqpu" / f"{name}.log"
        return log.read_text().count(" ready at ") if log.exists() else 0


def run_workflow(base: Path, name: str) -> WorkflowRun:
    shutil.copytree(REPO / "circuits", base / "circuits")
    workdir = base / "workflows" / name
    shutil.copytree(REPO / "workflows" / name, workdir, ignore=BUILD_OUTPUTS)
    (workdir / "small.yaml").write_text(SMALL[name])

    planned = run([command("qplan"), "--json", "--config-file", "small.yaml"], cwd=workdir, env=clean_env(), timeout=120)
    assert planned.returncode == 0, f"qplan failed: {planned.stderr[-3000:]}"
    dry_run = snakemake(workdir, "-n", "--executor", "quantum", "--configfile", "small.yaml", timeout=120)
    assert dry_run.returncode == 0, dry_run.stderr[-3000:]
    result = snakemake(workdir, "--profile", str(PROFILE), "--configfile", "small.yaml", timeout=300)
    assert result.returncode == 0, result.stderr[-5000:]

    deadline = time.monotonic() + 15  # the executor stops its vQPUs on exit; allow it to finish
    while (leftovers := [p for p in quantum_processes() if str(workdir) in p]) and time.monotonic() < deadline:
        time.sleep(0.2)
    events = sorted((workdir / ".snakemake" / "quantum" / "vqpu").glob("*.json"))
    return WorkflowRun(workdir, json.loads(planned.stdout), dry_run, result, leftovers, events)


def workflow_fixture(name: str):
    @pytest.fixture(scope="module", name=name)
    def fixture(tmp_path_factory: pytest.TempPathFactory) -> WorkflowRun:
        return run_workflow(tmp_path_factory.mktemp(name), name)

    return fixture


hybrid = workflow_fixture("hybrid")
primitives = workflow_fixture("primitives")
variational = workflow_fixture("variational")
pulser = workflow_fixture("pulser")
sweep = workflow_fixture("sweep")

# What qplan and snakemake -n must show of each workflow's quantum work at the small size.
EXPECTED_VQPUS = {
    "hybrid": {"vqpu_ghz": ("aer", 2), "vqpu_sweep": ("aer", 2), "vqpu_atoms": ("pulser", 2)},
    "primitives": {},
    "variational": {"vqpu": ("aer", 2)},
    "pulser": {"vqpu_pulser": ("pulser", 2)},
    "sweep": {"vqpu_sweep": ("aer", 3)},
}
EXPECTED_RESOURCES = {  # name: (type, jobs, shots)
    "hybrid": {"vqpu_ghz": ("vqpu", 2, 2000), "vqpu_sweep": ("vqpu", 2, 2 * 256 * 36), "vqpu_atoms": ("vqpu", 2, 600)},
    "primitives": {"aer": ("qiskit-aer", 2, 2000 + 4000 * 7 * 4)},
    "variational": {"vqpu": ("vqpu", 2, 0)},
    "pulser": {"vqpu_pulser": ("vqpu", 2, 1200)},
    "sweep": {"vqpu_sweep": ("vqpu", 3, 120 * 128)},
}
DRY_RUN_RESOURCES = {
    "hybrid": ["vqpu=1, vqpu_name=vqpu_ghz", "vqpu=1, vqpu_name=vqpu_sweep", "vqpu=1, vqpu_name=vqpu_atoms", "gpu=1"],
    "primitives": ["qpu=1, qpu_name=aer"],
    "variational": ["vqpu=1"],
    "pulser": ["vqpu=1, vqpu_name=vqpu_pulser"],
    "sweep": ["vqpu=1, vqpu_name=vqpu_sweep"],
}


@pytest.mark.parametrize("name", list(SMALL))
def test_qplan_lists_the_quantum_resources_and_vqpus(name: str, request: pytest.FixtureRequest) -> None:
    plan = request.getfixturevalue(name).plan
    vqpus = {v["name"]: (v["engine"], v["jobs"]) for v in plan["vqpus"]}
    assert vqpus == EXPECTED_VQPUS[name]
    assert all(not v["external"] for v in plan["vqpus"]), "the executor launches every vQPU of the examples"
    resources = {r["name"]: (r["type"], r["jobs"], r["shots"]) for r in plan["resources"]}
    assert resources == EXPECTED_RESOURCES[name]


@pytest.mark.parametrize("name", list(SMALL))
def test_dry_run_shows_the_quantum_resources_of_the_jobs(name: str, request: pytest.FixtureRequest) -> None:
    dry_run = request.getfixturevalue(name).dry_run
    shown = dry_run.stdout + dry_run.stderr
    for resources in DRY_RUN_RESOURCES[name]:
        assert resources in shown, f"snakemake -n does not show {resources}"


@pytest.mark.parametrize("name", list(SMALL))
def test_run_leaves_no_vqpu_process_or_event_file(name: str, request: pytest.FixtureRequest) -> None:
    finished = request.getfixturevalue(name)
    assert finished.leftover_processes == []
    assert finished.leftover_event_files == []


# ------------------------------------------------------------------ hybrid


def test_hybrid_ghz_samples_are_half_all_zeros_and_half_all_ones(hybrid: WorkflowRun) -> None:
    for n in (2, 5):
        (register,) = hybrid.json(f"samples/ghz{n}.json")["pubs"][0]["registers"].values()
        counts = register["counts"]
        assert set(counts) == {"0" * n, "1" * n}
        assert not within_sigmas(counts, {"0" * n: 0.5, "1" * n: 0.5}, 1000)
    assert hybrid.json("results/summary.json")["ghz"] == {"2": 1.0, "5": 1.0}


def cut(bits: str, edges: list[tuple[int, int]]) -> int:
    """Edges cut by a bitstring (Qiskit order: the last character is node 0)."""
    return sum(bits[-1 - i] != bits[-1 - j] for i, j in edges)


def test_hybrid_qaoa_samples_contain_the_maxcut_optimum(hybrid: WorkflowRun) -> None:
    graphs = {"ring4": [(0, 1), (1, 2), (2, 3), (3, 0)], "k4": list(itertools.combinations(range(4), 2))}
    summary = hybrid.json("results/summary.json")["maxcut"]
    for graph, edges in graphs.items():
        optimum = max(cut("".join(b), edges) for b in itertools.product("01", repeat=4))
        (register,) = hybrid.json(f"samples/maxcut_{graph}.json")["pubs"][0]["registers"].values()
        points = [point for row in register["counts"] for point in row]
        assert len(points) == 36 and all(sum(p.values()) == 256 for p in points)
        assert max(cut(b, edges) for point in points for b in point) == optimum
        best_mean = max(sum(cut(b, edges) * c for b, c in point.items()) / 256 for point in points)
        assert best_mean > len(edges) / 2, "QAOA must beat random guessing somewhere on the grid"
        assert summary[graph]["optimum"] == summary[graph]["best_sampled"] == optimum


def test_hybrid_rydberg_fraction_grows_with_pulse_length(hybrid: WorkflowRun) -> None:
    fractions = hybrid.json("results/summary.json")["rydberg"]
    assert fractions["100"] < 0.1 < fractions["700"]


def test_hybrid_report_plots_are_written(hybrid: WorkflowRun) -> None:
    for plot in ("ghz", "maxcut", "rydberg"):
        assert (hybrid.workdir / "results" / "plots" / f"{plot}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------ primitives


def read_tsv(path: Path) -> list[dict[str, str]]:
    header, *lines = path.read_text().splitlines()
    return [dict(zip(header.split("\t"), line.split("\t"), strict=True)) for line in lines]


def test_primitives_sampler_table_has_the_bell_outcomes(primitives: WorkflowRun) -> None:
    rows = {row["outcome"]: row for row in read_tsv(primitives.workdir / "results" / "sampler.tsv")}
    assert set(rows) == {"00", "11"}
    counts = {outcome: int(row["count"]) for outcome, row in rows.items()}
    assert sum(counts.values()) == 2000
    assert not within_sigmas(counts, {"00": 0.5, "11": 0.5}, 2000)
    assert primitives.json("results/sampler.json")["resource"] == {"name": "aer", "type": "qiskit-aer"}


def test_primitives_estimator_table_matches_exact_values_within_five_sigma(primitives: WorkflowRun) -> None:
    rows = read_tsv(primitives.workdir / "results" / "estimator.tsv")
    assert len(rows) == 7
    for row in rows:
        theta = float(row["theta0"])
        exact = {"ZZ": 1.0, "IZ": math.cos(theta), "XX": math.sin(theta), "YY": -math.sin(theta)}
        for observable, value in exact.items():
            std = float(row[f"{observable}_std"])
            assert std == pytest.approx(1 / math.sqrt(4000), rel=1e-3)
            assert float(row[f"{observable}_exact"]) == pytest.approx(value, abs=1e-4)
            assert abs(float(row[observable]) - value) < 5 * std + 1e-4, (observable, row)


def test_primitives_payloads_are_isa_circuits_on_physical_qubits(primitives: WorkflowRun) -> None:
    for program in ("sampler", "estimator"):
        payload = primitives.json(f"payloads/{program}.json")
        assert payload["program_id"] == program and payload["parameters"]["version"] == 2
        qasm = payload["parameters"]["pubs"][0][0]
        assert qasm.startswith("OPENQASM 3.0;") and "$0" in qasm and "cz $" in qasm


# ------------------------------------------------------------------ variational


def test_vqe_energy_is_within_10_mha_of_exact_diagonalisation(variational: WorkflowRun) -> None:
    matrix = sum(c * np.kron(PAULI[p[0]], PAULI[p[1]]) for p, c in H2_TERMS.items())
    exact = float(np.linalg.eigvalsh(matrix)[0])
    summary = variational.json("results/summary.json")
    assert summary["exact_energy"] == pytest.approx(exact, abs=1e-9)
    assert exact == pytest.approx(-1.857275, abs=1e-6)
    assert abs(summary["vqe_energy"] - exact) < 1e-2
    (run_,) = summary["runs"]
    assert run_["converged"] and abs(run_["energy"] - exact) < 1e-2


def test_vqe_evaluates_every_energy_on_one_warm_vqpu(variational: WorkflowRun) -> None:
    vqe = variational.json("results/vqe/run0.json")
    assert vqe["resource"] == {"name": "vqpu", "type": "vqpu"}
    assert vqe["evaluations"] == len(vqe["trace"]) > 5
    assert vqe["trace"][-1]["energy"] < vqe["trace"][0]["energy"]
    assert variational.vqpu_launches("vqpu") == 1
    assert (variational.workdir / "results" / "plots" / "trace.png").stat().st_size > 10_000


# ------------------------------------------------------------------ pulser


def direct_probabilities(sequence_json: str) -> dict[str, float]:
    """Emulate the sequence with pulser_simulation here, independently of the vQPU."""
    from pulser import Sequence
    from pulser_simulation import QutipEmulator

    sequence = Sequence.from_abstract_repr(sequence_json)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # QutipEmulator: the classic interface
        state = QutipEmulator.from_sequence(sequence).run().get_final_state()
    amplitudes = state.full().ravel()
    atoms = len(sequence.register.qubit_ids)
    # Pulser's ground-rydberg basis orders |r> before |g>; we write r as 1.
    labels = ["".join(bits) for bits in itertools.product("10", repeat=atoms)]
    probabilities = {label: float(abs(a) ** 2) for label, a in zip(labels, amplitudes, strict=True)}
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-6)
    return probabilities


@pytest.mark.parametrize("delta", ["-3", "9"])
def test_pulser_counts_match_direct_emulation_within_five_sigma(pulser: WorkflowRun, delta: str) -> None:
    payload = pulser.json(f"payloads/delta_{delta}.json")
    result = pulser.json(f"samples/delta_{delta}.json")
    assert result["resource"] == {"name": "vqpu_pulser", "type": "vqpu"}
    assert sum(result["counts"].values()) == result["shots"] == payload["job_runs"] == 600
    probabilities = direct_probabilities(payload["sequence"])
    assert not within_sigmas(result["counts"], probabilities, 600)


def test_pulser_chain_ends_in_the_crystal_far_above_resonance(pulser: WorkflowRun) -> None:
    sweep = {row["final_detuning"]: row for row in pulser.json("results/summary.json")["sweep"]}
    assert sweep[-3.0]["p_crystal"] < 0.1 < 0.7 < sweep[9.0]["p_crystal"]


# ------------------------------------------------------------------ sweep


def test_sweep_runs_every_circuit_in_one_pub_of_a_few_batch_jobs(sweep: WorkflowRun) -> None:
    sizes = [len(sweep.json(f"samples/batch{b}.json")["pubs"]) for b in range(3)]
    assert sizes == [50, 50, 20]
    assert not (sweep.workdir / "samples" / "batch3.json").exists()
    summary = sweep.json("results/summary.json")
    assert summary["circuits"] == 120 and summary["jobs"] == 3 and summary["shots"] == 120 * 128
    rows = read_tsv(sweep.workdir / "results" / "circuits.tsv")
    assert [int(r["index"]) for r in rows] == list(range(120))
    assert sweep.vqpu_launches("vqpu_sweep") == 1


def test_sweep_ghz_circuits_give_only_all_zeros_and_all_ones(sweep: WorkflowRun) -> None:
    ghz = 0
    for batch in range(3):
        ideal = sweep.json(f"payloads/batch{batch}.ideal.json")["circuits"]
        pubs = sweep.json(f"samples/batch{batch}.json")["pubs"]
        for circuit, pub in zip(ideal, pubs, strict=True):
            (register,) = pub["registers"].values()
            counts = register["counts"]
            assert sum(counts.values()) == 128
            if circuit["kind"] == "ghz":
                ghz += 1
                n = circuit["qubits"]
                assert set(counts) <= {"0" * n, "1" * n}, circuit["index"]
            assert all(circuit["probabilities"].get(bits, 0) > 0 for bits in counts), "an impossible outcome was sampled"
    assert ghz > 5
    summary = sweep.json("results/summary.json")
    assert summary["ghz_circuits"] == ghz and summary["ghz_all_correct"] and summary["impossible_shots"] == 0


def test_sweep_samples_differ_from_exact_by_shot_noise_only(sweep: WorkflowRun) -> None:
    assert 0.75 < sweep.json("results/summary.json")["mean_tvd_over_noise"] < 1.25
