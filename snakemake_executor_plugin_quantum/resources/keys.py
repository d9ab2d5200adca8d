"""The ``QRMI_*`` settings of our own resource types, and the values each takes.

One table, so that a bad value in a config's ``environment`` fails when the config is
loaded (and so in ``qplan``, before anything runs), in one line naming the resource, the
key and what is allowed, instead of later when a vQPU starts. The modules that read
these keys (``engines/aer_options.py``, ``engines/pulser.py``, ``service/build.py``,
``backends/``, ``tasks.py``) keep reading them themselves; ``tests/unit/test_config.py``
checks that every ``QRMI_*`` key the package reads is in this table and that the value
lists below equal the readers' own (``aer_options.METHODS``, ``service.build.ENGINES``).
They are copied, not imported, because this runs in every ``qrun`` that loads a config,
and importing ``service.build`` imports the whole vQPU service (HTTP server, lanes, payload
parsing). Keys of QRMI types (IBM, Pasqal, ...)
are the vendors' and pass through unchecked.
"""

from __future__ import annotations

from collections.abc import Callable

AER_METHODS = ("automatic", "statevector", "density_matrix", "matrix_product_state", "stabilizer")
AER_DEVICES = ("CPU", "GPU")
VQPU_ENGINES = ("aer", "pulser")

Check = Callable[[str], "str | None"]  # the value -> what it must be, or None if it is fine


def _one_of(allowed: tuple[str, ...], fold: bool = False) -> Check:
    def check(value: str) -> str | None:
        if (value.upper() if fold else value) in allowed:
            return None
        return f"must be one of {', '.join(allowed)}"

    return check


def _integer(minimum: int, maximum: int | None = None) -> Check:
    def check(value: str) -> str | None:
        try:
            number = int(value)
        except ValueError:
            number = None
        if number is None or number < minimum or (maximum is not None and number > maximum):
            return f"must be an integer from {minimum} to {maximum}" if maximum is not None else f"must be an integer >= {minimum}"
        return None

    return check


def _number(unit: str, minimum: float, inclusive: bool = True) -> Check:
    def check(value: str) -> str | None:
        try:
            number = float(value)
        except ValueError:
            number = None
        if number is None or number != number or number < minimum or (number == minimum and not inclusive):
            return f"must be a number of {unit} {'>=' if inclusive else '>'} {minimum:g}"
        return None

    return check


def _text(_value: str) -> str | None:
    return None


# key -> its check; an empty value always means "the default".
KEYS: dict[str, Check] = {
    # Aer (qiskit-aer resources, and vQPUs with the aer engine): engines/aer_options.py
    "QRMI_AER_METHOD": _one_of(AER_METHODS),
    "QRMI_AER_DEVICE": _one_of(AER_DEVICES, fold=True),
    "QRMI_AER_NOISE_MODEL": _text,  # a fake IBM device: checked where qiskit-ibm-runtime is imported
    "QRMI_AER_SEED": _integer(0),
    "QRMI_AER_MAX_MEMORY_MB": _integer(0),
    "QRMI_AER_THREADS": _integer(0),
    # Pulser: engines/pulser.py
    "QRMI_PULSER_SEED": _integer(0),
    "QRMI_PULSER_MAX_ATOMS": _integer(0),
    # Every local type: backends/__init__.py, tasks.py
    "QRMI_MAX_SHOTS": _integer(1),
    "QRMI_TASK_TIMEOUT": _number("seconds", 0, inclusive=False),
    # vQPU service and client: service/build.py, backends/vqpu_client.py, resources/events.py
    "QRMI_VQPU_ENGINE": _one_of(VQPU_ENGINES),
    "QRMI_VQPU_LANES": _integer(1),
    "QRMI_VQPU_IDLE_TIMEOUT": _number("seconds", 0),
    "QRMI_VQPU_WALLTIME": _number("seconds", 0),
    "QRMI_VQPU_HOST": _text,
    "QRMI_VQPU_PORT": _integer(0, 65535),
    "QRMI_VQPU_MAX_REQUEST_MB": _number("MiB", 0, inclusive=False),
    "QRMI_VQPU_EVENT_FILE": _text,
    "QRMI_VQPU_EVENT_DIR": _text,
    "QRMI_VQPU_WAIT_SECONDS": _number("seconds", 0),
    "QRMI_VQPU_TASK_TIMEOUT": _number("seconds", 0, inclusive=False),
    "QRMI_VQPU_MAX_CONNECTIONS": _integer(1),
    "QRMI_VQPU_CONNECTION_IDLE_SECONDS": _number("seconds", 0, inclusive=False),
    "QRMI_VQPU_MAX_REPLY_MB": _number("MiB", 0, inclusive=False),
    # The job contract (resources/jobenv.py): set per job, accepted in a config as spank_qrmi does.
    "QRMI_JOB_TIMEOUT_SECONDS": _number("seconds", 0),
    "QRMI_JOB_ACQUISITION_TOKEN": _text,
}


def problem(key: str, value: str) -> str | None:
    """What is wrong with ``value`` for ``key`` (one phrase), or None; unknown keys pass."""
    check = KEYS.get(key)
    if check is None or value == "":
        return None
    return check(value)
