"""Qiskit Aer as a primitive engine: sampler and estimator tasks, warm and cached.

An engine is built once per resource (in ``qrun`` for an in-process resource, once per
vQPU service) and reused for every task: the simulator, the pass manager for its
target and the prepared circuits (parsed, compacted, transpiled) are all cached, keyed
by circuit text, because a sweep sends the same circuit with new parameters.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, PayloadError, ResourceLimitError
from ..payloads import circuits as circuit_tools
from ..payloads import observables as observable_tools
from ..payloads.model import EstimatorPub, Limits, PrimitiveTask, SamplerPub
from ..payloads.results import nest
from .aer_options import AerOptions, dense_qubit_limit, fake_device, human_mb
from .memory import available_memory_mb

__all__ = ["AerEngine", "AerOptions", "Prepared"]

log = logging.getLogger(__name__)

# Up to this many active qubits a circuit is sampled with the statevector method, even a
# Clifford one that Aer's automatic choice would give the (there slower) stabilizer method.
SMALL_DENSE_QUBITS = 10
CLIFFORD = frozenset({"h", "s", "sdg", "x", "y", "z", "cx", "cz", "cy", "swap", "sx", "sxdg", "id", "ecr", "measure", "barrier", "reset"})


@dataclass(frozen=True)
class Prepared:
    """A circuit ready to run, and how it maps to the circuit as written.

    Picklable and small (the written 133-qubit circuit is not kept): the vQPU front end
    prepares once and sends this to a worker process.
    """

    parameters: tuple[Any, ...]  # binding order of parameter values
    physical: bool  # written on hardware qubits
    runnable: Any  # transpiled for the simulator (compact, or laid out on the device)
    active: tuple[int, ...]  # qubits kept, as indices of the written circuit
    width: int
    layout: Any  # device layout when transpiled onto a device target, else None
    control_flow: bool = False  # loops or branches: may run long, even forever
    size: int = 0  # operations in ``runnable``
    depth: int = 0  # of ``runnable`` (what the simulator ran), for the per-task metrics

    @classmethod
    def of(cls, parameters: tuple[Any, ...], physical: bool, runnable: Any, active: tuple[int, ...], width: int, layout: Any) -> Prepared:
        return cls(parameters, physical, runnable, active, width, layout, _has_control_flow(runnable), runnable.size(),
                   runnable.depth())


class AerEngine:
    engine = "aer"

    def __init__(
        self, options: AerOptions = AerOptions(), limits: Limits = Limits(), cache_size: int = 512, dedicated: bool = False
    ):
        """``dedicated``: this engine is the only user of Qiskit and Aer in its process (a
        vQPU's front end and workers, ``qrun``'s simulating child), so it may (1) build its
        pass manager without importing other packages' transpiler plugins
        (``_builtin_stage_plugins``) and (2) have Aer run simulations in the calling thread
        (``_run_aer_in_calling_thread``)."""
        from qiskit.transpiler import generate_preset_pass_manager
        from qiskit_aer import AerSimulator

        self.options = options
        self.limits = limits
        self._device_backend = fake_device(options.noise_model) if options.noise_model else None
        backend_options: dict[str, Any] = {"method": options.method, "device": options.device, "max_parallel_threads": options.threads}
        if self._device_backend is not None:
            self.simulator = AerSimulator.from_backend(self._device_backend, **backend_options)
            target = self._device_backend.target
        else:
            self.simulator = AerSimulator(**backend_options)
            target = None
        if options.device == "GPU" and "GPU" not in self.simulator.available_devices():
            raise ConfigError("QRMI_AER_DEVICE=GPU but this qiskit-aer has no GPU support (install qiskit-aer-gpu)")
        self._backend_options = backend_options
        self._dense: Any = None  # built on first use: see _as_dense
        # Built once per target: pass-manager construction is most of a naive transpile.
        if dedicated:
            _run_aer_in_calling_thread()
        with _builtin_stage_plugins() if dedicated else contextlib.nullcontext():
            if target is not None:
                self.pass_manager = generate_preset_pass_manager(optimization_level=1, target=target)
            else:
                self.pass_manager = generate_preset_pass_manager(optimization_level=1, backend=self.simulator)
        self._cache: OrderedDict[tuple[str, str], Prepared] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ public

    def target(self) -> dict[str, Any]:
        import qiskit_aer

        return {
            "engine": "aer",
            "simulator": f"qiskit-aer {qiskit_aer.__version__}",
            "method": self.options.method,
            "device": self.options.device,
            "noise_model": self.options.noise_model,
            "num_qubits": self._max_qubits(),
            "max_shots": self.limits.max_shots,
            "programs": ["sampler", "estimator"],
        }

    def warm_up(self, parse: bool = True, simulate: bool = True) -> None:
        """Pay first-use costs now, not in a real task: ``parse`` QASM 2 and 3 and a payload
        (imports the QASM 3 parser and the payload schema), ``simulate`` a tiny circuit with
        each program (the estimator's first run imports Aer's primitives: a vQPU's first VQE
        energy took 20.6 ms without this, 3.9 ms with it).

        A vQPU's lane workers never parse (the front end prepares), so they skip it."""
        if parse:
            from ..payloads.parse import parse_payload

            bell2 = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; creg c[2]; h q[0]; cx q[0],q[1]; measure q -> c;'
            bell3 = 'OPENQASM 3.0; include "stdgates.inc"; qubit[2] q; bit[2] c; h q[0]; cx q[0], q[1]; c = measure q;'
            tasks = [parse_payload({"program_id": "sampler", "parameters": {"pubs": [[bell2], [bell3]], "shots": 8}}),
                     parse_payload({"program_id": "estimator", "parameters": {"pubs": [[bell2, "ZZ"]]}})]
        else:
            from qiskit import QuantumCircuit

            bell = QuantumCircuit(2, 2)
            bell.h(0)
            bell.cx(0, 1)
            bell.measure([0, 1], [0, 1])
            tasks = [PrimitiveTask("sampler", (SamplerPub(bell),), shots=8, seed=0),
                     PrimitiveTask("estimator", (EstimatorPub(bell, "ZZ"),), seed=0)]
        for task in tasks:
            prepared = self.check(task)
            if simulate:
                self.run(PrimitiveTask(task.program, task.pubs, shots=task.shots, seed=0), prepared)
        with self._lock:
            self._cache.clear()

    def is_small(self, task: PrimitiveTask, prepared: list[Prepared]) -> bool:
        """Cheaper to run than to hand to another process: a few ms at most.

        Small circuits with a few parameter sets: a sampler's shots, or an estimator's few
        Pauli terms (a VQE step's energy), whose exact values Aer computes in one
        simulation per set. Never a circuit with control flow: a loop may never end, and a
        task run inline cannot be stopped at its deadline."""
        if self._device_backend is not None or len(prepared) > 4:
            return False
        if not all(len(p.active) <= 12 and p.size <= 500 and not p.control_flow for p in prepared):
            return False
        sets = [_parameter_sets(p, pub.parameter_values) for p, pub in zip(prepared, task.pubs, strict=True)]
        if sum(sets) > 16:
            return False
        if task.program == "sampler":
            return sum((pub.shots or task.shots or 0) * n for pub, n in zip(task.pubs, sets, strict=True)) <= 100_000
        return sum(_pauli_terms(pub.observables) * n for pub, n in zip(task.pubs, sets, strict=True)) <= 256

    def check(self, task: PrimitiveTask, cached_only: bool = False) -> list[Prepared] | None:
        """Fail now, with the pub named, on anything that would fail the run.

        Returns the prepared circuits, which ``run`` accepts instead of preparing again;
        with ``cached_only``, None unless every circuit is prepared already (so the check
        costs microseconds, not a transpilation).
        """
        out = []
        for i, pub in enumerate(task.pubs):
            where = f"pub {i}"
            if cached_only:
                hit = self._cached(pub.circuit, task.program)
                if hit is None:
                    return None
                prepared = hit
            else:
                prepared = self.prepare(pub.circuit, task.program, where)
            bindings = circuit_tools.bindings(prepared, pub.parameter_values, where, self.limits.max_parameter_sets)
            if task.program == "estimator":
                observables = self._observables(prepared, pub, where)
                _check_broadcast(observables.shape, bindings.shape, where)
            out.append(prepared)
        return out

    def run(
        self, task: PrimitiveTask, prepared: list[Prepared] | None = None, threads: int | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Run a validated task; returns (result body, metadata).

        ``threads`` overrides the configured OpenMP threads for this task's sampling (a vQPU
        lane running alone may use its idle neighbours' cores).
        """
        started = time.perf_counter()
        seed = task.seed if task.seed is not None else self.options.seed
        if seed is None:
            seed = secrets.randbits(31)
        if prepared is None:
            prepared = [self.prepare(pub.circuit, task.program, f"pub {i}") for i, pub in enumerate(task.pubs)]
        if task.program == "sampler":
            pubs = self._sample_all(prepared, task, seed, threads)
            body: dict[str, Any] = {"shots": sum(p["shots"] * p["parameter_sets"] for p in pubs), "pubs": pubs}
        else:
            pubs = self._estimate(prepared, task, seed)
            body = {"pubs": pubs}
        metadata = {
            "engine": "aer",
            "method": self.options.method,
            "device": self.options.device,
            "noise_model": self.options.noise_model,
            "seed": seed,
            "active_qubits": [list(p.active) for p in prepared],
            "depths": [p.depth for p in prepared],
            "run_seconds": round(time.perf_counter() - started, 6),
        }
        if task.ignored_options:
            metadata["ignored_options"] = list(task.ignored_options)
        return body, metadata

    def _cached(self, source: Any, program: str) -> Prepared | None:
        if not isinstance(source, str):
            return None
        with self._lock:
            return self._cache.get((source, program))

    def prepare(self, source: Any, program: str, where: str) -> Prepared:
        if isinstance(source, str) and len(source) > self.limits.max_circuit_chars:
            raise ResourceLimitError(f"{where}: circuit text exceeds {self.limits.max_circuit_chars} characters")
        key = (source, program) if isinstance(source, str) else None
        if key is not None:
            with self._lock:
                hit = self._cache.get(key)
                if hit is not None:
                    self._cache.move_to_end(key)
                    return hit
        prepared = self._prepare(source, program, where)
        if key is not None:
            with self._lock:
                self._cache[key] = prepared
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return prepared

    # ----------------------------------------------------------------- prepare

    def _prepare(self, source: Any, program: str, where: str) -> Prepared:
        loaded = circuit_tools.load_circuit(source, where)
        circuit = loaded.circuit
        if circuit.num_qubits == 0:
            raise PayloadError(f"{where}: the circuit has no qubits")
        if program == "estimator":
            circuit = circuit.remove_final_measurements(inplace=False)
        elif not _measures(circuit):
            raise PayloadError(f"{where}: the circuit measures nothing; a sampler returns measured bits only")
        if self._device_backend is not None:
            return self._prepare_on_device(loaded, circuit, where)
        compacted = circuit_tools.compact(circuit)
        self._check_memory(compacted.circuit, len(compacted.active), where)
        runnable = self._transpile(compacted.circuit, where)
        return Prepared.of(loaded.parameters, loaded.physical, runnable, compacted.active, compacted.width, None)

    def _prepare_on_device(self, loaded: circuit_tools.LoadedCircuit, circuit: Any, where: str) -> Prepared:
        """With a device noise model, qubits keep their physical positions (noise is per qubit)."""
        active = circuit_tools.active_qubits(circuit)
        device_qubits = self._device_backend.num_qubits
        if loaded.physical:
            if circuit.num_qubits > device_qubits:
                raise PayloadError(f"{where}: circuit uses qubit {circuit.num_qubits - 1} but {self.options.noise_model} has {device_qubits}")
            self._check_memory(circuit, len(active), where)
            return Prepared.of(loaded.parameters, True, circuit, tuple(range(circuit.num_qubits)), circuit.num_qubits, None)
        self._check_memory(circuit, len(active), where)
        runnable = self._transpile(circuit, where)
        return Prepared.of(loaded.parameters, False, runnable, tuple(range(circuit.num_qubits)), circuit.num_qubits, runnable.layout)

    def _transpile(self, circuit: Any, where: str) -> Any:
        from qiskit.transpiler.exceptions import TranspilerError

        try:
            return self.pass_manager.run(circuit)
        except TranspilerError as exc:
            raise PayloadError(f"{where}: cannot map the circuit onto the simulator: {str(exc).splitlines()[0]}") from None

    def _max_qubits(self) -> int | None:
        if self.options.method in ("matrix_product_state", "stabilizer"):
            return None  # no dense state: limited by entanglement or gate set, not memory
        return dense_qubit_limit(self.options.method, self.options.max_memory_mb or available_memory_mb())

    def _check_memory(self, circuit: Any, qubits: int, where: str) -> None:
        method = self.options.method
        if method in ("matrix_product_state", "stabilizer"):
            return
        if method == "automatic" and set(circuit.count_ops()) <= CLIFFORD:
            return  # Aer picks the stabilizer method: no dense state
        budget_mb = self.options.max_memory_mb or available_memory_mb()
        limit = dense_qubit_limit(method, budget_mb)
        if qubits > limit:
            kind = "statevector" if method == "automatic" else method
            raise ResourceLimitError(
                f"{where}: {qubits} active qubits exceed the {limit} that fit in {human_mb(budget_mb)} "
                f"with the {kind} method; use QRMI_AER_METHOD=matrix_product_state or fewer qubits"
            )

    # ------------------------------------------------------------------ sample

    def _sample_all(self, prepared: list[Prepared], task: PrimitiveTask, seed: int, threads: int | None = None) -> list[dict[str, Any]]:
        """All pubs with the same shot count in one simulator call (a sweep sends hundreds)."""
        plans = []
        for index, (p, pub) in enumerate(zip(prepared, task.pubs, strict=True)):
            where = f"pub {index}"
            bindings = circuit_tools.bindings(p, pub.parameter_values, where, self.limits.max_parameter_sets)
            binds: dict[Any, list[float]] = {}
            sets = 1
            if p.parameters:
                values = bindings.as_array(p.parameters).reshape(-1, len(p.parameters))
                sets = values.shape[0]
                if sets == 0:
                    raise PayloadError(f"{where}: parameter_values hold no parameter set")
                binds = {param: values[:, j].tolist() for j, param in enumerate(p.parameters)}
            plans.append((index, p, pub.shots or task.shots, tuple(bindings.shape), sets, binds))
        out: list[dict[str, Any] | None] = [None] * len(plans)
        groups: dict[tuple[int, bool], list[Any]] = {}
        for plan in plans:
            groups.setdefault((plan[2], self._as_dense(plan[1])), []).append(plan)
        for (shots, dense), group in sorted(groups.items()):
            kwargs: dict[str, Any] = {"shots": shots, "seed_simulator": seed + group[0][0]}
            if threads:
                kwargs["max_parallel_threads"] = threads
            if any(binds for *_, binds in group):
                kwargs["parameter_binds"] = [binds for *_, binds in group]
            where = f"pub {group[0][0]}" if len(group) == 1 else f"pubs {', '.join(str(plan[0]) for plan in group)}"
            simulator = self._dense_simulator() if dense else self.simulator
            result = self._run_simulator(simulator, [plan[1].runnable for plan in group], kwargs, where)
            experiment = 0
            for index, p, _, shape, sets, _ in group:
                out[index] = self._pub_counts(result, experiment, p.runnable, shots, shape, sets, f"pub {index}")
                experiment += sets
        return out  # type: ignore[return-value]

    def _as_dense(self, prepared: Prepared) -> bool:
        """Sample this circuit as a statevector rather than by Aer's ``automatic`` choice?

        Aer's ``automatic`` runs a Clifford circuit (a GHZ or Bell state, say) with the
        stabilizer method, whatever its size; up to ~10 qubits a statevector samples the
        same distribution faster (GHZ-5, 1,024 shots, one thread: 1.16 against 1.73 ms).
        The choice depends only on the circuit, so a pub's counts for a seed do not depend
        on the other pubs it is sent with.
        """
        return (self.options.method == "automatic" and self.options.device == "CPU" and self._device_backend is None
                and len(prepared.active) <= SMALL_DENSE_QUBITS)

    def _pub_counts(self, result: Any, first: int, circuit: Any, shots: int, shape: tuple[int, ...], sets: int, where: str) -> dict[str, Any]:
        from qiskit.exceptions import QiskitError

        registers = _registers(circuit)
        per_register: dict[str, list[dict[str, int]]] = {name: [] for name, _ in registers}
        for experiment in range(first, first + sets):
            try:
                joint = result.get_counts(experiment)
            except QiskitError:
                raise PayloadError(f"{where}: the simulation returned no counts (nothing measured?)") from None
            for name, counts in _split_registers(joint, registers).items():
                per_register[name].append(counts)
        return {
            "shape": list(shape),
            "shots": shots,
            "parameter_sets": sets,
            "registers": {
                name: {"num_bits": size, "counts": nest(per_register[name], shape)} for name, size in registers
            },
        }

    def _dense_simulator(self) -> Any:
        """The simulator with the statevector method set (as a run option it costs more than it saves)."""
        if self._dense is None:
            from qiskit_aer import AerSimulator

            self._dense = AerSimulator(**dict(self._backend_options, method="statevector"))
        return self._dense

    def _run_simulator(self, simulator: Any, circuit: Any, kwargs: dict[str, Any], where: str) -> Any:
        from qiskit_aer import AerError

        try:
            result = simulator.run(circuit, **kwargs).result()
        except AerError as exc:
            raise PayloadError(f"{where}: simulator rejected the circuit: {str(exc).splitlines()[0]}") from None
        if not result.success:
            raise PayloadError(f"{where}: simulation failed: {_status_line(result)}")
        return result

    # ---------------------------------------------------------------- estimate

    def _estimate(self, prepared: list[Prepared], task: PrimitiveTask, seed: int) -> list[dict[str, Any]]:
        from qiskit_aer.primitives import EstimatorV2

        estimator = EstimatorV2(
            options={
                "backend_options": dict(self._backend_options, **self._noise_options()),
                "run_options": {"seed_simulator": seed},
                "default_precision": task.precision or 0.0,
            }
        )
        pubs = []
        for i, (p, pub) in enumerate(zip(prepared, task.pubs, strict=True)):
            where = f"pub {i}"
            observables = self._observables(p, pub, where)
            bindings = circuit_tools.bindings(p, pub.parameter_values, where, self.limits.max_parameter_sets)
            _check_broadcast(observables.shape, bindings.shape, where)
            precision = pub.precision if pub.precision is not None else (task.precision or 0.0)
            pubs.append((p.runnable, observables, bindings, precision))
        try:
            results = estimator.run(pubs).result()
        except (ValueError, TypeError) as exc:
            raise PayloadError(f"estimator rejected the task: {str(exc).splitlines()[0]}") from None
        out = []
        for (_, _, _, precision), result in zip(pubs, results, strict=True):
            evs, stds = result.data.evs, result.data.stds
            out.append({"shape": list(evs.shape), "evs": evs.tolist(), "stds": stds.tolist(), "precision": precision})
        return out

    def _observables(self, prepared: Prepared, pub: Any, where: str) -> Any:
        observables = observable_tools.coerce(pub.observables, where)
        observables = observable_tools.restrict(observables, prepared.active, prepared.width, prepared.physical, where)
        if prepared.layout is not None:
            observables = observables.apply_layout(prepared.layout, self._device_backend.num_qubits)
        return observables

    def _noise_options(self) -> dict[str, Any]:
        if self._device_backend is None:
            return {}
        from qiskit_aer.noise import NoiseModel

        return {"noise_model": NoiseModel.from_backend(self._device_backend)}


def _parameter_sets(prepared: Prepared, values: Any) -> int:
    """How many parameter sets a pub binds (its values were checked already)."""
    if not prepared.parameters:
        return 1
    import numpy as np

    return max(1, np.asarray(values, dtype=float).size // len(prepared.parameters))


def _pauli_terms(observables: Any) -> int:
    """Terms in observables as a payload writes them (a label, a {label: coeff} map, or
    nested lists of those); anything else counts as too many to run inline."""
    if isinstance(observables, str):
        return 1
    if isinstance(observables, dict):
        return len(observables)
    if isinstance(observables, (list, tuple)):
        return sum(_pauli_terms(item) for item in observables)
    return 1 << 30


def _check_broadcast(obs_shape: tuple[int, ...], bind_shape: tuple[int, ...], where: str) -> None:
    import numpy as np

    try:
        np.broadcast_shapes(obs_shape, bind_shape)
    except ValueError:
        raise PayloadError(f"{where}: observables of shape {obs_shape} do not broadcast with parameter sets of shape {bind_shape}") from None


@contextlib.contextmanager
def _builtin_stage_plugins() -> Iterator[None]:
    """While a preset pass manager is built, offer Qiskit only its own stage plugins.

    Qiskit's ``PassManagerStagePluginManager`` imports every installed stage plugin
    (stevedore, ``invoke_on_load=True``); qiskit-ibm-runtime registers translation
    plugins, so building any pass manager imports all of qiskit-ibm-runtime: 2.3 s of
    CPU measured, in every process that builds one. Our pass managers use only the
    built-in ("default") stages, which stay visible, so the result is the same pass
    manager. If stevedore changes shape, nothing is hidden.
    """
    try:
        from stevedore import ExtensionManager

        original = ExtensionManager.list_entry_points
    except (ImportError, AttributeError):
        yield
        return

    def builtin_only(self: Any) -> Any:
        entry_points = original(self)
        if not str(getattr(self, "namespace", "")).startswith("qiskit.transpiler."):
            return entry_points
        return [ep for ep in entry_points if str(getattr(ep, "value", "")).startswith("qiskit.")]

    ExtensionManager.list_entry_points = builtin_only  # type: ignore[method-assign]
    try:
        yield
    finally:
        ExtensionManager.list_entry_points = original  # type: ignore[method-assign]


class _CallingThread:
    """An executor that runs what it is given at once, in the caller's thread."""

    def submit(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from concurrent.futures import Future

        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to whoever calls result(), as a thread would
            future.set_exception(exc)
        return future


_AER_IN_CALLING_THREAD = False


def _run_aer_in_calling_thread() -> None:
    """Make ``AerSimulator.run`` simulate in the calling thread, in this process and its forks.

    Aer hands every run to one process-wide worker thread (``qiskit_aer.jobs.utils.
    DEFAULT_EXECUTOR``) and the caller waits for it: a thread switch per task, measured at
    3.2 ms vs 7.0 ms for a GHZ-5 on a busy 2-core machine. Aer replaces that executor in
    forked children, so we set ours again after it does. Only for dedicated engines: code
    that expects ``run`` to return before the simulation ends would block instead.
    """
    global _AER_IN_CALLING_THREAD
    if _AER_IN_CALLING_THREAD:
        return
    try:
        from qiskit_aer.jobs import utils as aer_jobs
    except ImportError:
        return
    if not hasattr(aer_jobs, "DEFAULT_EXECUTOR"):
        return  # another Aer: leave it as it is

    def install() -> None:
        aer_jobs.DEFAULT_EXECUTOR = _CallingThread()

    install()
    os.register_at_fork(after_in_child=install)  # runs after Aer's own reset
    _AER_IN_CALLING_THREAD = True


def _has_control_flow(circuit: Any) -> bool:
    from qiskit.circuit import ControlFlowOp

    return any(isinstance(instruction.operation, ControlFlowOp) for instruction in circuit.data)


def _measures(circuit: Any) -> bool:
    """Does anything measure (also inside control-flow blocks)?"""
    for instruction in circuit.data:
        if instruction.operation.name == "measure":
            return True
        if any(_measures(block) for block in getattr(instruction.operation, "blocks", ())):
            return True
    return False


def _registers(circuit: Any) -> list[tuple[str, int]]:
    if circuit.cregs:
        return [(creg.name, creg.size) for creg in circuit.cregs]
    return [("c", circuit.num_clbits)]


def _split_registers(joint: dict[str, int], registers: list[tuple[str, int]]) -> dict[str, dict[str, int]]:
    """Aer joins registers as 'cN ... c0' with spaces; give each register its marginal counts."""
    if len(registers) == 1:
        return {registers[0][0]: dict(joint)}
    out: dict[str, dict[str, int]] = {name: {} for name, _ in registers}
    for key, count in joint.items():
        parts = key.split(" ")[::-1]
        for (name, _), bits in zip(registers, parts, strict=False):
            out[name][bits] = out[name].get(bits, 0) + count
    return out


def _status_line(result: Any) -> str:
    for experiment in getattr(result, "results", []):
        if not experiment.success:
            return str(experiment.status).splitlines()[0]
    return str(getattr(result, "status", "unknown error")).splitlines()[0]


