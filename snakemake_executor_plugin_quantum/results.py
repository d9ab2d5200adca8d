"""Read result documents back: as plain Python and NumPy, or as Qiskit's ``PrimitiveResult``.

``qrun`` writes one JSON document per task (docs/results.md); analysis scripts should not
have to walk its nested ``counts`` lists by hand::

    from snakemake_executor_plugin_quantum import results

    result = results.load("samples/ghz5.json")
    result.counts()                      # {'00000': 1012, '11111': 988}: pub 0, its only register
    result.counts(pub=1, register="b")   # a pub with parameter sets: dicts in an array of its shape
    result.evs()                         # estimator: a float array shaped like the pub
    result.to_qiskit()                   # PrimitiveResult, as SamplerV2/EstimatorV2 return it
    results.load("samples")              # a directory: {file name: Result}, sorted by name

The conversion to Qiskit objects is the one the primitives use (``primitives.py``), so a
document read back gives the same ``BitArray``s and expectation values the primitive gave.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import QuantumError
from .payloads.results import SCHEMA

__all__ = ["Result", "load"]


def load(path: str | os.PathLike[str], pattern: str = "*.json") -> Any:
    """A ``Result`` for a document; for a directory, ``{file name: Result}`` of its ``pattern`` files."""
    path = Path(path)
    if path.is_dir():
        return {child.name: _load_file(child) for child in sorted(path.glob(pattern)) if child.is_file()}
    return _load_file(path)


def _load_file(path: Path) -> Result:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise QuantumError(f"result document {path} does not exist") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise QuantumError(f"cannot read result document {path}: {exc}") from None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise QuantumError(f"{path} is not a result document (no \"schema\": \"{SCHEMA}\"); qrun writes those")
    return Result(document, str(path))


@dataclass(frozen=True)
class Result:
    """One result document. ``document`` is the JSON as written; the rest reads it."""

    document: dict[str, Any]
    path: str = ""

    @property
    def program(self) -> str:
        return str(self.document["program"])

    @property
    def resource(self) -> dict[str, str]:
        return dict(self.document.get("resource", {}))

    @property
    def task_id(self) -> str | None:
        return self.document.get("task_id")

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.document.get("metadata", {}))

    @property
    def shots(self) -> int | None:
        """All shots of the task (sampler, Pulser); None for an estimator."""
        return self.document.get("shots")

    @property
    def atoms(self) -> list[str]:
        """Pulser: the register's atom ids, in the order of the bitstrings' characters."""
        return list(self.document.get("atoms", []))

    @property
    def num_pubs(self) -> int:
        if self.program == "qrmi":
            return len(self.to_qiskit())
        return 1 if self.program == "pulser" else len(self.document["pubs"])

    def shape(self, pub: int = 0) -> tuple[int, ...]:
        """The shape of the pub's parameter sets (sampler) or of its broadcast (estimator)."""
        if self.program == "pulser":
            return ()
        return tuple(self._pub(pub)["shape"])

    def registers(self, pub: int = 0) -> list[str]:
        """Classical register names of a sampler pub."""
        return list(self._pub(pub, "sampler")["registers"])

    def counts(self, pub: int = 0, register: str | None = None) -> Any:
        """``{bitstring: count}`` of one register (the only one unless named); for a pub with
        parameter sets, an object array of such dicts with the pub's shape."""
        if self.program == "pulser":
            if pub != 0 or register is not None:
                raise QuantumError(f"{self._name}: a Pulser result has one set of counts (no pubs, no registers)")
            return dict(self.document["counts"])
        if self.program == "qrmi":
            bits = self.to_qiskit()[pub].data
            name = _only_register(list(bits.keys()), register, pub, self._name)
            array = getattr(bits, name)
            return array.get_counts() if not array.shape else _object_array([array[i].get_counts() for i in np.ndindex(array.shape)], array.shape)
        item = self._pub(pub, "sampler")
        name = _only_register(list(item["registers"]), register, pub, self._name)
        counts = item["registers"][name]["counts"]
        shape = tuple(item["shape"])
        return dict(counts) if not shape else _object_array(list(_flatten(counts, len(shape))), shape)

    def evs(self, pub: int = 0) -> np.ndarray:
        """Expectation values of an estimator pub, as a float array of its shape."""
        return self._estimates(pub, "evs")

    def stds(self, pub: int = 0) -> np.ndarray:
        """Their standard deviations (0 for exact values)."""
        return self._estimates(pub, "stds")

    def to_qiskit(self) -> Any:
        """The task's ``qiskit.primitives.PrimitiveResult`` (sampler, estimator, IBM QPUs)."""
        if self.program == "sampler":
            return sampler_result(self.document)
        if self.program == "estimator":
            return estimator_result(self.document)
        if self.program == "qrmi":
            return _vendor(self.document)
        raise QuantumError(f"{self._name}: a {self.program} result has no Qiskit form; use counts() and atoms")

    # ------------------------------------------------------------ internals

    @property
    def _name(self) -> str:
        return self.path or f"task {self.task_id}"

    def _pub(self, index: int, program: str | None = None) -> dict[str, Any]:
        if program is not None and self.program != program:
            raise QuantumError(f"{self._name} is a {self.program} result, not a {program} result")
        pubs = self.document["pubs"]
        if not -len(pubs) <= index < len(pubs):
            raise QuantumError(f"{self._name} has {len(pubs)} pubs; there is no pub {index}")
        return pubs[index]

    def _estimates(self, pub: int, key: str) -> np.ndarray:
        if self.program == "qrmi":
            return np.asarray(getattr(self.to_qiskit()[pub].data, key), dtype=float)
        item = self._pub(pub, "estimator")
        return np.asarray(item[key], dtype=float).reshape(tuple(item["shape"]))


def _only_register(names: list[str], register: str | None, pub: int, where: str) -> str:
    if register is not None:
        if register not in names:
            raise QuantumError(f"{where}: pub {pub} has no register {register!r}; its registers: {', '.join(names)}")
        return register
    if len(names) != 1:
        raise QuantumError(f"{where}: pub {pub} has registers {', '.join(names)}; name one, e.g. counts(register={names[0]!r})")
    return names[0]


def _object_array(items: list[Any], shape: tuple[int, ...]) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array.reshape(shape)


def _flatten(nested: Any, depth: int) -> Iterable[Any]:
    for item in nested:
        if depth > 1:
            yield from _flatten(item, depth - 1)
        else:
            yield item


# ------------------------------------------------------ documents as Qiskit objects
# Shared with primitives.py, which adds what only it knows: the circuits' metadata and
# how registers it measured into one were split.


def sampler_result(document: dict[str, Any], splits: list[Any] | None = None, circuit_metadata: list[Any] | None = None) -> Any:
    """A sampler document as ``PrimitiveResult`` of ``SamplerPubResult``s with one ``BitArray`` per register.

    ``splits[i]``, if given, maps register names to bit indices of pub i's single joint
    register (the primitives measure into one register to keep registers correlated).
    """
    from qiskit.primitives import BitArray, DataBin, PrimitiveResult, SamplerPubResult

    if (vendor := _vendor(document)) is not None:
        return vendor
    items = _pubs(document, None if splits is None else len(splits))
    out = []
    for i, item in enumerate(items):
        shape = tuple(item["shape"])
        arrays = {name: _bit_array(BitArray, reg["counts"], reg["num_bits"], shape) for name, reg in item["registers"].items()}
        split = splits[i] if splits is not None else None
        if split is not None:
            (whole,) = arrays.values()
            arrays = {name: whole.slice_bits(bits) for name, bits in split.items()}
        metadata = {"shots": item["shots"], "circuit_metadata": circuit_metadata[i] if circuit_metadata else {}}
        out.append(SamplerPubResult(DataBin(**arrays, shape=shape), metadata=metadata))
    return PrimitiveResult(out, metadata=_metadata(document))


def estimator_result(document: dict[str, Any], count: int | None = None, circuit_metadata: list[Any] | None = None) -> Any:
    """An estimator document as ``PrimitiveResult`` of ``PubResult``s with ``evs`` and ``stds``."""
    from qiskit.primitives import DataBin, PrimitiveResult, PubResult

    if (vendor := _vendor(document)) is not None:
        return vendor
    out = []
    for i, item in enumerate(_pubs(document, count)):
        shape = tuple(item["shape"])
        evs = np.asarray(item["evs"], dtype=float).reshape(shape)
        stds = np.asarray(item["stds"], dtype=float).reshape(shape)
        metadata = {"target_precision": item.get("precision"), "circuit_metadata": circuit_metadata[i] if circuit_metadata else {}}
        out.append(PubResult(DataBin(evs=evs, stds=stds, shape=shape), metadata=metadata))
    return PrimitiveResult(out, metadata=_metadata(document))


def _pubs(document: dict[str, Any], count: int | None) -> list[dict[str, Any]]:
    pubs = document.get("pubs")
    if not isinstance(pubs, list) or (count is not None and len(pubs) != count):
        found = len(pubs) if isinstance(pubs, list) else "no"
        raise QuantumError(f"task {document.get('task_id')} returned {found} pub results" + (f" for {count} pubs" if count is not None else ""))
    return pubs


def _bit_array(bit_array: Any, counts: Any, num_bits: int, shape: tuple[int, ...]) -> Any:
    flat = [counts] if not shape else list(_flatten(counts, len(shape)))
    return bit_array.from_counts(flat, num_bits).reshape(shape)


def _metadata(document: dict[str, Any]) -> dict[str, Any]:
    return {"version": 2, "task_id": document.get("task_id"), "resource": document.get("resource"), **document.get("metadata", {})}


def _vendor(document: dict[str, Any]) -> Any:
    """A QPU's own result (IBM Runtime JSON under ``vendor_result``), decoded as such; else None."""
    if "vendor_result" not in document:
        return None
    from qiskit.primitives import PrimitiveResult

    try:
        from qiskit_ibm_runtime import RuntimeDecoder
    except ImportError:
        raise QuantumError("decoding a QPU's result needs pip install 'snakemake-executor-plugin-quantum[ibm]'") from None
    result = json.loads(json.dumps(document["vendor_result"]), cls=RuntimeDecoder)
    if not isinstance(result, PrimitiveResult):
        raise QuantumError(f"task {document.get('task_id')} returned a {type(result).__name__}, not a PrimitiveResult")
    return result
