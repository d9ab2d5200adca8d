"""Turn what a rule hands ``qrun`` into a payload dict, cheaply.

This runs once per job, before any backend is chosen, so it imports nothing heavy:
full validation happens where the payload runs (in-process backend or vQPU service).
"""

from __future__ import annotations

import json
import os
from typing import Any

from ..errors import PayloadError

DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024 * 1024


def read_input(
    path: str,
    shots: int | None = None,
    program: str | None = None,
    observables: list[str] | None = None,
    max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    parameters: Any = None,
) -> dict[str, Any]:
    """Read a QRMI payload, an OpenQASM file, a bare primitive input or a bare Pulser sequence as a payload.

    A bare primitive input (``{"pubs": [...], ...}``, a payload's ``parameters`` saved on
    their own) is for ``program``, else for the primitive its pubs mean (``programs.py``).
    """
    text = _read_text(path, max_bytes)
    if _looks_like_qasm(text):
        return qasm_payload(text, shots=shots, program=program or "sampler", observables=observables, parameters=parameters)
    if parameters is not None:
        raise PayloadError("--parameters applies to circuit files; a payload carries its own parameter values")
    data = decode_json(text, what=path)
    if isinstance(data, dict) and "register" in data and "channels" in data and "sequence" not in data:
        data = {"sequence": data, "job_runs": shots if shots is not None else 1000}
    if isinstance(data, dict) and "pubs" in data and "program_id" not in data and "parameters" not in data:
        from .programs import wrap_bare_input

        data = wrap_bare_input(data, program, path)
    if program is not None and isinstance(data, dict) and data.get("program_id") not in (None, program):
        raise PayloadError(f"{path} is a {data.get('program_id')} payload but --program {program} was given")
    if shots is not None:
        apply_shots(data, shots)
    return data


def _read_text(path: str, max_bytes: int) -> str:
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise PayloadError(f"input file {path} does not exist") from None
    except OSError as exc:
        raise PayloadError(f"cannot read input file {path}: {exc.strerror}") from None
    if size == 0:
        raise PayloadError(f"input file {path} is empty")
    if size > max_bytes:
        raise PayloadError(f"input file {path} is {size >> 20} MiB; the limit is {max_bytes >> 20} MiB")
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except UnicodeDecodeError:
        raise PayloadError(f"input file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise PayloadError(f"cannot read input file {path}: {exc.strerror}") from None
    if not text.strip():
        raise PayloadError(f"input file {path} is empty")
    return text


def decode_json(text: str | bytes, what: str = "payload") -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise PayloadError(f"{what} is nested too deeply to be a payload") from None
    except UnicodeDecodeError:
        raise PayloadError(f"{what} is not UTF-8 text") from None


def _looks_like_qasm(text: str) -> bool:
    for line in text.lstrip().splitlines():
        line = line.strip()
        if not line or line.startswith("//"):
            continue
        return line.upper().startswith("OPENQASM")
    return False


def qasm_payload(
    qasm: str, shots: int | None = None, program: str = "sampler", observables: list[str] | None = None, parameters: Any = None
) -> dict[str, Any]:
    """A QRMI primitive payload for one circuit, so rules can hand over a .qasm file.

    ``parameters`` are the circuit's parameter values (in the order of its ``input``
    declarations), one list per set: ``[0.3]`` or ``[[0.1], [0.2]]``.
    """
    if program == "sampler":
        if observables:
            raise PayloadError("--observables applies to --program estimator only")
        pub: list[Any] = [qasm] if parameters is None else [qasm, parameters]
        body: dict[str, Any] = {"pubs": [pub], "version": 2}
        if shots is not None:
            body["shots"] = shots
        return {"program_id": "sampler", "parameters": body}
    if program == "estimator":
        if not observables:
            raise PayloadError("--program estimator on a circuit file needs --observables, e.g. --observables ZZI,XXI")
        pub = [qasm, observables] if parameters is None else [qasm, observables, parameters]
        body = {"pubs": [pub], "version": 2}
        if shots is not None:
            body["options"] = {"default_shots": shots}
        return {"program_id": "estimator", "parameters": body}
    raise PayloadError(f"--program must be sampler or estimator, got {program!r}")


def apply_shots(data: Any, shots: int) -> None:
    """``--shots`` sets the default shot count; shots given per pub still win, as in Qiskit."""
    if not isinstance(data, dict):
        return
    if "job_runs" in data or "sequence" in data:
        data["job_runs"] = shots
    elif isinstance(data.get("parameters"), dict):
        params = data["parameters"]
        if data.get("program_id") == "estimator":
            params.setdefault("options", {})
            if isinstance(params["options"], dict):
                params["options"]["default_shots"] = shots
                params["options"].pop("default_precision", None)
                params.pop("precision", None)
        else:
            params["shots"] = shots
