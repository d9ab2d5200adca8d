"""The job parent that forked ``run:`` jobs come from (executor/forks.py), on its own.

Each case runs in a fresh interpreter: a job parent may only be forked while its process
has a single thread, and the test runner's own process may have more.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

PROLOGUE = textwrap.dedent('''
    import json, os, signal, sys, time
    import psutil
    from snakemake_executor_plugin_quantum.executor.forks import JobForker, Payload

    LEAKED = []

    def run_job(rule, args):
        if rule == "describe":
            LEAKED.append(os.environ.get("JOB"))
            with open(args[0], "w") as out:
                json.dump({"pid": os.getpid(), "job": os.environ.get("JOB"), "cwd": os.getcwd(),
                           "seen": LEAKED}, out)
        elif rule == "raise":
            raise ValueError("this job fails")
        elif rule == "exit":
            os._exit(args[0])
        elif rule == "kill":
            os.kill(os.getpid(), signal.SIGKILL)

    def payload(rule, *args, job="", cwd="."):
        return Payload(rule, args, {"JOB": job}, os.path.abspath(cwd))
''')


def _run(body: str, tmp_path) -> dict:
    script = tmp_path / "case.py"
    script.write_text(PROLOGUE + textwrap.dedent(body))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_each_job_is_a_fresh_child_with_its_own_environment_and_nothing_left_from_another(tmp_path) -> None:
    (tmp_path / "sub").mkdir()
    out = _run('''
        forker = JobForker(run_job, spares=2)
        codes = [forker.run(payload("describe", f"{i}.json", job=f"job{i}", cwd="sub")) for i in range(4)]
        forker.close()
        print(json.dumps({"codes": codes, "jobs": [json.load(open(f"sub/{i}.json")) for i in range(4)],
                          "parent": forker.pid, "me": os.getpid()}))
    ''', tmp_path)
    assert out["codes"] == [0, 0, 0, 0]
    jobs = out["jobs"]
    assert [j["job"] for j in jobs] == ["job0", "job1", "job2", "job3"]
    assert all(j["cwd"] == str(tmp_path / "sub") for j in jobs)
    assert all(j["seen"] == [j["job"]] for j in jobs), "a job saw what an earlier job left behind"
    assert len({j["pid"] for j in jobs}) == 4
    assert not {j["pid"] for j in jobs} & {out["parent"], out["me"]}


def test_exit_statuses_of_failing_exiting_and_killed_jobs(tmp_path) -> None:
    out = _run('''
        forker = JobForker(run_job, spares=1)
        codes = [forker.run(payload("raise")), forker.run(payload("exit", 7)), forker.run(payload("kill")),
                 forker.run(payload("describe", "after.json"))]
        forker.close()
        print(json.dumps({"codes": codes}))
    ''', tmp_path)
    # raised: 1; os._exit(7) before any report: 7 from the job parent; SIGKILL: -9; the next job runs.
    assert out["codes"] == [1, 7, -9, 0]


def test_spares_wait_forked_ahead_and_close_leaves_no_process(tmp_path) -> None:
    out = _run('''
        forker = JobForker(run_job, spares=3)
        forker.run(payload("describe", "one.json"))
        job = json.load(open("one.json"))["pid"]  # it reports before it exits: it may still be there
        parent = psutil.Process(forker.pid)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            children = [p.pid for p in parent.children()]
            if job not in children and len(children) >= 3:
                break
            time.sleep(0.02)
        spares = [p.pid for p in parent.children()]
        forker.close()
        gone = psutil.wait_procs([psutil.Process(p) for p in [forker.pid, *spares] if psutil.pid_exists(p)], timeout=10)[1] == []
        print(json.dumps({"spares": len(spares), "gone": gone, "left": [p.pid for p in psutil.Process().children(recursive=True)]}))
    ''', tmp_path)
    assert out["spares"] == 3
    assert out["gone"] and out["left"] == []


def test_a_running_job_is_stopped_when_the_forker_closes(tmp_path) -> None:
    out = _run('''
        import threading
        forker = JobForker(lambda rule, args: time.sleep(60), spares=1)
        codes = []
        waiter = threading.Thread(target=lambda: codes.append(forker.run(payload("sleep"))))
        waiter.start()
        deadline = time.monotonic() + 10
        while not forker.job_pids() and time.monotonic() < deadline:
            time.sleep(0.02)
        job = forker.job_pids().pop()
        started = time.monotonic()
        forker.close()
        waiter.join(15)
        print(json.dumps({"job_alive": psutil.pid_exists(job) and psutil.Process(job).status() != "zombie",
                          "seconds": time.monotonic() - started, "waiter_done": not waiter.is_alive()}))
    ''', tmp_path)
    assert not out["job_alive"] and out["waiter_done"] and out["seconds"] < 10


def test_no_thread_no_fork(tmp_path) -> None:
    """Forking while other threads run could copy a lock held by one of them."""
    script = tmp_path / "threads.py"
    script.write_text(PROLOGUE + textwrap.dedent('''
        import threading
        threading.Thread(target=time.sleep, args=(2,), daemon=True).start()
        try:
            JobForker(run_job)
        except RuntimeError as exc:
            print(json.dumps({"error": str(exc)}))
    '''))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert "only the main thread" in done.stdout, done.stdout + done.stderr
