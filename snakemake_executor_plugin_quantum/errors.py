"""Errors users see. Each message is one line that says what was wrong and what to do.

The CLIs print ``str(error)`` and exit with ``error.exit_code``; tracebacks are for
``--debug`` only. Keep this module free of heavy imports: ``qrun`` loads it on every job.
"""

from __future__ import annotations

# Set to 1 in the environment, our commands show tracebacks and debug logs (as --debug does).
DEBUG_VARIABLE = "SNAKEMAKE_QUANTUM_DEBUG"


class QuantumError(Exception):
    """Base of every error this package raises on purpose."""

    exit_code = 1

    def __init__(self, message: str):
        # One line, always: multi-line causes (jsonschema, qiskit) are folded.
        super().__init__(" ".join(str(message).split()))


class ConfigError(QuantumError):
    """A resource config, a setting or a rule's resources are wrong."""

    exit_code = 2


class PayloadError(QuantumError):
    """A payload, circuit, observable or sequence is malformed or unsupported."""

    exit_code = 2


class ResourceLimitError(PayloadError):
    """The task is well-formed but exceeds what the resource allows (qubits, shots, memory)."""


class ResourceUnavailableError(QuantumError):
    """The resource cannot be reached or acquired (vQPU gone, QPU offline, acquire timed out)."""

    exit_code = 3


class TaskFailedError(QuantumError):
    """The task ran and ended Failed or Cancelled."""

    exit_code = 1


class TaskTimeoutError(QuantumError):
    """The task did not finish within the time allowed."""

    exit_code = 4


class UsageError(QuantumError):
    """A command was called with wrong arguments."""

    exit_code = 2


class MissingExtraError(ConfigError):
    """An optional dependency is needed for this resource type."""

    def __init__(self, what: str, extra: str):
        super().__init__(
            f"{what} needs an optional dependency: "
            f"pip install 'snakemake-executor-plugin-quantum[{extra}]'"
        )
