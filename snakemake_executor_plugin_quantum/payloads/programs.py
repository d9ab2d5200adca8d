"""Which primitive a bare input is for: ``{"pubs": [...], ...}`` saved without ``program_id``.

People save a primitive's input as ``json.dumps(params, cls=RuntimeEncoder)``, which is
exactly the ``parameters`` of a QRMI payload (QRMI's generators write it too, as
``*_params_only.json``). The pubs usually say which primitive it is for:

- a sampler pub is ``circuit`` or ``[circuit, parameter_values?, shots?]``;
- an estimator pub is ``[circuit, observables, parameter_values?, precision?]``.

A pub decides the program in exactly these cases (anything else decides nothing):

- **sampler**: a bare circuit (a string or an encoded ``QuantumCircuit``) or ``[circuit]``
  (an estimator pub needs observables); or a second element that is ``null``, an encoded
  numeric ``ndarray`` (its ``__value__`` is a base64 string), or a (nested) list whose first
  item that is not a list is a number: parameter values.
- **estimator**: four elements (a sampler pub has at most three); or a second element that
  is a string, an object whose keys are all Pauli strings (``{"ZZ": 0.5}``), an encoded
  ``ObservablesArray``, or a (nested) list, or encoded object ``ndarray``, whose first item
  that is not a list is a string or an object: observables.

So ``[circuit, []]`` (no parameter values, or no observables) decides nothing, and neither
does a second element that is a bare number. The pubs that decide must agree; when none
does, the program must be named (``qrun --program``). Light imports only: qrun runs this.
"""

from __future__ import annotations

from typing import Any

from ..errors import PayloadError

SAMPLER, ESTIMATOR = "sampler", "estimator"
PAULI_LETTERS = frozenset("IXYZ01+-rl")


def wrap_bare_input(data: dict[str, Any], program: str | None, where: str) -> dict[str, Any]:
    """``data`` (a bare primitive input) as a QRMI payload for ``program`` or the one its pubs mean."""
    pubs = data.get("pubs")
    if not isinstance(pubs, list) or not pubs:
        raise PayloadError(f"{where}: pubs must be a non-empty list of pubs")
    inferred = infer_program(pubs, where)
    if program is None:
        if inferred is None:
            raise PayloadError(
                f"{where} holds pubs but no program_id, and its pubs fit both primitives; "
                "say which with --program sampler or --program estimator"
            )
        program = inferred[0]
    elif inferred is not None and inferred[0] != program:
        kind, index = inferred
        raise PayloadError(f"--program {program} was given, but pub {index} of {where} is {_describe(kind)}; use --program {kind}")
    return {"program_id": program, "parameters": data}


def infer_program(pubs: list[Any], where: str = "input") -> tuple[str, int] | None:
    """(program, index of the first pub that decides it), or None if no pub decides."""
    decided: tuple[str, int] | None = None
    for index, pub in enumerate(pubs):
        kind = pub_program(pub)
        if kind is None:
            continue
        if decided is None:
            decided = (kind, index)
        elif decided[0] != kind:
            raise PayloadError(
                f"{where}: pub {decided[1]} is {_describe(decided[0])} but pub {index} is {_describe(kind)}; "
                "one input holds pubs of one primitive"
            )
    return decided


def pub_program(pub: Any) -> str | None:
    """``sampler``, ``estimator`` or None (this pub fits both, or neither): see the module docstring."""
    if isinstance(pub, str) or _encoded(pub) == "QuantumCircuit":
        return SAMPLER
    if not isinstance(pub, list) or not pub:
        return None
    if len(pub) == 1:
        return SAMPLER
    if len(pub) == 4:
        return ESTIMATOR
    return _second_element(pub[1])


def _second_element(value: Any) -> str | None:
    if value is None:
        return SAMPLER
    if isinstance(value, str):
        return ESTIMATOR
    kind = _encoded(value)
    if kind == "ObservablesArray":
        return ESTIMATOR
    if kind == "ndarray":
        raw = value["__value__"]
        return SAMPLER if isinstance(raw, str) else _first_leaf(raw)
    if kind is not None:
        return None
    if isinstance(value, dict):
        return ESTIMATOR if value and all(_is_pauli(key) for key in value) else None
    if isinstance(value, list):
        return _first_leaf(value)
    return None


def _first_leaf(value: Any) -> str | None:
    while isinstance(value, list):
        if not value:
            return None
        value = value[0]
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return SAMPLER
    if isinstance(value, str) or (isinstance(value, dict) and _encoded(value) is None):
        return ESTIMATOR
    return None


def _encoded(value: Any) -> str | None:
    """The ``__type__`` of a RuntimeEncoder value, else None."""
    if isinstance(value, dict) and "__type__" in value and "__value__" in value:
        return str(value["__type__"])
    return None


def _is_pauli(key: Any) -> bool:
    return isinstance(key, str) and bool(key) and set(key) <= PAULI_LETTERS


def _describe(program: str) -> str:
    if program == SAMPLER:
        return "a sampler pub [circuit, parameter_values?, shots?]"
    return "an estimator pub [circuit, observables, parameter_values?, precision?]"
