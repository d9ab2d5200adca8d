"""The vQPU service as a real process on a real socket."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import (
    CIRCUITS,
    Service,
    clean_env,
    command,
    run,
    start_service,
    stop_service,
    wait_gone,
)

from snakemake_executor_plugin_quantum.backends import ResourceStatus
from snakemake_executor_plugin_quantum.backends.vqpu_client import VQPUClient
from snakemake_executor_plugin_quantum.errors import (
    PayloadError,
    ResourceUnavailableError,
    TaskFailedError,
    TaskTimeoutError,
)

pytestmark = pytest.mark.slow

GHZ = (CIRCUITS / "ghz5.qasm").read_text()
SAMPLE = {"program_id": "sampler", "parameters": {"pubs": [[GHZ]], "shots": 200}}
# Aer runs it forever, holding the GIL.
LOOP = (CIRCUITS / "never_ends.qasm").read_text()
FOREVER = {"program_id": "sampler", "parameters": {"pubs": [[LOOP]], "shots": 10}}


@pytest.fixture(scope="module")
def vqpu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One Aer vQPU with the default limits, shared by the tests that do not stop or break it."""
    service = start_service("sim", tmp_path_factory.mktemp("events"), "--engine", "aer", "--lanes", "2", shared=True)
    yield service
    stop_service(service)
    assert not service.event_file.exists(), "the event file must be removed on shutdown"


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A vQPU with tight limits: 8 connections, closed after 1 s idle, tasks stopped after 2 s."""
    env = clean_env(lim_QRMI_VQPU_MAX_CONNECTIONS="8", lim_QRMI_VQPU_CONNECTION_IDLE_SECONDS="1", lim_QRMI_VQPU_TASK_TIMEOUT="2")
    service = start_service("lim", tmp_path_factory.mktemp("events"), "--lanes", "1", env=env, shared=True)
    yield service
    stop_service(service)


def client(service: Service) -> VQPUClient:
    return VQPUClient(service.name, {"QRMI_VQPU_EVENT_FILE": str(service.event_file)})


def raw(service: Service, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict]:
    event = service.event()
    connection = http.client.HTTPConnection(event["host"], event["port"], timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else {}
    finally:
        connection.close()


_ACQUIRED: dict[int, str] = {}


def auth(service: Service) -> dict:
    """The bearer token, and an acquisition token from this service (acquired once)."""
    if service.process.pid not in _ACQUIRED:
        _ACQUIRED[service.process.pid] = client(service).acquire()
    return {"Authorization": f"Bearer {service.event()['token']}", "X-Acquisition-Token": _ACQUIRED[service.process.pid]}


def test_event_file_is_private_and_complete(vqpu: Service) -> None:
    mode = stat.S_IMODE(os.stat(vqpu.event_file).st_mode)
    assert mode == 0o600
    event = vqpu.event()
    assert {"name", "host", "port", "pid", "token", "engine", "qubits", "started"} <= set(event)
    assert event["pid"] == vqpu.process.pid and event["host"] == "127.0.0.1" and event["engine"] == "aer"


@pytest.mark.parametrize("token", [None, "Bearer wrong", "Basic abc"])
def test_missing_or_wrong_token_gets_401(vqpu: Service, token: str | None) -> None:
    headers = {"Authorization": token} if token else {}
    status, body = raw(vqpu, "POST", "/v1/tasks", json.dumps(SAMPLE).encode(), headers)
    assert status == 401 and "token" in body["error"]
    assert client(vqpu).health()["ok"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("POST", "/v1/tasks", b"{not json", 400, "not valid JSON"),
        ("POST", "/v1/tasks", b"", 400, "empty"),
        ("POST", "/v1/tasks", b'{"program_id": "sampler"}', 400, "'parameters' is a required property"),
        ("POST", "/v1/tasks", json.dumps({"program_id": "sampler", "parameters": {"pubs": [["OPENQASM 3.0; qubit q; wobble q;"]]}}).encode(), 400, "invalid OpenQASM 3"),
        ("GET", "/v1/tasks/" + "0" * 32, None, 404, "no task"),
        ("GET", "/v1/nowhere", None, 404, "no route"),
        ("PUT", "/v1/tasks", b"{}", 405, "PUT not allowed"),
        ("OPTIONS", "/v1/tasks", None, 501, "Unsupported method"),
        ("GET", "/v1/tasks/" + "0" * 32 + "?wait=soon", None, 400, "is not a number"),
    ],
)
def test_malformed_requests_get_4xx_and_the_service_keeps_serving(vqpu: Service, method: str, path: str, body: bytes | None, status: int, message: str | None) -> None:
    got, reply = raw(vqpu, method, path, body, auth(vqpu))
    assert got == status
    if message:
        assert message in reply["error"] and "\n" not in reply["error"]
    result = client(vqpu).run(SAMPLE)
    assert sum(result["pubs"][0]["registers"]["meas"]["counts"].values()) == 200


def test_oversized_request_is_refused_without_reading_it(vqpu: Service) -> None:
    headers = {**auth(vqpu), "Content-Length": str(65 * 2**20)}
    event = vqpu.event()
    connection = http.client.HTTPConnection(event["host"], event["port"], timeout=30)
    connection.putrequest("POST", "/v1/tasks")
    for key, value in headers.items():
        connection.putheader(key, value)
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and b"exceeds the limit" in response.read()
    connection.close()
    assert client(vqpu).health()["ok"]


def test_garbage_on_the_socket_does_not_hurt(vqpu: Service) -> None:
    import socket

    event = vqpu.event()
    with socket.create_connection((event["host"], event["port"]), timeout=10) as sock:
        sock.sendall(b"\x00\xff garbage \r\n\r\n")
        assert b"error" in sock.recv(200)  # a JSON error (bare, as HTTP/0.9 has no status line)
    assert client(vqpu).health()["ok"]


def test_shot_and_qubit_limits(tmp_path: Path) -> None:
    env = clean_env(shots_QRMI_MAX_SHOTS="1000", shots_QRMI_AER_MAX_MEMORY_MB="1")
    service = start_service("shots", tmp_path / "events", "--lanes", "1", env=env)
    try:
        with pytest.raises(PayloadError, match="limit of 1000 shots"):
            client(service).run({"program_id": "sampler", "parameters": {"pubs": [[GHZ]], "shots": 1001}})
        wide = 'OPENQASM 3.0; include "stdgates.inc"; qubit[20] q; bit[20] c; ' + " ".join(f"h q[{i}]; t q[{i}];" for i in range(20)) + " c = measure q;"
        with pytest.raises(PayloadError, match="20 active qubits exceed"):
            client(service).run({"program_id": "sampler", "parameters": {"pubs": [[wide]], "shots": 10}})
    finally:
        stop_service(service)


def test_serving_off_loopback_needs_a_token(tmp_path: Path) -> None:
    result = run([command("vqpu"), "serve", "x", "--host", "0.0.0.0", "--no-token", "--event-dir", str(tmp_path)], timeout=120)
    assert result.returncode != 0 and "refusing to serve on 0.0.0.0 without a token" in result.stderr
    assert not list(tmp_path.iterdir())


def long_circuit(qubits: int = 20, layers: int = 400) -> str:
    lines = ["OPENQASM 2.0;", 'include "qelib1.inc";', f"qreg q[{qubits}];", f"creg c[{qubits}];"]
    for layer in range(layers):
        lines += [f"rx({0.1 + 0.01 * layer:.3f}) q[{i}];" for i in range(qubits)]
        lines += [f"cx q[{i}],q[{i + 1}];" for i in range(qubits - 1)]
    return "\n".join(lines + ["measure q -> c;"])


def test_stopping_a_running_task_kills_its_worker_and_service_goes_on(tmp_path: Path) -> None:
    service = start_service("stopper", tmp_path / "events", "--lanes", "1")
    try:
        c = client(service)
        workers_before = {p.pid for p in psutil.Process(service.process.pid).children(recursive=True)}
        task = c.task_start({"program_id": "sampler", "parameters": {"pubs": [[long_circuit()]], "shots": 10}})
        deadline = time.monotonic() + 30
        while c.task_status(task).value != "Running":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        started = time.monotonic()
        health = c.health()  # answers while the worker simulates
        assert health["ok"] and time.monotonic() - started < 1.0
        c.task_stop(task)
        assert c.task_status(task).value == "Cancelled"
        with pytest.raises(TaskFailedError, match="cancelled"):
            c.task_result(task)
        result = c.run(SAMPLE, timeout=60)  # a fresh worker serves the next task
        assert set(result["pubs"][0]["registers"]["meas"]["counts"]) <= {"00000", "11111"}
        workers_after = {p.pid for p in psutil.Process(service.process.pid).children(recursive=True)}
        assert workers_before - workers_after, "the worker running the stopped task was killed"
    finally:
        stop_service(service)


def test_a_lane_running_alone_uses_the_idle_lanes_cores_with_the_same_samples(vqpu: Service) -> None:
    cores = os.cpu_count() or 1
    c = client(vqpu)
    sixteen = {"program_id": "sampler", "parameters": {"pubs": [[long_circuit(16, 20)]], "shots": 300, "options": {"simulator": {"seed_simulator": 5}}}}
    alone = c.run(sixteen, timeout=120)
    assert f", {cores} thread(s)" in c.task_logs(c.last_task_id)
    blocker = c.task_start({"program_id": "sampler", "parameters": {"pubs": [[long_circuit(18, 300)]], "shots": 10}})
    try:
        deadline = time.monotonic() + 30
        while c.task_status(blocker).value != "Running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        beside = c.run(sixteen, timeout=120)
        assert f", {max(1, cores // 2)} thread(s)" in c.task_logs(c.last_task_id)
    finally:
        c.task_stop(blocker)
    counts = [r["pubs"][0]["registers"]["c"]["counts"] for r in (alone, beside)]
    assert counts[0] == counts[1], "a seed gives the same samples whatever the thread count"


def test_eight_clients_hundred_tasks_each_without_errors_and_bounded_memory(vqpu: Service) -> None:
    def tree_rss() -> int:
        root = psutil.Process(vqpu.process.pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])

    client(vqpu).run(SAMPLE)
    rss_before = tree_rss()
    errors: list[str] = []
    results: list[int] = []

    def worker(index: int) -> None:
        c = client(vqpu)
        payload = {"program_id": "sampler", "parameters": {"pubs": [[GHZ]], "shots": 100 + index}}
        for _ in range(100):
            try:
                result = c.run(payload)
                counts = result["pubs"][0]["registers"]["meas"]["counts"]
                assert set(counts) <= {"00000", "11111"}
                results.append(sum(counts.values()) - index)
            except Exception as exc:  # collected: the test reports every failure
                errors.append(repr(exc))
        c.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert errors == []
    assert results == [100] * 800  # every client got its own shots back, never another's
    growth_mb = (tree_rss() - rss_before) / 2**20
    assert growth_mb < 100, f"service memory grew by {growth_mb:.0f} MiB over 800 tasks"


@pytest.mark.parametrize("option", ["--idle-timeout", "--walltime"])
def test_service_stops_itself_on_idle_timeout_and_walltime(tmp_path: Path, option: str) -> None:
    service = start_service("shy", tmp_path / "events", option, "2", "--lanes", "1")
    try:
        service.process.wait(30)
        assert not service.event_file.exists()
        assert ("idle for 2 s" if option == "--idle-timeout" else "walltime of 2 s reached") in service.log()
    finally:
        stop_service(service)


def test_service_stops_when_its_parent_dies(tmp_path: Path) -> None:
    parent = subprocess.Popen(["sleep", "3"])
    service = start_service("orphan", tmp_path / "events", "--parent-pid", str(parent.pid), "--lanes", "1")
    try:
        workers = [p.pid for p in psutil.Process(service.process.pid).children(recursive=True)]
        parent.wait()
        service.process.wait(30)
        assert not service.event_file.exists()
        assert all(wait_gone(pid) for pid in workers)
    finally:
        stop_service(service)


def test_kill_9_of_the_service_takes_its_workers_with_it(tmp_path: Path) -> None:
    service = start_service("doomed", tmp_path / "events", "--lanes", "2")
    assert client(service).status() is ResourceStatus.ONLINE
    workers = [p.pid for p in psutil.Process(service.process.pid).children(recursive=True)]
    assert len(workers) >= 3  # forkserver, two lanes (and the resource tracker)
    service.process.send_signal(signal.SIGKILL)
    service.process.wait(10)
    assert all(wait_gone(pid) for pid in workers), "no worker may outlive its service"
    with pytest.raises(Exception, match="is gone"):
        client(service).health()
    assert client(service).status() is ResourceStatus.OFFLINE
    stop_service(service)


def test_status_and_stop_commands(tmp_path: Path) -> None:
    events = tmp_path / "events"
    service = start_service("cli", events, "--lanes", "1")
    try:
        status = run([command("vqpu"), "status", "--event-dir", str(events)])
        assert status.returncode == 0 and "cli: up  aer" in status.stdout
        stopped = run([command("vqpu"), "stop", "cli", "--event-dir", str(events)])
        assert stopped.returncode == 0 and f"stopped (pid {service.process.pid})" in stopped.stdout
        service.process.wait(10)
        assert not service.event_file.exists()
        after = run([command("vqpu"), "status", "cli", "--event-dir", str(events)])
        assert after.returncode == 1 and "cli: not running" in after.stdout
    finally:
        stop_service(service)


def test_stale_event_file_is_cleared_by_stop(tmp_path: Path) -> None:
    events = tmp_path / "events"
    service = start_service("stale", events, "--lanes", "1")
    service.process.send_signal(signal.SIGKILL)
    service.process.wait(10)
    assert service.event_file.exists()  # kill -9 leaves it behind
    status = run([command("vqpu"), "status", "stale", "--event-dir", str(events)])
    assert status.returncode == 1 and f"stale: DOWN (its process {service.process.pid} is gone" in status.stdout
    stopped = run([command("vqpu"), "stop", "stale", "--event-dir", str(events)])
    assert "stale event removed" in stopped.stdout and not service.event_file.exists()
    stop_service(service)


def test_pulser_vqpu_runs_sequences(tmp_path: Path) -> None:
    from test_qrun import pulser_sequence

    service = start_service("atoms", tmp_path / "events", "--engine", "pulser", "--lanes", "1")
    try:
        result = client(service).run({"sequence": pulser_sequence(), "job_runs": 300, "seed": 5})
        assert sum(result["counts"].values()) == 300 and result["atoms"] == ["q0", "q1", "q2"]
        with pytest.raises(PayloadError, match="cannot run a Qiskit primitive payload"):
            client(service).run(SAMPLE)
    finally:
        stop_service(service)


# ------------------------------------------------------------------ connection limits


def idle_sockets(service: Service, count: int) -> list[socket.socket]:
    event = service.event()
    return [socket.create_connection((event["host"], event["port"]), timeout=5) for _ in range(count)]


def test_idle_connections_hold_no_thread_and_a_real_client_is_still_answered(vqpu: Service) -> None:
    sockets = idle_sockets(vqpu, 300)  # none sends a byte, none has the token
    try:
        time.sleep(0.2)  # the service has accepted them all
        threads = psutil.Process(vqpu.process.pid).num_threads()
        started = time.monotonic()
        assert client(vqpu).health()["ok"]
        assert time.monotonic() - started < 1.0
        assert threads < 40, f"{threads} threads for 300 idle connections"
    finally:
        for sock in sockets:
            sock.close()


def test_idle_connections_are_closed_after_the_idle_timeout(limited: Service) -> None:
    (sock,) = idle_sockets(limited, 1)
    started = time.monotonic()
    assert sock.recv(1) == b"", "the service closes an idle connection without a word"
    assert 0.9 < time.monotonic() - started < 2.5
    sock.close()


def test_a_half_sent_request_is_closed_after_the_idle_timeout(limited: Service) -> None:
    (sock,) = idle_sockets(limited, 1)
    sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
    started = time.monotonic()
    assert sock.recv(1) == b""
    assert time.monotonic() - started < 2.5
    sock.close()


def test_beyond_the_cap_the_longest_idle_connection_makes_room(limited: Service) -> None:
    sockets = idle_sockets(limited, 8)  # the cap
    try:
        time.sleep(0.1)
        started = time.monotonic()
        assert client(limited).health()["ok"]
        assert time.monotonic() - started < 1.0
        sockets[0].settimeout(1)
        assert sockets[0].recv(1) == b"", "the oldest idle connection was closed to make room"
    finally:
        for sock in sockets:
            sock.close()


def test_beyond_the_cap_with_every_connection_busy_a_new_one_gets_503_at_once(limited: Service) -> None:
    c = client(limited)
    task = c.task_start(FOREVER, timeout=5)
    event = limited.event()
    polls = []
    try:
        for _ in range(8):  # long-polls: busy connections, not idle ones
            poll = http.client.HTTPConnection(event["host"], event["port"], timeout=10)
            poll.request("GET", f"/v1/tasks/{task}?wait=2", headers=auth(limited))
            polls.append(poll)
        time.sleep(0.2)
        started = time.monotonic()
        status, body = raw(limited, "GET", "/v1/health", None, auth(limited))
        assert status == 503 and "busy connections" in body["error"]
        assert time.monotonic() - started < 1.0
        for poll in polls:  # the long-polls still get their answer
            assert poll.getresponse().status == 200
    finally:
        for poll in polls:
            poll.close()
        c.task_stop(task)
        c.close()


# ------------------------------------------------------------------ TLS off loopback


@pytest.fixture(scope="module")
def tls_vqpu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """``--host 0.0.0.0`` alone: the event file names this machine, which resolves to loopback here."""
    service = start_service("tls", tmp_path_factory.mktemp("events"), "--host", "0.0.0.0", "--lanes", "1", shared=True)
    yield service
    stop_service(service)


def tls_request(service: Service, request: bytes) -> bytes:
    import ssl

    event = service.event()
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection((event["host"], event["port"]), timeout=10) as sock, context.wrap_socket(sock) as tls:
        tls.sendall(request)
        return tls.recv(4096)


def test_off_loopback_the_service_serves_tls_and_the_client_pins_its_certificate(tls_vqpu: Service) -> None:
    event = tls_vqpu.event()
    assert len(event["tls_sha256"]) == 64
    result = client(tls_vqpu).run(SAMPLE)
    assert sum(result["pubs"][0]["registers"]["meas"]["counts"].values()) == 200


def test_off_loopback_clear_http_gets_nothing(tls_vqpu: Service) -> None:
    event = tls_vqpu.event()
    with socket.create_connection((event["host"], event["port"]), timeout=10) as sock:
        sock.sendall(f"GET /v1/health HTTP/1.1\r\nAuthorization: Bearer {event['token']}\r\n\r\n".encode())
        assert not sock.recv(4096).startswith(b"HTTP/")


def test_off_loopback_a_request_without_the_token_is_refused(tls_vqpu: Service) -> None:
    reply = tls_request(tls_vqpu, b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 401") and b"missing or wrong token" in reply


def test_a_server_presenting_another_certificate_is_refused_in_one_line(tls_vqpu: Service, tmp_path: Path) -> None:
    forged = {**tls_vqpu.event(), "tls_sha256": "0" * 64}
    event_file = tmp_path / "forged.json"
    event_file.write_text(json.dumps(forged))
    with pytest.raises(ResourceUnavailableError, match="does not match the fingerprint in its event file") as caught:
        VQPUClient("tls", {"QRMI_VQPU_EVENT_FILE": str(event_file)}).health()
    assert "\n" not in str(caught.value)


def test_the_loopback_client_does_not_import_ssl(vqpu: Service) -> None:
    program = (
        "import sys, json\n"
        "from snakemake_executor_plugin_quantum.backends.vqpu_client import VQPUClient\n"
        f"c = VQPUClient('sim', {{'QRMI_VQPU_EVENT_FILE': {str(vqpu.event_file)!r}}})\n"
        f"c.run({SAMPLE!r})\n"
        "print(json.dumps(sorted(m for m in sys.modules if m in ('ssl', '_ssl'))))\n"
    )
    result = run([sys.executable, "-c", program])
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


# ------------------------------------------------------------------ acquisition tokens and status


def test_a_task_without_an_acquisition_token_is_refused(vqpu: Service) -> None:
    status, body = raw(vqpu, "POST", "/v1/tasks", json.dumps(SAMPLE).encode(), {"Authorization": f"Bearer {vqpu.event()['token']}"})
    assert status == 403 and "acquisition token is unknown or released" in body["error"]


def test_a_task_with_an_unknown_acquisition_token_is_refused_in_one_line(vqpu: Service) -> None:
    stranger = VQPUClient("sim", {"QRMI_VQPU_EVENT_FILE": str(vqpu.event_file), "QRMI_JOB_ACQUISITION_TOKEN": "0" * 32})
    with pytest.raises(ResourceUnavailableError, match="refused to start the task: the task's acquisition token is unknown or released") as caught:
        stranger.run(SAMPLE)
    assert "\n" not in str(caught.value)


def test_a_task_with_a_released_token_is_refused(vqpu: Service) -> None:
    holder = client(vqpu)
    token = holder.acquire()
    job = VQPUClient("sim", {"QRMI_VQPU_EVENT_FILE": str(vqpu.event_file), "QRMI_JOB_ACQUISITION_TOKEN": token})
    assert job.run(SAMPLE)["pubs"]
    holder.release(token)
    with pytest.raises(ResourceUnavailableError, match="unknown or released"):
        job.run(SAMPLE)


def test_qrun_with_a_released_token_fails_with_exit_3_one_line_and_no_output(vqpu: Service, tmp_path: Path) -> None:
    holder = client(vqpu)
    token = holder.acquire()
    holder.release(token)
    (tmp_path / "ghz.qasm").write_text(GHZ)
    env = vqpu.job_env(**{"sim_QRMI_JOB_ACQUISITION_TOKEN": token})
    result = run([command("qrun"), str(tmp_path / "ghz.qasm"), "-o", str(tmp_path / "out.json")], env=env)
    assert result.returncode == 3
    assert result.stderr.strip().count("\n") == 0 and "unknown or released" in result.stderr
    assert not (tmp_path / "out.json").exists()


def test_a_client_without_a_job_token_acquires_its_own_and_releases_it_on_close(vqpu: Service) -> None:
    watcher = client(vqpu)
    before = watcher.metadata()["acquired"]
    job = client(vqpu)
    job.run(SAMPLE)
    assert watcher.metadata()["acquired"] == before + 1
    job.close()
    assert watcher.metadata()["acquired"] == before


def test_in_process_resource_reports_offline_once_closed() -> None:
    from snakemake_executor_plugin_quantum.backends import open_resource

    resource = open_resource("aer", "qiskit-aer", {})
    assert resource.status() is ResourceStatus.ONLINE
    resource.close()
    assert resource.status() is ResourceStatus.OFFLINE


# ------------------------------------------------------------------ deadlines


def lane_workers(service: Service) -> set[int]:
    """The service's child processes that are alive (not zombies)."""
    children = psutil.Process(service.process.pid).children(recursive=True)
    return {p.pid for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE}


def replaced_workers(service: Service, before: set[int], timeout: float = 10) -> set[int]:
    """The workers of ``before`` that are gone once as many live workers are back."""
    deadline = time.monotonic() + timeout
    while True:
        now = lane_workers(service)
        if (before - now and len(now) == len(before)) or time.monotonic() > deadline:
            return before - now
        time.sleep(0.05)


def test_a_task_that_never_ends_fails_at_its_deadline_and_the_vqpu_serves_on(limited: Service) -> None:
    c = client(limited)
    c.run(SAMPLE)
    workers = lane_workers(limited)
    started = time.monotonic()
    with pytest.raises(TaskTimeoutError, match="did not finish within 1 s") as caught:
        c.run(FOREVER, timeout=1)
    assert 1.0 <= time.monotonic() - started < 2.5, "the service stopped it at its deadline"
    assert "\n" not in str(caught.value)
    assert len(replaced_workers(limited, workers)) == 1, "the looping worker is gone, and a new one took its place"
    on_a_lane = {"program_id": "sampler", "parameters": {"pubs": [[long_circuit(13, 2)]], "shots": 100}}  # 13 qubits: not inline
    assert sum(c.run(on_a_lane, timeout=30)["pubs"][0]["registers"]["c"]["counts"].values()) == 100
    assert c.metadata()["timed_out"] >= 1


def test_a_task_sent_without_a_timeout_gets_the_services_default(limited: Service) -> None:
    c = client(limited)
    task = c.task_start(FOREVER)  # no job timeout in the settings: no X-Task-Timeout
    started = time.monotonic()
    assert c.wait(task, timeout=10).value == "Failed"
    assert 1.5 < time.monotonic() - started < 3.5
    with pytest.raises(TaskTimeoutError, match="did not finish within 2 s"):
        c.task_result(task)


def test_qrun_on_a_circuit_that_loops_forever_exits_4_in_one_line_with_no_output(limited: Service, tmp_path: Path) -> None:
    (tmp_path / "loop.qasm").write_text(LOOP)
    out = tmp_path / "out.json"
    result = run([command("qrun"), str(tmp_path / "loop.qasm"), "--timeout", "1", "-o", str(out)], env=limited.job_env())
    assert result.returncode == 4, result.stderr
    assert "did not finish within 1 s" in result.stderr and result.stderr.strip().count("\n") == 0
    assert result.seconds < 5 and not out.exists()


def test_a_circuit_with_a_loop_never_runs_in_the_request_thread(vqpu: Service) -> None:
    c = client(vqpu)
    task = c.task_start(FOREVER, timeout=5)
    try:
        deadline = time.monotonic() + 5
        while c.task_status(task).value != "Running":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        started = time.monotonic()
        assert c.health()["ok"], "the front end answers: the loop runs in a lane's worker"
        assert time.monotonic() - started < 1.0
    finally:
        c.task_stop(task)


# ------------------------------------------------------------------ logs


def test_task_logs_show_timings_and_the_lane_not_thread_names(vqpu: Service) -> None:
    import re

    c = client(vqpu)
    c.run({"program_id": "sampler", "parameters": {"pubs": [[long_circuit(13, 2)]], "shots": 100}})  # on a lane
    logs = c.task_logs(c.last_task_id)
    assert re.search(r"started on lane \d after [\d.]+ m?s queued", logs), logs
    assert re.search(r"completed \(queued [\d.]+ m?s, ran [\d.]+ m?s, engine [\d.]+ m?s, lane \d\)", logs), logs
    c.run(SAMPLE)  # tiny: inline
    assert "started inline after" in c.task_logs(c.last_task_id)
    assert "sim-lane" not in logs and "Thread" not in logs


def test_qrun_logs_show_the_tasks_timings(vqpu: Service, tmp_path: Path) -> None:
    (tmp_path / "ghz.qasm").write_text(GHZ)
    result = run([command("qrun"), str(tmp_path / "ghz.qasm"), "--logs", "-o", str(tmp_path / "out.json")], env=vqpu.job_env())
    assert result.returncode == 0, result.stderr
    assert "completed (queued" in result.stderr and "engine" in result.stderr and "-lane-" not in result.stderr


def test_the_vqpu_log_records_each_task_with_its_rule_and_timings(vqpu: Service) -> None:
    c = VQPUClient("sim", {"QRMI_VQPU_EVENT_FILE": str(vqpu.event_file)}, rule="sample_ghz5")
    c.run(SAMPLE)
    c.close()
    deadline = time.monotonic() + 5
    while f"task {c.last_task_id}" not in vqpu.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    line = next(line for line in vqpu.log().splitlines() if f"task {c.last_task_id}" in line)
    assert "rule sample_ghz5 sampler completed (queued" in line and "engine" in line
    assert vqpu.event()["token"] not in vqpu.log()


def test_a_rule_name_that_is_not_one_is_refused(vqpu: Service) -> None:
    status, body = raw(vqpu, "POST", "/v1/tasks", json.dumps(SAMPLE).encode(), {**auth(vqpu), "X-Rule": "a b\u00e9"})
    assert status == 400 and "X-Rule" in body["error"]


# ------------------------------------------------------------------ batches


def _comparable(outcome: object) -> object:
    """A result without what differs between two runs of the same task: id, timings and
    the lane that happened to be free."""
    if isinstance(outcome, Exception):
        return (type(outcome).__name__, str(outcome))
    assert isinstance(outcome, dict)
    metadata = {k: v for k, v in outcome["metadata"].items() if k not in ("run_seconds", "queued_seconds", "lane")}
    return {**{k: v for k, v in outcome.items() if k not in ("task_id", "metadata")}, "metadata": metadata}


def test_a_batch_gives_each_task_exactly_what_it_would_get_alone(vqpu: Service) -> None:
    seeded = {"simulator": {"seed_simulator": 11}}
    payloads = [
        {"program_id": "sampler", "parameters": {"pubs": [[GHZ]], "shots": 100 + i, "options": {"simulator": {"seed_simulator": i}}}}
        for i in range(8)
    ] + [
        {"program_id": "sampler", "parameters": {"pubs": [[long_circuit(13, 2)]], "shots": 300, "options": seeded}},  # on a lane
        {"program_id": "estimator", "parameters": {"pubs": [[GHZ, ["ZZZZZ", "XXXXX"]]], "options": seeded}},
        {"program_id": "sampler", "parameters": {"pubs": [["OPENQASM 3.0; qubit q; wobble q;"]]}},  # rejected
    ]
    c = client(vqpu)
    alone = []
    for payload in payloads:
        try:
            alone.append(c.run(payload))
        except PayloadError as exc:
            alone.append(exc)
    together = c.run_many(payloads)
    assert [_comparable(o) for o in together] == [_comparable(o) for o in alone]
    assert isinstance(together[-1], PayloadError) and "invalid OpenQASM 3" in str(together[-1])
    ids = [o["task_id"] for o in together[:-1]]  # type: ignore[index]
    assert len(set(ids)) == len(ids) == len(c.last_task_ids) - 1


def test_a_batch_task_that_never_ends_times_out_alone(limited: Service) -> None:
    c = client(limited)
    started = time.monotonic()
    looped, sampled = c.run_many([FOREVER, SAMPLE], timeout=1)
    assert isinstance(looped, TaskTimeoutError) and "did not finish within 1 s" in str(looped)
    assert isinstance(sampled, dict) and sum(sampled["pubs"][0]["registers"]["meas"]["counts"].values()) == 200
    assert time.monotonic() - started < 3.0


def test_a_batch_needs_an_acquisition_token(vqpu: Service) -> None:
    body = json.dumps([{"payload": SAMPLE}]).encode()
    status, reply = raw(vqpu, "POST", "/v1/tasks/batch?wait=5", body, {"Authorization": f"Bearer {vqpu.event()['token']}"})
    assert status == 403 and "acquisition token" in reply["error"]


# ------------------------------------------------------------------ start-up


def test_the_vqpus_pass_manager_without_plugin_imports_transpiles_like_qiskits_preset() -> None:
    from qiskit import qasm2, qasm3
    from qiskit.transpiler import generate_preset_pass_manager
    from qiskit_aer import AerSimulator

    from snakemake_executor_plugin_quantum.engines.aer import _builtin_stage_plugins

    simulator = AerSimulator()
    with _builtin_stage_plugins():  # as a vQPU's engine builds it (without its other effects here)
        ours = generate_preset_pass_manager(optimization_level=1, backend=simulator)
    preset = generate_preset_pass_manager(optimization_level=1, backend=simulator)
    for circuit in (qasm2.loads(long_circuit(6, 3)), qasm3.loads(GHZ), qasm3.loads(LOOP)):
        assert ours.run(circuit) == preset.run(circuit)


# ------------------------------------------------------------------ speed


def test_a_tiny_task_runs_inline_on_one_thread(vqpu: Service) -> None:
    c = client(vqpu)
    c.run(SAMPLE)
    assert "started inline" in c.task_logs(c.last_task_id) and ", 1 thread(s)" in c.task_logs(c.last_task_id)


def test_a_vqe_steps_estimator_task_runs_inline_and_a_wide_sweep_on_a_lane(vqpu: Service) -> None:
    ansatz = (CIRCUITS / "ansatz_ry2.qasm").read_text()
    c = client(vqpu)
    step = c.run({"program_id": "estimator", "parameters": {"pubs": [[ansatz, {"ZZ": 1.0, "XX": 0.5}, [0.3, 0.1, 0.2, 0.4]]]}})
    assert "started inline" in c.task_logs(c.last_task_id)
    sweep = [[0.1 * i, 0.1, 0.2, 0.4] for i in range(40)]  # 40 parameter sets: handed to a worker
    swept = c.run({"program_id": "estimator", "parameters": {"pubs": [[ansatz, {"ZZ": 1.0, "XX": 0.5}, sweep]]}})
    assert "started on lane" in c.task_logs(c.last_task_id)
    assert swept["pubs"][0]["evs"][3] == pytest.approx(step["pubs"][0]["evs"])  # the same set, either way


def test_a_sampler_with_a_few_parameter_sets_runs_inline_and_a_wide_sweep_on_a_lane(vqpu: Service) -> None:
    rotation = 'OPENQASM 3.0; include "stdgates.inc"; input float[64] theta; qubit[1] q; bit[1] c; ry(theta) q[0]; c = measure q;'
    c = client(vqpu)
    few = c.run({"program_id": "sampler", "parameters": {"pubs": [[rotation, [[0.0], [3.14159265]]]], "shots": 50}})
    assert "started inline" in c.task_logs(c.last_task_id)
    assert few["pubs"][0]["registers"]["c"]["counts"] == [{"0": 50}, {"1": 50}]
    c.run({"program_id": "sampler", "parameters": {"pubs": [[rotation, [[0.1 * i] for i in range(40)]]], "shots": 50}})
    assert "started on lane" in c.task_logs(c.last_task_id)


def test_a_dedicated_aer_engine_simulates_in_the_calling_thread_also_after_a_fork() -> None:
    program = """
import os, threading
from snakemake_executor_plugin_quantum.engines.aer import AerEngine
from snakemake_executor_plugin_quantum.payloads.model import PrimitiveTask, SamplerPub
from qiskit import QuantumCircuit
bell = QuantumCircuit(2, 2); bell.h(0); bell.cx(0, 1); bell.measure([0, 1], [0, 1])
engine = AerEngine(dedicated=True)
task = PrimitiveTask("sampler", (SamplerPub(bell),), shots=10, seed=1)
def helpers():
    engine.run(task, engine.check(task))
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("ThreadPoolExecutor"))
pid = os.fork()  # as the lane parent is: before this process ran anything
if pid == 0:
    print("child", helpers(), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
print("parent", helpers(), flush=True)
"""
    result = run([sys.executable, "-c", program], timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["child []", "parent []"], "no Aer executor thread: the runs happened in ours"
