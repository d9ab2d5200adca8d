"""Estimator observables from JSON, restricted to the qubits a circuit actually uses.

Observables arrive as Qiskit's ``ObservablesArray.tolist()`` writes them: a Pauli
string, a ``{pauli: coeff}`` mapping, or (nested) lists of those. For ISA circuits
they span the whole device; on the qubits a circuit leaves idle in |0>, ``Z`` and
``I`` give 1 and ``X``/``Y`` give 0, so each term reduces exactly to the active qubits.
"""

from __future__ import annotations

from typing import Any

from ..errors import PayloadError


def coerce(observables: Any, where: str) -> Any:
    from qiskit.primitives.containers.observables_array import ObservablesArray

    try:
        return ObservablesArray.coerce(observables)
    except (ValueError, TypeError, KeyError) as exc:
        raise PayloadError(f"{where}: invalid observables: {str(exc).splitlines()[0]}") from None


def restrict(observables: Any, active: tuple[int, ...], width: int, physical: bool, where: str) -> Any:
    """Map an ObservablesArray over ``width`` qubits onto the ``active`` ones."""
    import numpy as np
    from qiskit.primitives.containers.observables_array import ObservablesArray

    size = observables.num_qubits
    if size != width and not (physical and size > width):
        raise PayloadError(f"{where}: observables act on {size} qubits but the circuit has {width}")
    if len(active) == 0:
        raise PayloadError(f"{where}: the circuit acts on no qubit")
    flat = [_restrict_term_map(obs, active, size) for obs in np.ravel(np.asarray(observables.tolist(), dtype=object))]
    array = np.empty(len(flat), dtype=object)
    array[:] = flat
    return ObservablesArray.coerce(array.reshape(observables.shape))


# <0|P|0> for each single-qubit letter ObservablesArray accepts (Paulis and projectors).
IDLE_VALUE = {"I": 1.0, "Z": 1.0, "0": 1.0, "X": 0.0, "Y": 0.0, "1": 0.0, "+": 0.5, "-": 0.5, "r": 0.5, "l": 0.5}


def _restrict_term_map(terms: dict[str, complex], active: tuple[int, ...], size: int) -> dict[str, float]:
    keep = set(active)
    out: dict[str, float] = {}
    for label, coeff in terms.items():
        chars = label[::-1]  # chars[q] acts on qubit q
        factor = 1.0
        for q in range(size):
            if q not in keep:
                factor *= IDLE_VALUE[chars[q]]
        if factor == 0.0:
            continue
        reduced = "".join(chars[q] for q in active)[::-1]
        out[reduced] = out.get(reduced, 0.0) + coeff * factor
    if not out:
        out["I" * len(active)] = 0.0
    return out
