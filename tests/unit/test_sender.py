"""The sender process of inline qrun jobs: outcomes, fallbacks, and no process left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from snakemake_executor_plugin_quantum.executor import inline, sender
from snakemake_executor_plugin_quantum.procs import pid_alive


@pytest.fixture
def the_sender(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    started = sender.Sender(4)
    yield started
    started.close()
    assert not pid_alive(started.pid)


def _gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_failing_task_fails_with_one_line_and_what_is_not_a_plain_vqpu_task_is_left_to_qrun(the_sender) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("QRMI_")}
    outcome, message = the_sender.run(["missing.qasm", "-o", "o.json"], environ)
    assert outcome == sender.FAILED and "QRMI_JOB_QPU_RESOURCES is not set" in message and "\n" not in message
    assert the_sender.run(["c.qasm", "--shots", "many"], environ)[0] == sender.NOT_HERE  # qrun's usage error
    assert the_sender.run(["aer", "c.qasm", "-o", "o.json"], environ)[0] == sender.NOT_HERE  # not a vQPU


def test_a_secret_in_a_failure_is_masked(the_sender) -> None:
    environ = {"QRMI_JOB_QPU_RESOURCES": "v", "QRMI_JOB_QPU_TYPES": "vqpu", "MY_TOKEN": "s3cr3t.qasm"}
    outcome, message = the_sender.run(["s3cr3t.qasm", "-o", "o.json"], environ)
    assert outcome == sender.FAILED and "does not exist" in message and "s3cr3t" not in message


def test_a_job_in_another_directory_is_left_to_qrun(the_sender, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    outcome, message = the_sender.run(["missing.qasm", "-o", "o.json"], dict(os.environ))
    assert (outcome, message) == (sender.NOT_HERE, f"the job runs in {elsewhere}")


def test_jobs_fall_back_to_qrun_when_the_sender_is_gone_unless_the_run_was_cancelled(the_sender) -> None:
    argv, environ = ["missing.qasm", "-o", "o.json"], dict(os.environ)
    assert the_sender.run(argv, environ)[0] == sender.FAILED  # connected, served
    os.kill(the_sender.pid, signal.SIGKILL)
    assert _gone(the_sender.pid)
    outcome, message = the_sender.run(argv, environ)
    assert outcome == sender.NOT_HERE and "is gone" in message
    the_sender.stop_all()
    assert the_sender.run(argv, environ) == (sender.FAILED, "the run was cancelled while this task ran")


def test_the_sender_ignores_ctrl_c_and_dies_with_snakemake(tmp_path: Path) -> None:
    code = (
        "import os, signal, sys\n"
        "from snakemake_executor_plugin_quantum.executor.sender import Sender\n"
        "s = Sender(2)\n"
        "print(s.pid, flush=True)\n"
        "sys.stdin.readline()\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    pid = int(parent.stdout.readline())
    try:
        time.sleep(0.5)  # past die_with_parent and the SIGINT handler
        os.kill(pid, signal.SIGINT)
        time.sleep(0.3)
        assert pid_alive(pid), "a Ctrl-C is Snakemake's to act on, not the sender's"
        parent.stdin.write("\n")
        parent.stdin.flush()
        parent.wait(10)
        assert _gone(pid), "the sender outlived Snakemake"
    finally:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        parent.kill()
        parent.wait()


class _Sender:
    def __init__(self, reply: tuple[str, str]):
        self.reply = reply
        self.stdout: list[str | None] = []

    def run(self, argv, environ, stdout=None):
        self.stdout.append(stdout)
        return self.reply


def test_the_runner_falls_back_to_qrun_or_fails_the_job_with_qrun_s_error(capsys: pytest.CaptureFixture[str]) -> None:
    from snakemake_executor_plugin_quantum import snakemake_compat

    fell_back = []
    call = inline.qrun_call("qrun c.qasm")
    inline.runner(_Sender((sender.NOT_HERE, "not a vQPU task")), call, {}, lambda *a: fell_back.append(a))("x")
    assert fell_back == [("x",)]
    inline.runner(_Sender((sender.DONE, "")), call, {}, lambda *a: fell_back.append(a))("y")
    assert fell_back == [("x",)]
    with pytest.raises(snakemake_compat.spawned_job_error()):
        inline.runner(_Sender((sender.FAILED, "pub 0: bad")), call, {}, lambda *a: fell_back.append(a))("z")
    assert capsys.readouterr().err == "qrun: error: pub 0: bad\n"
    assert fell_back == [("x",)]


def test_the_runner_redirects_as_bash_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from snakemake_executor_plugin_quantum import snakemake_compat

    monkeypatch.chdir(tmp_path)
    Path("old.log").write_text("an earlier run\n")
    Path("kept.log").write_text("kept\n")
    # Success with -o: the log is created, or emptied, before the request, and stays empty.
    inline.runner(_Sender((sender.DONE, "")), inline.qrun_call("qrun c.qasm -o o.json 2> old.log"), {}, None)()
    assert Path("old.log").read_text() == ""
    # Without -o the result goes to the stdout file: the sender is told which.
    fake = _Sender((sender.DONE, ""))
    inline.runner(fake, inline.qrun_call("qrun c.qasm > o.json"), {}, None)()
    assert fake.stdout == ["o.json"] and Path("o.json").exists()
    # A failure: qrun's line in the log (2>> appends), nothing on the terminal.
    with pytest.raises(snakemake_compat.spawned_job_error()):
        inline.runner(_Sender((sender.FAILED, "pub 0: bad")), inline.qrun_call("qrun c.qasm 2>> kept.log"), {}, None)()
    assert Path("kept.log").read_text() == "kept\nqrun: error: pub 0: bad\n"
    assert capsys.readouterr().err == ""
    # A file bash could not open: bash runs it, makes the files in its order and says why;
    # none made here first (bash would not have made "later.json" either).
    fell_back = []
    unsent = _Sender((sender.DONE, ""))
    inline.runner(unsent, inline.qrun_call("qrun c.qasm 2> no/such/dir/x.log > later.json"), {}, lambda *a: fell_back.append(a))("w")
    assert fell_back == [("w",)] and unsent.stdout == [] and not Path("later.json").exists()
    # With qrun's debug output asked for, a process writes it (tracebacks, debug logs).
    debug = _Sender((sender.DONE, ""))
    inline.runner(debug, inline.qrun_call("qrun c.qasm 2> d.log"), {"SNAKEMAKE_QUANTUM_DEBUG": "1"}, lambda *a: fell_back.append(a))("d")
    assert fell_back[-1] == ("d",) and debug.stdout == [] and not Path("d.log").exists()
