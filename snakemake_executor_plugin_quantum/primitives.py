"""Qiskit ``SamplerV2`` / ``EstimatorV2`` that run through the job's quantum resource.

An existing Qiskit program runs unchanged in a Snakemake ``run:``/``script:`` rule or
on a Slurm node: ``SamplerV2()`` finds the resource the job was given (the QRMI job
environment, as ``qrun`` does), sends all pubs of a ``run`` as one QRMI payload
(OpenQASM 3 text, the form QRMI's generators write) and turns our result document back
into Qiskit's ``PrimitiveResult``. How results differ from Qiskit's reference
primitives is in docs/primitives.md.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

from qiskit import qasm3
from qiskit.circuit import ClassicalRegister, ControlFlowOp, QuantumCircuit
from qiskit.primitives import (
    BaseEstimatorV2,
    BasePrimitiveJob,
    BaseSamplerV2,
    PrimitiveResult,
)
from qiskit.primitives.containers.estimator_pub import EstimatorPub, EstimatorPubLike
from qiskit.primitives.containers.sampler_pub import SamplerPub, SamplerPubLike

from .backends import QuantumResource, TaskStatus, open_resource
from .errors import PayloadError, QuantumError, TaskFailedError, TaskTimeoutError
from .metrics import record as metrics
from .resources.resolve import ResolvedResource, resolve_resource
from .resources.types import AER, PULSER
from .results import estimator_result, sampler_result
from .tasks import Deadline, stop_quietly, task_deadline

__all__ = ["SamplerV2", "EstimatorV2", "QuantumPrimitiveJob"]

log = logging.getLogger(__name__)

# A waiting result() holds the resource this long at most, so cancel() from another
# thread gets in (the vQPU client has one connection and is not thread-safe).
WAIT_SLICE = 1.0


class _Primitive:
    def __init__(self, resource: str | QuantumResource | None, seed: int | None, options: Mapping[str, Any] | None,
                 environ: Mapping[str, str] | None, config: str | None):
        if resource is not None and not isinstance(resource, (str, QuantumResource)):
            raise TypeError(f"resource must be a resource name or a QuantumResource, not {type(resource).__name__}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self._name = resource if isinstance(resource, str) else None
        self._resource = resource if isinstance(resource, QuantumResource) else None
        self.seed = seed
        self.options = dict(options or {})
        self._environ, self._config = environ, config
        self._lock = threading.RLock()  # one call at a time on the resource
        self._finalizer: weakref.finalize | None = None
        self._deadline: Deadline | None = None
        self._settings: Mapping[str, str] = {}  # the resource's QRMI_* settings, once resolved

    @property
    def resource(self) -> QuantumResource:
        """The resource, opened (and acquired, unless the job holds a token) on first use."""
        with self._lock:
            if self._resource is None:
                environ = os.environ if self._environ is None else self._environ
                found = resolve_resource(self._name, self._config, environ)
                resource = _open(found)
                try:
                    token = None if found.settings.get("QRMI_JOB_ACQUISITION_TOKEN") else resource.acquire()
                except BaseException:
                    resource.close()
                    raise
                self._finalizer = weakref.finalize(self, _release, resource, token)
                self._resource = resource
                self._deadline = task_deadline(None, found.settings, found.type)
                self._settings = found.settings
            return self._resource

    @property
    def deadline(self) -> Deadline:
        """How long a task may run: the job's QRMI_JOB_TIMEOUT_SECONDS, else the resource's
        QRMI_TASK_TIMEOUT (3600 s for local simulators), as for qrun."""
        with self._lock:
            if self._deadline is None:
                self._deadline = task_deadline(None, {}, self.resource.resource_type)
            return self._deadline

    def close(self) -> None:
        """Release and close a resource this primitive opened; one passed in stays open."""
        with self._lock:
            if self._finalizer is not None:
                self._finalizer()
                self._finalizer = self._resource = None

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _submit(self, program: str, parameters: dict[str, Any], convert: Any) -> QuantumPrimitiveJob:
        options = dict(self.options)
        if self.seed is not None:  # the simulators honour it; IBM's Sampler accepts it too
            options["simulator"] = {**options.get("simulator", {}), "seed_simulator": self.seed}
        payload = {"program_id": program, "parameters": {**parameters, "version": 2, "options": options}}
        with self._lock:
            resource = self.resource
            pending = metrics.begin(resource.resource_id, resource.resource_type, payload, self._settings,
                                    self._environ, client="primitives")
            task_id = resource.task_start(payload)
        return QuantumPrimitiveJob(self, task_id, convert, pending)


def _open(found: ResolvedResource) -> QuantumResource:
    """The resource; an in-process simulator runs its simulations in a worker process.

    Aer holds the GIL for a whole simulation: run in this process, neither Ctrl-C nor
    SIGTERM nor a deadline could act until it ended. In a worker (a vQPU's lane) the wait
    stays interruptible, and stopping the task kills the worker. The worker is forked: it
    starts warm, with this process's imports, and does not re-run the program's
    ``__main__`` as a forkserver or spawned child would (most scripts have no main guard).
    """
    if found.type not in (AER, PULSER):
        return open_resource(found.name, found.type, found.settings)
    from .backends import limits_from_settings
    from .backends.lanes import LaneParent, ProcessLane
    from .backends.local import LocalResource
    from .engines import build_engine, spec_from_settings

    limits = limits_from_settings(found.settings)
    spec = spec_from_settings("aer" if found.type == AER else "pulser", found.settings, limits)
    front = build_engine(spec, dedicated=True)  # validates and prepares here, as a vQPU's front end does
    parent = LaneParent(front)  # the worker is forked from it, as a vQPU's lanes are
    try:
        lane = ProcessLane(parent)
        try:
            lane.wait_ready()
        except BaseException:
            lane.close()
            raise
    except BaseException:
        parent.close()
        raise
    resource = LocalResource(found.name, found.type, front, limits, lanes=[lane])
    resource.on_close = parent.close
    return resource


def _release(resource: QuantumResource, token: str | None) -> None:
    try:
        if token is not None:
            resource.release(token)
    except (QuantumError, OSError) as exc:  # the resource is gone: nothing left to release
        log.debug("could not release %s: %s", resource.resource_id, exc)
    finally:
        resource.close()


class SamplerV2(_Primitive, BaseSamplerV2):
    """Qiskit's SamplerV2 on a named resource (default: the job's only one).

    Results are built from counts, so each ``BitArray`` holds the right outcomes in the
    right numbers but not in the order they were measured; registers of one circuit stay
    correlated shot by shot unless the circuit has classical control flow.
    """

    def __init__(self, resource: str | QuantumResource | None = None, *, default_shots: int = 1024,
                 seed: int | None = None, options: Mapping[str, Any] | None = None,
                 environ: Mapping[str, str] | None = None, config: str | None = None):
        super().__init__(resource, seed, options, environ, config)
        self.default_shots = default_shots

    def run(self, pubs: Iterable[SamplerPubLike], *, shots: int | None = None) -> QuantumPrimitiveJob:
        shots = self.default_shots if shots is None else shots
        coerced = [SamplerPub.coerce(pub, shots) for pub in pubs]
        joined = [_joined(pub.circuit) for pub in coerced]
        items = [[_qasm(circuit, i), _values(pub), pub.shots] for i, (pub, (circuit, _)) in enumerate(zip(coerced, joined, strict=True))]
        return self._submit("sampler", {"pubs": items, "shots": shots},
                            lambda doc: sampler_result(doc, [split for _, split in joined], [pub.circuit.metadata for pub in coerced]))


class EstimatorV2(_Primitive, BaseEstimatorV2):
    """Qiskit's EstimatorV2 on a named resource (default: the job's only one).

    ``default_precision=None`` leaves the precision to the resource: exact expectation
    values on our simulators, the device default on hardware.
    """

    def __init__(self, resource: str | QuantumResource | None = None, *, default_precision: float | None = None,
                 seed: int | None = None, options: Mapping[str, Any] | None = None,
                 environ: Mapping[str, str] | None = None, config: str | None = None):
        super().__init__(resource, seed, options, environ, config)
        self.default_precision = default_precision

    def run(self, pubs: Iterable[EstimatorPubLike], *, precision: float | None = None) -> QuantumPrimitiveJob:
        precision = self.default_precision if precision is None else precision
        coerced = [EstimatorPub.coerce(pub, precision) for pub in pubs]
        items = [[_qasm(pub.circuit, i), pub.observables.tolist(), _values(pub), pub.precision] for i, pub in enumerate(coerced)]
        return self._submit("estimator", {"pubs": items},
                            lambda doc: estimator_result(doc, len(coerced), [pub.circuit.metadata for pub in coerced]))


class QuantumPrimitiveJob(BasePrimitiveJob[PrimitiveResult, TaskStatus]):
    """A task on the resource; ``job_id()`` is its task id, ``status()`` its TaskStatus."""

    def __init__(self, primitive: _Primitive, task_id: str, convert: Any, pending: Any = None):
        super().__init__(task_id)
        self._primitive, self._convert = primitive, convert
        self._pending = pending  # the task's metrics record, written once it ends
        self._submitted = time.monotonic()
        self._final: TaskStatus | None = None  # cached: services forget old tasks
        self._result: PrimitiveResult | None = None

    def result(self, timeout: float | None = None) -> PrimitiveResult:
        """Wait for the task; a failed or cancelled one raises TaskFailedError saying why.

        ``timeout`` bounds this wait only (TaskTimeoutError; the task goes on). The task's
        deadline (``deadline`` of the primitive) stops it. So does anything that ends the
        wait early (KeyboardInterrupt, SIGTERM, an exception from a signal handler), before
        it propagates: an interrupted program leaves no task running.
        """
        if self._result is None:
            with _sigterm_unwinds(self._primitive.close):
                try:
                    document = self._wait(timeout)
                except TaskFailedError as exc:
                    self.status()
                    self._recorded(exc)
                    raise
                except TaskTimeoutError as exc:
                    if self._final is not None or self.status().finished:  # the task's deadline stopped it
                        self._recorded(exc)
                    raise
                except BaseException as exc:
                    self._stop()
                    self._recorded(exc)
                    raise
            if self._pending is not None:
                self._pending.completed(document)
                self._pending = None
            self._final = TaskStatus.COMPLETED
            self._result = self._convert(document)
        return self._result

    def _wait(self, timeout: float | None) -> dict[str, Any]:
        deadline = self._primitive.deadline
        task_end = None if deadline.seconds is None else self._submitted + deadline.seconds
        wait_end = None if timeout is None else time.monotonic() + timeout
        end = min((e for e in (task_end, wait_end) if e is not None), default=None)
        while True:
            # Short slices in interruptible waits (a socket, a lock): Ctrl-C gets in at once.
            left = WAIT_SLICE if end is None else max(0.0, min(WAIT_SLICE, end - time.monotonic()))
            with self._primitive._lock:
                try:
                    return self._primitive.resource.wait_result(self._job_id, left)
                except TaskTimeoutError:
                    pass
            now = time.monotonic()
            if task_end is not None and now >= task_end:
                self._stop()
                raise TaskTimeoutError(deadline.expired(self._primitive.resource.resource_id))
            if wait_end is not None and now >= wait_end:
                raise TaskTimeoutError(f"job {self._job_id} did not finish within {timeout:g} s")
            time.sleep(0.001)  # let a thread blocked on the lock (cancel, status) take it first

    def _recorded(self, error: BaseException) -> None:
        if self._pending is not None:
            self._pending.ended(error, self._job_id)
            self._pending = None

    def _stop(self) -> None:
        with self._primitive._lock:
            stop_quietly(self._primitive.resource, self._job_id)

    def status(self) -> TaskStatus:
        if self._final is None:
            with self._primitive._lock:
                status = self._primitive.resource.task_status(self._job_id)
            if status.finished:
                self._final = status
            return status
        return self._final

    def done(self) -> bool:
        return self.status() is TaskStatus.COMPLETED

    def running(self) -> bool:
        return self.status() is TaskStatus.RUNNING

    def cancelled(self) -> bool:
        return self.status() is TaskStatus.CANCELLED

    def in_final_state(self) -> bool:
        return self.status().finished

    def cancel(self) -> None:
        """Stop the task if it is queued or running (a no-op once it has finished)."""
        with self._primitive._lock:
            self._primitive.resource.task_stop(self._job_id)
        self._recorded(TaskFailedError("cancelled by QuantumPrimitiveJob.cancel()"))


class _Terminated(BaseException):
    """SIGTERM while result() waits; a BaseException so no ``except Exception`` eats it."""


@contextlib.contextmanager
def _sigterm_unwinds(on_terminate: Any) -> Any:
    """While result() waits, SIGTERM unwinds the wait, so the task is stopped first, then the
    process dies of SIGTERM as it would have.

    Only where SIGTERM has its default action (it would kill the process outright) and in the
    main thread (the only one that may set handlers): a host program's own SIGTERM handler,
    such as Snakemake's, is left alone. Handlers that raise are covered anyway, as is Ctrl-C.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def handler(_signum: int, _frame: Any) -> None:
        raise _Terminated()

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except _Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with contextlib.suppress(Exception):
            on_terminate()  # release the token, stop the workers: the process ends now
        os.kill(os.getpid(), signal.SIGTERM)
        raise  # only if SIGTERM is blocked
    finally:
        if signal.getsignal(signal.SIGTERM) is handler:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


# ------------------------------------------------------------------ payloads


def warm_up() -> None:
    """Build one small payload of each kind, sending nothing.

    The first payload a process builds pays one-off costs (qiskit's lazy imports, the ABC
    and exporter caches). The executor's job parent calls this once, so the
    ``run:`` jobs forked from it start with them paid.
    """
    from qiskit.circuit import Parameter
    from qiskit.quantum_info import SparsePauliOp

    circuit = QuantumCircuit(2)
    circuit.rx(Parameter("theta"), 0)
    circuit.cx(0, 1)
    estimator_pub = EstimatorPub.coerce((circuit, SparsePauliOp("ZZ"), [0.5]), None)
    _qasm(estimator_pub.circuit, 0)
    estimator_pub.observables.tolist()
    _values(estimator_pub)
    circuit.measure_all()
    sampler_pub = SamplerPub.coerce((circuit, [0.5]), 16)
    _qasm(_joined(sampler_pub.circuit)[0], 0)
    _values(sampler_pub)


def _qasm(circuit: QuantumCircuit, index: int) -> str:
    # As QRMI's generators write it; inputs are declared in circuit.parameters order,
    # which is the order the resource binds values in.
    try:
        return qasm3.dumps(circuit, disable_constants=True, allow_aliasing=True,
                           experimental=qasm3.ExperimentalFeatures.SWITCH_CASE_V1)
    except qasm3.QASM3ExporterError as exc:
        raise PayloadError(f"pub {index}: the circuit cannot be written as OpenQASM 3: {exc}") from None


def _values(pub: SamplerPub | EstimatorPub) -> list[Any]:
    return pub.parameter_values.as_array(pub.circuit.parameters).tolist()


def _joined(circuit: QuantumCircuit) -> tuple[QuantumCircuit, dict[str, list[int]] | None]:
    """The circuit with all its bits in one register, and where each register's bits are.

    Results arrive as counts per register; measured into one register, the registers
    keep their shot-by-shot correlation. Not done when bits are read back (control flow).
    """
    if len(circuit.cregs) < 2 or circuit.num_vars or list(itertools.chain(*circuit.qregs)) != circuit.qubits:
        return circuit, None
    if any(isinstance(op.operation, ControlFlowOp) or op.name == "store" for op in circuit.data):
        return circuit, None
    index = {bit: circuit.find_bit(bit).index for bit in circuit.clbits}
    joint = ClassicalRegister(circuit.num_clbits, "c")
    out = QuantumCircuit(*circuit.qregs, joint, name=circuit.name, global_phase=circuit.global_phase, metadata=circuit.metadata)
    for op in circuit.data:
        out.append(op.operation, op.qubits, [joint[index[bit]] for bit in op.clbits], copy=False)
    return out, {creg.name: [index[bit] for bit in creg] for creg in circuit.cregs}
