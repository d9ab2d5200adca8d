"""Circuits from payloads: OpenQASM 3 (and 2) text, bound in the order the payload means.

Two facts shape this module. QRMI's generators export ISA circuits for 127-133 qubit
devices, of which a handful are active: we keep only the active qubits, so a 3-qubit
GHZ on ``$60..$62`` simulates as 3 qubits, not 2^133 amplitudes. And the QASM 3 exporter
renames parameters (``θ[10]`` becomes ``_θ_10_``), so sorting names after import no
longer matches the order the parameter values were written in; the ``input``
declarations keep that order, so we bind by them.
"""

from __future__ import annotations

import contextlib
import io
import re
from dataclasses import dataclass
from typing import Any

from ..errors import PayloadError

INPUT_DECLARATION = re.compile(
    r"^\s*input\s+(?:float|angle|int|uint)(?:\s*\[\s*\d+\s*\])?\s+([^\s;\[\]]+)\s*;", re.MULTILINE
)
PHYSICAL_QUBIT = re.compile(r"\$\d+")
IDLE_OPERATIONS = frozenset({"barrier", "delay"})


@dataclass(frozen=True)
class LoadedCircuit:
    circuit: Any  # qiskit.QuantumCircuit, as written
    parameters: tuple[Any, ...]  # binding order of parameter values
    physical: bool  # written on hardware qubits ($n): an ISA circuit


@dataclass(frozen=True)
class CompactCircuit:
    circuit: Any  # only the active qubits, in their original relative order
    active: tuple[int, ...]  # original index of each kept qubit
    width: int  # qubits of the circuit as written


def load_circuit(source: Any, where: str = "circuit") -> LoadedCircuit:
    if not isinstance(source, str):  # already a QuantumCircuit (RuntimeEncoder QPY)
        return LoadedCircuit(source, tuple(source.parameters), physical=False)
    header = _header(source)
    if header.startswith("OPENQASM 2"):
        circuit = _load_qasm2(source, where)
        return LoadedCircuit(circuit, tuple(circuit.parameters), physical=False)
    circuit = _load_qasm3(source, where)
    return LoadedCircuit(circuit, _declared_order(source, circuit), physical=bool(PHYSICAL_QUBIT.search(source)))


def _header(text: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("//"):
            return " ".join(line.upper().split())
    return ""


def _load_qasm2(text: str, where: str) -> Any:
    from qiskit import qasm2

    try:
        return qasm2.loads(text, custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS)
    except qasm2.QASM2ParseError as exc:
        raise PayloadError(f"{where}: invalid OpenQASM 2: {_first_line(exc)}") from None


def _load_qasm3(text: str, where: str) -> Any:
    from qiskit import qasm3

    try:
        # The ANTLR lexer prints "token recognition error" lines before raising: errors
        # must stay one line, and the exception says it all.
        with contextlib.redirect_stderr(io.StringIO()):
            return qasm3.loads(text)
    except qasm3.QASM3ImporterError as exc:
        raise PayloadError(f"{where}: invalid OpenQASM 3: {_first_line(exc)}") from None
    except RecursionError:
        raise PayloadError(f"{where}: OpenQASM 3 program is nested too deeply") from None
    except Exception as exc:  # the openqasm3 parser raises its own types, often without a message
        raise PayloadError(f"{where}: invalid OpenQASM 3: {_syntax_error(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().strip("\"'")
    return text.splitlines()[0] if text else type(exc).__name__


def _syntax_error(exc: BaseException) -> str:
    if str(exc).strip():
        return _first_line(exc)
    cause = exc.__cause__
    inner = cause.args[0] if cause is not None and cause.args else None
    token = getattr(inner, "offendingToken", None)
    if token is not None:
        return f"syntax error at line {token.line} column {token.column + 1} near {token.text!r}"
    return "syntax error"


def _declared_order(text: str, circuit: Any) -> tuple[Any, ...]:
    by_name = {p.name: p for p in circuit.parameters}
    ordered = [by_name.pop(name) for name in INPUT_DECLARATION.findall(text) if name in by_name]
    # Parameters without an input declaration (free expressions) keep Qiskit's order.
    return tuple(ordered) + tuple(p for p in circuit.parameters if p.name in by_name)


def active_qubits(circuit: Any) -> tuple[int, ...]:
    """Qubits that something other than a barrier or delay touches."""
    used: set[int] = set()
    for instruction in circuit.data:
        if instruction.operation.name in IDLE_OPERATIONS:
            continue
        for qubit in instruction.qubits:
            used.add(circuit.find_bit(qubit).index)
    return tuple(sorted(used))


def compact(circuit: Any) -> CompactCircuit:
    """The same circuit on its active qubits only (idle qubits stay in |0>)."""
    from qiskit import QuantumCircuit, QuantumRegister

    active = active_qubits(circuit)
    if len(active) == circuit.num_qubits:
        return CompactCircuit(circuit, active, circuit.num_qubits)
    position = {index: new for new, index in enumerate(active)}
    register = QuantumRegister(len(active), "q")
    out = QuantumCircuit(register, *circuit.cregs, global_phase=circuit.global_phase, name=circuit.name)
    loose = [bit for bit in circuit.clbits if not circuit.find_bit(bit).registers]
    if loose:
        out.add_bits(loose)
    for instruction in circuit.data:
        indices = [circuit.find_bit(q).index for q in instruction.qubits]
        kept = [register[position[i]] for i in indices if i in position]
        if instruction.operation.name in IDLE_OPERATIONS:
            if kept and instruction.operation.name == "barrier":
                out.barrier(*kept)
            continue
        out.append(instruction.operation, kept, instruction.clbits, copy=False)
    return CompactCircuit(out, active, circuit.num_qubits)


def bindings(circuit: Any, values: Any, where: str, max_sets: int) -> Any:
    """Parameter values as a BindingsArray keyed in the payload's order.

    ``circuit`` is anything with a ``parameters`` tuple in binding order.
    """
    import numpy as np
    from qiskit.primitives.containers.bindings_array import BindingsArray

    count = len(circuit.parameters)
    empty = values is None or (isinstance(values, (list, tuple)) and len(values) == 0)
    if count == 0:
        if not empty and np.asarray(values, dtype=object).size:
            raise PayloadError(f"{where}: the circuit has no parameters but parameter_values were given")
        return BindingsArray()
    if empty:
        raise PayloadError(f"{where}: the circuit has {count} parameters but no parameter_values were given")
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise PayloadError(f"{where}: parameter_values must be a (nested) list of numbers") from None
    if array.ndim == 0 or array.shape[-1] != count:
        given = 1 if array.ndim == 0 else array.shape[-1]
        raise PayloadError(f"{where}: the circuit has {count} parameters but parameter_values give {given} per set")
    if not np.all(np.isfinite(array)):
        raise PayloadError(f"{where}: parameter_values must be finite numbers")
    sets = int(np.prod(array.shape[:-1], dtype=np.int64))
    if sets > max_sets:
        raise PayloadError(f"{where}: {sets} parameter sets exceed this resource's limit of {max_sets}")
    return BindingsArray(data={tuple(circuit.parameters): array})
