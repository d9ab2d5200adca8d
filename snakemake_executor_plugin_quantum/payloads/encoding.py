"""Decode values written by qiskit-ibm-runtime's ``RuntimeEncoder``.

QRMI's payload generators dump primitive inputs with ``json.dump(..., cls=RuntimeEncoder)``,
which turns numpy arrays and circuits into ``{"__type__": ..., "__value__": ...}``. We
decode the types a primitive input can hold, without needing qiskit-ibm-runtime installed.
"""

from __future__ import annotations

import base64
import binascii
import io
import zlib
from typing import Any

from ..errors import PayloadError

MAX_DECODED_BYTES = 512 * 1024 * 1024


def is_encoded(value: Any) -> bool:
    return isinstance(value, dict) and "__type__" in value and "__value__" in value


def decode(value: Any) -> Any:
    """Recursively replace encoded values by numpy arrays, complex numbers and circuits."""
    if is_encoded(value):
        return _decode_one(value["__type__"], value["__value__"])
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        return {k: decode(v) for k, v in value.items()}
    return value


def _decode_one(kind: Any, raw: Any) -> Any:
    if kind == "ndarray":
        import numpy as np

        if isinstance(raw, list):
            return np.array(decode(raw), dtype=object)
        data = _unpack(raw, kind)
        try:
            return np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise PayloadError(f"encoded ndarray is not a valid .npy blob: {exc}") from None
    if kind == "complex":
        if isinstance(raw, list) and len(raw) == 2 and all(isinstance(x, (int, float)) for x in raw):
            return complex(raw[0], raw[1])
        raise PayloadError("encoded complex must be [real, imag]")
    if kind == "set":
        return decode(raw)
    if kind == "ObservablesArray":
        return decode(raw)
    if kind == "QuantumCircuit":
        from qiskit import qpy

        data = _unpack(raw, kind)
        try:
            circuits = qpy.load(io.BytesIO(data))
        except Exception as exc:  # qpy raises many types for corrupt data
            raise PayloadError(f"encoded QuantumCircuit is not valid QPY: {exc}") from None
        if len(circuits) != 1:
            raise PayloadError(f"encoded QuantumCircuit holds {len(circuits)} circuits, expected 1")
        return circuits[0]
    raise PayloadError(f"unsupported RuntimeEncoder type {kind!r} (supported: ndarray, complex, QuantumCircuit, ObservablesArray)")


def _unpack(raw: Any, kind: str) -> bytes:
    if not isinstance(raw, str):
        raise PayloadError(f"encoded {kind} must hold a base64 string")
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise PayloadError(f"encoded {kind} is not valid base64") from None
    try:
        # RuntimeEncoder compresses arrays and circuits; bound the output size.
        inflater = zlib.decompressobj()
        out = inflater.decompress(data, MAX_DECODED_BYTES)
        if inflater.unconsumed_tail:
            raise PayloadError(f"encoded {kind} expands beyond {MAX_DECODED_BYTES >> 20} MiB")
        return out
    except zlib.error:
        return data  # written uncompressed
