"""How an Aer resource is set up: its QRMI_AER_* settings, fake-device noise, memory arithmetic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, MissingExtraError
from ..resources.values import setting_number

METHODS = ("automatic", "statevector", "density_matrix", "matrix_product_state", "stabilizer")


@dataclass(frozen=True)
class AerOptions:
    method: str = "automatic"
    device: str = "CPU"
    noise_model: str | None = None  # a fake IBM device, e.g. "fake_torino" or "FakeTorino"
    seed: int | None = None
    max_memory_mb: int | None = None
    threads: int = 0  # OpenMP threads per simulation; 0: all cores

    @classmethod
    def from_settings(cls, settings: dict[str, str]) -> AerOptions:
        method = settings.get("QRMI_AER_METHOD", "automatic") or "automatic"
        if method not in METHODS:
            raise ConfigError(f"QRMI_AER_METHOD={method!r} is not one of {', '.join(METHODS)}")
        device = (settings.get("QRMI_AER_DEVICE", "CPU") or "CPU").upper()
        if device not in ("CPU", "GPU"):
            raise ConfigError(f"QRMI_AER_DEVICE={device!r} must be CPU or GPU")
        return cls(
            method=method,
            device=device,
            noise_model=settings.get("QRMI_AER_NOISE_MODEL") or None,
            seed=setting_number(settings, "QRMI_AER_SEED"),
            max_memory_mb=setting_number(settings, "QRMI_AER_MAX_MEMORY_MB"),
            threads=setting_number(settings, "QRMI_AER_THREADS") or 0,
        )


def dense_qubit_limit(method: str, budget_mb: float) -> int:
    """Most qubits whose complex128 state vector (or density matrix) fits in ``budget_mb``."""
    exponent_per_qubit = 2 if method == "density_matrix" else 1
    budget = budget_mb * 2**20
    qubits = 0
    while 16 * 2 ** ((qubits + 1) * exponent_per_qubit) <= budget:
        qubits += 1
    return qubits


def human_mb(mb: float) -> str:
    if mb == float("inf"):
        return "more memory than exists"
    if mb >= 2**20:
        return f"{mb / 2**20:.3g} TiB"
    if mb >= 1024:
        return f"{mb / 1024:.3g} GiB"
    return f"{mb:.3g} MiB"


def fake_device(name: str) -> Any:
    """A fake IBM device by name ('fake_torino', 'FakeTorino', 'torino')."""
    try:
        from qiskit_ibm_runtime import fake_provider
    except ImportError:
        raise MissingExtraError(f"QRMI_AER_NOISE_MODEL={name}", "ibm") from None
    wanted = name.lower().replace("_", "").replace("-", "")
    if not wanted.startswith("fake"):
        wanted = "fake" + wanted
    for attr in dir(fake_provider):
        if attr.lower() == wanted and attr.startswith("Fake"):
            return getattr(fake_provider, attr)()
    raise ConfigError(f"QRMI_AER_NOISE_MODEL={name!r} is not a fake IBM device (e.g. fake_torino, fake_sherbrooke)")
