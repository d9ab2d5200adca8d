"""Fuzzed inputs: payloads, OpenQASM and the vQPU HTTP API give clean errors, never hang.

5,700 generated cases in all (derandomized, so CI runs are reproducible). The rule
everywhere: a malformed input is a one-line QuantumError (or a 4xx reply); anything
else, a traceback-worthy exception or a stuck call, is a failure.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from conftest import CIRCUITS, Service, start_service, stop_service
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snakemake_executor_plugin_quantum.errors import QuantumError
from snakemake_executor_plugin_quantum.payloads.model import PrimitiveTask, PulserTask
from snakemake_executor_plugin_quantum.payloads.parse import parse_payload

pytestmark = pytest.mark.slow

FUZZ = {"derandomize": True, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]}
GHZ = (CIRCUITS / "ghz5.qasm").read_text()

scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=10
)
encoded = st.fixed_dictionaries({"__type__": st.sampled_from(["ndarray", "complex", "QuantumCircuit", "set", "Result", "x"]), "__value__": json_values})
pubs = st.lists(
    st.one_of(st.just(GHZ), st.text(max_size=60), json_values, encoded, st.lists(st.one_of(st.just(GHZ), json_values, encoded, st.integers(-5, 10**9)), max_size=5)),
    max_size=4,
)
primitive_parameters = st.fixed_dictionaries(
    {},
    optional={
        "pubs": pubs,
        "shots": st.one_of(st.integers(-10, 10**12), st.floats(), st.text(max_size=5), st.none()),
        "version": st.one_of(st.integers(0, 3), json_values),
        "precision": st.one_of(st.floats(), st.integers(-1, 2), st.text(max_size=3)),
        "options": st.one_of(json_values, st.fixed_dictionaries({}, optional={
            "default_shots": st.one_of(st.integers(-5, 10**9), json_values),
            "simulator": st.one_of(json_values, st.fixed_dictionaries({"seed_simulator": json_values})),
            "twirling": json_values,
        })),
    },
)
payloads = st.one_of(
    json_values,
    st.fixed_dictionaries({"program_id": st.one_of(st.sampled_from(["sampler", "estimator"]), json_values), "parameters": st.one_of(primitive_parameters, json_values)}),
    st.fixed_dictionaries({"sequence": st.one_of(json_values, st.text(max_size=50)), "job_runs": st.one_of(st.integers(-3, 10**9), json_values)}),
    st.fixed_dictionaries({}, optional={"human_qir": json_values, "iqmjson": json_values, "program_id": json_values}),
)


@settings(max_examples=3000, deadline=1000, **FUZZ)
@given(payloads)
def test_payload_parsing_gives_tasks_or_clean_errors(payload: object) -> None:
    try:
        task = parse_payload(payload)
    except QuantumError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert isinstance(task, (PrimitiveTask, PulserTask))


# ------------------------------------------------------------------ OpenQASM

GATES = ["h", "x", "cx", "rz(0.3)", "ccx", "u(1,2,3)", "measure", "frob", "cp(pi/4)", "swap", "reset", "barrier", "rx(θ)", "ry(1e400)"]
QUBITS = ["q[0]", "q[1]", "q[2]", "q[9]", "$0", "$60", "q", "r[0]", "q[-1]", "q[0], q[1]", "q[0], q[0]"]
lines = st.one_of(
    st.builds(lambda g, q: f"{g} {q};", st.sampled_from(GATES), st.sampled_from(QUBITS)),
    st.builds(lambda q: f"c[0] = measure {q};", st.sampled_from(QUBITS)),
    st.sampled_from(["qubit[3] q;", "bit[3] c;", "qreg q[3];", "creg c[3];", "input float[64] θ;", "gate g a { h a; }", "}", "{", ""]),
    st.text(max_size=30),
)
headers = st.sampled_from(['OPENQASM 3.0;\ninclude "stdgates.inc";', "OPENQASM 2.0;\ninclude \"qelib1.inc\";", "OPENQASM 3.0;", "OPENQASM 4;", ""])


@pytest.fixture(scope="module")
def aer_engine():  # noqa: ANN201 - a module-wide warm engine
    from snakemake_executor_plugin_quantum.engines.aer import AerEngine, AerOptions

    engine = AerEngine(AerOptions(max_memory_mb=64))
    engine.warm_up()
    return engine


@settings(max_examples=1500, deadline=3000, **FUZZ)
@given(headers, st.lists(lines, max_size=12), st.booleans())
def test_qasm_handling_gives_circuits_or_clean_errors(aer_engine, header: str, body: list[str], estimator: bool) -> None:
    text = header + "\n" + "\n".join(body)
    pub = [text, "ZZZ"] if estimator else [text]
    payload = {"program_id": "estimator" if estimator else "sampler", "parameters": {"pubs": [pub], "shots": 16}}
    try:
        task = parse_payload(payload)
        aer_engine.run(task, aer_engine.check(task))
    except QuantumError as exc:
        assert str(exc) and "\n" not in str(exc)


# ------------------------------------------------------------------ HTTP API

@pytest.fixture(scope="module")
def fuzz_service(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    service = start_service("fuzz", tmp_path_factory.mktemp("fuzz") / "events", "--lanes", "1", "--max-request-mb", "1", shared=True)
    yield service
    stop_service(service)


METHODS = ["GET", "POST", "DELETE", "PUT", "HEAD", "OPTIONS", "PATCH", "BREW", "get", ""]
PATHS = ["/v1/health", "/v1/tasks", "/v1/tasks/" + "a" * 32, "/v1/tasks/" + "a" * 32 + "/result?wait=0.01", "/v1/tasks/x/result", "/v1/metadata",
         "/v1/target", "/v1/acquire", "/v1/release", "/v1/tasks?wait=abc", "/../../etc/passwd", "/" + "x" * 5000, "*", "/v1/tasks/%00"]
STATUSES = {200, 201, 202, 400, 401, 403, 404, 405, 409, 411, 413, 414, 431, 501, 503}


_TOKENS: dict[int, str] = {}


def _acquired(service: Service) -> str:
    """An acquisition token of the fuzzed service, so authorised tasks get past that check."""
    from snakemake_executor_plugin_quantum.backends.vqpu_client import VQPUClient

    if service.process.pid not in _TOKENS:
        _TOKENS[service.process.pid] = VQPUClient(service.name, {"QRMI_VQPU_EVENT_FILE": str(service.event_file)}).acquire()
    return _TOKENS[service.process.pid]


def _exchange(service: Service, raw: bytes) -> bytes:
    event = service.event()
    with socket.create_connection((event["host"], event["port"]), timeout=10) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@settings(max_examples=1200, deadline=10000, **FUZZ)
@given(
    st.sampled_from(METHODS), st.sampled_from(PATHS) | st.text(max_size=40).map(lambda t: "/" + t.replace(" ", "")),
    st.sampled_from(["auth", "none", "wrong"]), st.one_of(st.none(), st.integers(-5, 3 * 2**20), st.text(max_size=5)),
    st.one_of(payloads.map(lambda p: json.dumps(p).encode()), st.binary(max_size=200), st.just(json.dumps({"program_id": "sampler", "parameters": {"pubs": [[GHZ]], "shots": 8}}).encode())),
)
def test_http_api_answers_every_request_and_keeps_serving(fuzz_service: Service, method: str, path: str, token: str, length: object, body: bytes) -> None:
    headers = [f"{method} {path} HTTP/1.1", "Host: fuzz"]
    if token == "auth":
        headers.append(f"Authorization: Bearer {fuzz_service.event()['token']}")
        headers.append(f"X-Acquisition-Token: {_acquired(fuzz_service)}")
    elif token == "wrong":
        headers.append("Authorization: Bearer wrong")
    if length is not None:
        headers.append(f"Content-Length: {length}")
    reply = _exchange(fuzz_service, ("\r\n".join(headers) + "\r\n\r\n").encode("utf-8", "replace") + body)
    assert fuzz_service.process.poll() is None, "the service died"
    # Every request gets an answer: an HTTP status line, a listed status, and for an
    # error a JSON body naming it. Silence (an empty reply) is a failure.
    assert reply.startswith(b"HTTP/1.1 "), f"no HTTP reply: {reply[:80]!r}"
    status = int(reply.split(b" ", 2)[1])
    assert status in STATUSES, reply[:200]
    head, _, rest = reply.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")))
    if status >= 400:  # the first reply (bytes after a body-less request are read as the next one)
        assert json.loads(rest[:length])["error"], reply[:200]


def test_service_is_healthy_after_the_fuzzing(fuzz_service: Service) -> None:
    from snakemake_executor_plugin_quantum.backends.vqpu_client import VQPUClient

    client = VQPUClient("fuzz", {"QRMI_VQPU_EVENT_FILE": str(fuzz_service.event_file)})
    result = client.run({"program_id": "sampler", "parameters": {"pubs": [[GHZ]], "shots": 100}})
    assert sum(result["pubs"][0]["registers"]["meas"]["counts"].values()) == 100
    client.close()
    assert Path(fuzz_service.event_file).exists()
