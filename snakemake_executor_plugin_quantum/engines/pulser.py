"""Pulser emulation of neutral-atom sequences (pulser-simulation, QuTiP backend).

``job_runs`` are shots. Pulser samples with numpy's global generator, so we take the
final state's bitstring probabilities and sample them ourselves: a seed then gives
the same counts every time, whichever thread runs the task.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from ..errors import PayloadError, ResourceLimitError
from ..payloads.model import Limits, PulserTask
from ..resources.values import setting_number


@dataclass(frozen=True)
class PulserOptions:
    seed: int | None = None
    max_atoms: int = 12  # QuTiP state dimension 2^12; beyond ~14 atoms runs take minutes

    @classmethod
    def from_settings(cls, settings: dict[str, str]) -> PulserOptions:
        return cls(
            seed=setting_number(settings, "QRMI_PULSER_SEED"),
            max_atoms=setting_number(settings, "QRMI_PULSER_MAX_ATOMS", 12) or 12,
        )


class PulserEngine:
    engine = "pulser"

    def __init__(self, options: PulserOptions = PulserOptions(), limits: Limits = Limits(), preload: bool = True):
        """``preload``: import Pulser now (seconds), as a warm service does at start so its
        forked workers inherit it; else when a task first needs it, so that ``qrun``
        refuses a payload that fails our own checks without paying for it."""
        if preload:
            import pulser  # noqa: F401
            import pulser_simulation  # noqa: F401

        self.options = options
        self.limits = limits

    def target(self) -> dict[str, Any]:
        import pulser

        return {
            "engine": "pulser",
            "simulator": f"pulser-simulation {pulser.__version__} (QuTiP)",
            "max_atoms": self.options.max_atoms,
            "max_shots": self.limits.max_shots,
            "programs": ["pulser"],
        }

    def warm_up(self, parse: bool = True, simulate: bool = True) -> None:
        """Emulate one short single-atom pulse so the first real task pays no first-use costs."""
        from pulser import Pulse, Register, Sequence
        from pulser.devices import MockDevice

        sequence = Sequence(Register({"q0": (0, 0)}), MockDevice)
        sequence.declare_channel("ch", "rydberg_global")
        sequence.add(Pulse.ConstantPulse(100, 1.0, 0.0, 0.0), "ch")
        sequence.measure("ground-rydberg")
        task = PulserTask(sequence=sequence.to_abstract_repr(), shots=8, seed=0)
        self.check(task)
        if simulate:
            self.run(task)

    def is_small(self, task: PulserTask, prepared: None) -> bool:
        return False  # even two atoms take ~100 ms in QuTiP: always worth a worker

    def check(self, task: PulserTask, cached_only: bool = False) -> None:
        """Validate now; ``run`` reloads the sequence (2 ms) rather than ship Pulser objects.
        Nothing is cached, so ``cached_only`` checks nothing (a Pulser task is never quick)."""
        if not cached_only:
            self.load(task)

    def load(self, task: PulserTask) -> Any:
        """The sequence, validated; raises PayloadError naming the problem."""
        from pulser import Sequence

        try:
            sequence = Sequence.from_abstract_repr(task.sequence)
        except Exception as exc:  # jsonschema, ValueError, TypeError, KeyError from pulser
            raise PayloadError(f"invalid Pulser sequence: {_describe(exc)}") from None
        if sequence.is_parametrized():
            names = ", ".join(sorted(sequence.declared_variables)) or "?"
            raise PayloadError(f"Pulser sequence declares variables ({names}); build it with values before sending")
        atoms = len(sequence.register.qubit_ids)
        if atoms > self.options.max_atoms:
            raise ResourceLimitError(f"Pulser sequence has {atoms} atoms; this emulator allows at most {self.options.max_atoms}")
        if not sequence.get_duration():
            raise PayloadError("Pulser sequence has no pulses (duration 0)")
        return sequence

    def run(self, task: PulserTask, prepared: None = None, threads: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        import numpy as np
        from pulser.backend import StateResult
        from pulser_simulation import QutipBackendV2, QutipConfig

        started = time.perf_counter()
        sequence = self.load(task)
        seed = task.seed if task.seed is not None else self.options.seed
        if seed is None:
            seed = secrets.randbits(31)
        try:
            backend = QutipBackendV2(sequence, config=QutipConfig(observables=[StateResult()]))
            state = backend.run().final_state
            probabilities = state.bitstring_probabilities()
        except (ValueError, TypeError, NotImplementedError) as exc:
            raise PayloadError(f"Pulser emulation failed: {_describe(exc)}") from None
        bitstrings = list(probabilities)
        weights = np.array([float(probabilities[b]) for b in bitstrings])
        weights = weights / weights.sum()
        draws = np.random.default_rng(seed).multinomial(task.shots, weights)
        counts = {b: int(n) for b, n in sorted(zip(bitstrings, draws, strict=True)) if n}
        body = {"shots": task.shots, "atoms": [str(q) for q in sequence.register.qubit_ids], "counts": counts}
        metadata = {
            "engine": "pulser",
            "device": sequence.device.name,
            "seed": seed,
            "duration_ns": sequence.get_duration(),
            "run_seconds": round(time.perf_counter() - started, 6),
        }
        return body, metadata


def _describe(exc: BaseException) -> str:
    message = getattr(exc, "message", None)  # jsonschema errors: the short form
    if message:
        path = "/".join(str(p) for p in getattr(exc, "absolute_path", []))
        return f"{message[:300]}{' at ' + path if path else ''}"
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
