"""Parse and validate QRMI payload v1 into tasks.

The QRMI schema (``data/qrmi_payload_v1_schema.json``, v0.4.0) checks the envelope;
the Sampler/Estimator V2 pub structure and our limits are checked here, so every
bad payload fails with one line naming the field, before any simulation starts.
"""

from __future__ import annotations

import functools
import json
import math
import numbers
from importlib import resources as importlib_resources
from typing import Any

from ..errors import PayloadError, ResourceLimitError
from . import encoding
from .model import EstimatorPub, Limits, PrimitiveTask, PulserTask, SamplerPub, Task

PROGRAMS = ("sampler", "estimator")
# Options a real QPU honours that a simulator cannot; accepted and reported, not failed on.
HARDWARE_OPTIONS = (
    "dynamical_decoupling", "twirling", "resilience", "resilience_level", "execution",
    "environment", "max_execution_time", "transpilation", "experimental",
)


@functools.cache
def _branch_validators() -> dict[str, Any]:
    import jsonschema

    text = importlib_resources.files("snakemake_executor_plugin_quantum.data").joinpath(
        "qrmi_payload_v1_schema.json"
    ).read_text(encoding="utf-8")
    schema = json.loads(text)
    validators = {}
    for branch in schema["oneOf"]:
        key = branch["required"][0]
        validators[key] = jsonschema.Draft202012Validator(branch)
    return validators


def _check_branch(data: dict[str, Any], key: str) -> None:
    import jsonschema

    error = jsonschema.exceptions.best_match(_branch_validators()[key].iter_errors(data))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path)
        raise PayloadError(f"payload{' field ' + where if where else ''}: {error.message}")


def parse_payload(data: Any, limits: Limits = Limits()) -> Task:
    if not isinstance(data, dict):
        raise PayloadError(f"payload must be a JSON object, got {type(data).__name__}")
    if "program_id" in data or "parameters" in data:
        _check_branch(data, "program_id")
        return _parse_primitive(data, limits)
    if "sequence" in data or "job_runs" in data:
        return _parse_pulser(data, limits)
    if "human_qir" in data:
        raise PayloadError("Alice & Bob Felis payloads run only on alice-bob-felis resources")
    if "iqmjson" in data:
        raise PayloadError("IQM payloads run only on iqm-server resources")
    if "pubs" in data:
        raise PayloadError(
            "payload has pubs but no program_id: send {program_id: sampler|estimator, parameters: {pubs, ...}} "
            "(qrun wraps a bare primitive input itself; --program names the primitive)"
        )
    raise PayloadError(
        "payload is neither a Qiskit primitive {program_id, parameters} "
        "nor a Pulser sequence {sequence, job_runs}"
    )


# ---------------------------------------------------------------- Pulser


def _parse_pulser(data: dict[str, Any], limits: Limits) -> PulserTask:
    sequence = data.get("sequence")
    if isinstance(sequence, str):
        # QRMI's own example writes the sequence as a JSON string; the schema says object.
        try:
            decoded = json.loads(sequence)
        except (json.JSONDecodeError, RecursionError):
            raise PayloadError("payload field sequence: string is not valid JSON (expected a Pulser abstract representation)") from None
        _check_branch({**data, "sequence": decoded}, "job_runs")
        text = sequence
    else:
        _check_branch(data, "job_runs")
        text = json.dumps(sequence)
    shots = _positive_int(data["job_runs"], "job_runs", limits)
    seed = _optional_seed(data.get("seed"), "seed")
    return PulserTask(sequence=text, shots=shots, seed=seed)


# ---------------------------------------------------------------- primitives


def _parse_primitive(data: dict[str, Any], limits: Limits) -> PrimitiveTask:
    program = data["program_id"]
    params = data["parameters"]
    version = params.get("version", 2)
    if version != 2:
        raise PayloadError(f"payload field parameters/version: only version 2 primitives are supported, got {version!r}")
    options = params.get("options") or {}
    if not isinstance(options, dict):
        raise PayloadError("payload field parameters/options must be an object")
    pubs = params.get("pubs")
    if not isinstance(pubs, list) or not pubs:
        raise PayloadError("payload field parameters/pubs must be a non-empty list of pubs")
    if len(pubs) > limits.max_pubs:
        raise ResourceLimitError(f"payload has {len(pubs)} pubs; this resource accepts at most {limits.max_pubs}")
    pubs = encoding.decode(pubs)
    ignored = tuple(
        sorted(k for k in HARDWARE_OPTIONS if options.get(k) not in (None, {}, []) or params.get(k) not in (None, {}, []))
    )
    simulator = options.get("simulator") or {}
    seed = _optional_seed(
        simulator.get("seed_simulator") if isinstance(simulator, dict) else None, "options/simulator/seed_simulator"
    )
    if program == "sampler":
        shots = params.get("shots", options.get("default_shots"))
        shots = None if shots is None else _positive_int(shots, "shots", limits)
        parsed = tuple(_sampler_pub(pub, i, limits) for i, pub in enumerate(pubs))
        if shots is None and any(p.shots is None for p in parsed):
            shots = 1024  # Qiskit's SamplerV2 default
        return PrimitiveTask("sampler", parsed, shots=shots, seed=seed, ignored_options=ignored)

    if seed is None:
        seed = _optional_seed(options.get("seed_estimator"), "options/seed_estimator")
    precision = params.get("precision", options.get("default_precision"))
    if precision is None and options.get("default_shots") is not None:
        # IBM's estimator relates the two as precision = 1/sqrt(shots).
        precision = 1 / math.sqrt(_positive_int(options["default_shots"], "options/default_shots", limits))
    precision = None if precision is None else _precision(precision, "precision")
    parsed_e = tuple(_estimator_pub(pub, i) for i, pub in enumerate(pubs))
    return PrimitiveTask("estimator", parsed_e, precision=precision, seed=seed, ignored_options=ignored)


def _is_circuit(value: Any) -> bool:
    return isinstance(value, str) or type(value).__name__ == "QuantumCircuit"


def _circuit(value: Any, where: str) -> Any:
    if isinstance(value, str) and value.strip():
        return value
    if _is_circuit(value) and not isinstance(value, str):
        return value
    raise PayloadError(f"{where}: circuit must be an OpenQASM string (or an encoded QuantumCircuit)")


def _sampler_pub(pub: Any, index: int, limits: Limits) -> SamplerPub:
    where = f"pub {index}"
    if _is_circuit(pub):
        return SamplerPub(_circuit(pub, where))
    if not isinstance(pub, list) or not 1 <= len(pub) <= 3:
        raise PayloadError(f"{where}: a sampler pub is [circuit, parameter_values?, shots?]")
    circuit = _circuit(pub[0], where)
    values = _parameter_values(pub[1] if len(pub) > 1 else None, where)
    shots = pub[2] if len(pub) > 2 else None
    if shots is not None:
        shots = _positive_int(shots, f"{where} shots", limits)
    return SamplerPub(circuit, values, shots)


def _estimator_pub(pub: Any, index: int) -> EstimatorPub:
    where = f"pub {index}"
    if not isinstance(pub, list) or not 2 <= len(pub) <= 4:
        raise PayloadError(f"{where}: an estimator pub is [circuit, observables, parameter_values?, precision?]")
    circuit = _circuit(pub[0], where)
    observables = pub[1]
    if observables in (None, "", [], {}):
        raise PayloadError(f"{where}: observables must be a Pauli string, a {{pauli: coeff}} object, or a list of them")
    values = _parameter_values(pub[2] if len(pub) > 2 else None, where)
    precision = pub[3] if len(pub) > 3 else None
    if precision is not None:
        precision = _precision(precision, f"{where} precision")
    return EstimatorPub(circuit, observables, values, precision)


def _parameter_values(values: Any, where: str) -> Any:
    """Parameter values must be real numbers: strings, booleans, NaN and infinities are refused,
    never coerced (numpy would turn "0.1" into 0.1 and true into 1.0 without a word)."""
    if values is None:
        return None
    if isinstance(values, list):
        found = _first_non_real(values, ())
    elif hasattr(values, "dtype") and hasattr(values, "shape"):  # a RuntimeEncoder ndarray
        found = _first_non_real_in_array(values)
    else:
        found = None if _is_real(values) else ((), values)
    if found is not None:
        path, value = found
        index = "".join(f"[{i}]" for i in path)
        raise PayloadError(f"{where}: parameter_values{index} is {_describe_value(value)}; parameter values must be real numbers")
    return values


def _first_non_real(values: list[Any], path: tuple[int, ...]) -> tuple[tuple[int, ...], Any] | None:
    """(index path, value) of the first item of a nested list that is not a finite real number."""
    for i, item in enumerate(values):
        kind = type(item)
        if kind is float:
            if not math.isfinite(item):
                return (*path, i), item
        elif kind is not int:
            found = _first_non_real(item, (*path, i)) if kind is list else (None if _is_real(item) else ((*path, i), item))
            if found is not None:
                return found
    return None


def _first_non_real_in_array(array: Any) -> tuple[tuple[int, ...], Any] | None:
    import numpy as np

    kind = array.dtype.kind
    if kind in "iu":
        return None
    if kind == "f":
        bad = np.argwhere(~np.isfinite(array))
        return None if not bad.size else (tuple(int(i) for i in bad[0]), array[tuple(bad[0])].item())
    if kind == "O":
        return _first_non_real(array.tolist(), ()) if array.ndim else _first_non_real([array.item()], ())
    if array.size == 0:
        return None
    first = (0,) * array.ndim
    return first, array[first].item() if kind in "bcUS" else array[first]


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _describe_value(value: Any) -> str:
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return f"the boolean {str(bool(value)).lower()}"
    if isinstance(value, (str, bytes)):
        return f"the string {value!r}"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, numbers.Real):
        return f"{'-' if value < 0 else ''}infinity"
    if isinstance(value, complex):
        return f"the complex number {value}"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _positive_int(value: Any, field: str, limits: Limits) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(f"payload field {field}: must be a positive integer, got {value!r}")
    if value <= 0:
        raise PayloadError(f"payload field {field}: must be a positive integer, got {value}")
    if value > limits.max_shots:
        raise ResourceLimitError(f"payload field {field}: {value} exceeds this resource's limit of {limits.max_shots} shots")
    return value


def _precision(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise PayloadError(f"payload field {field}: must be a non-negative number, got {value!r}")
    return float(value)


def _optional_seed(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PayloadError(f"payload field {field}: must be a non-negative integer, got {value!r}")
    return value
