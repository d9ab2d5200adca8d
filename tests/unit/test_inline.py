"""Which rule commands the executor may run as an in-thread qrun call, and which it must not."""

from __future__ import annotations

import pytest

from snakemake_executor_plugin_quantum import tasks
from snakemake_executor_plugin_quantum.executor.inline import QrunCall, qrun_call


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        ("qrun c.qasm -o out.json", ["c.qasm", "-o", "out.json"]),
        ("qrun  sim  c.qasm  out.json --shots 100", ["sim", "c.qasm", "out.json", "--shots", "100"]),
        ("qrun c.qasm --parameters '[0.3, 1.2]' -o 'with space.json'", ["c.qasm", "--parameters", "[0.3, 1.2]", "-o", "with space.json"]),
        ('qrun c.qasm --observables "ZZ,XX" -o o.json --program estimator', ["c.qasm", "--observables", "ZZ,XX", "-o", "o.json", "--program", "estimator"]),
        ("qrun 'a;b.qasm'", ["a;b.qasm"]),
        ("\n        qrun c.qasm -o out.json\n        ", ["c.qasm", "-o", "out.json"]),  # a triple-quoted shell: block
        ("qrun c.qasm -o o.json\x0c", ["c.qasm", "-o", "o.json\x0c"]),  # not whitespace to bash either: its file name
    ],
)
def test_plain_qrun_calls_qualify(command: str, argv: list[str]) -> None:
    assert qrun_call(command) == QrunCall(argv)


@pytest.mark.parametrize(
    ("command", "call"),
    [
        ("qrun c.qasm -o o.json 2> logs/c.log", QrunCall(["c.qasm", "-o", "o.json"], stderr="logs/c.log", opens=(("logs/c.log", False),))),
        ("qrun c.qasm -o o.json 2>logs/c.log", QrunCall(["c.qasm", "-o", "o.json"], stderr="logs/c.log", opens=(("logs/c.log", False),))),
        ("qrun c.qasm -o o.json 2>> logs/c.log",
         QrunCall(["c.qasm", "-o", "o.json"], stderr="logs/c.log", opens=(("logs/c.log", True),))),
        ("qrun c.qasm > o.json", QrunCall(["c.qasm"], stdout="o.json", opens=(("o.json", False),))),
        ("qrun c.qasm 2> e.log 1> o.json",  # opened in this order, as bash does
         QrunCall(["c.qasm"], stdout="o.json", stderr="e.log", opens=(("e.log", False), ("o.json", False)))),
        ("qrun c.qasm -o o.json > c.log 2>&1", QrunCall(["c.qasm", "-o", "o.json"], stdout="c.log", stderr="c.log", opens=(("c.log", False),))),
        ("qrun c.qasm -o o.json &> c.log", QrunCall(["c.qasm", "-o", "o.json"], stdout="c.log", stderr="c.log", opens=(("c.log", False),))),
        ("qrun c.qasm 2 > o.json", QrunCall(["c.qasm", "2"], stdout="o.json", opens=(("o.json", False),))),  # an argument "2", as bash reads it
    ],
)
def test_a_qrun_call_may_end_with_redirections_of_its_output(command: str, call: QrunCall) -> None:
    assert qrun_call(command) == call


@pytest.mark.parametrize(
    "command",
    [
        None,
        "",
        "qrun c.qasm >> out.json",
        "qrun c.qasm -o o.json 2>&1 > log.txt",
        "qrun c.qasm -o o.json 2>&1",
        "qrun c.qasm -o o.json 2> a.log 2> b.log",
        "qrun c.qasm > a.json > b.json",
        "qrun c.qasm -o o.json 2> $LOG",
        "qrun c.qasm -o o.json 2> 'my log.txt'",
        "qrun c.qasm -o o.json 2> ~/log.txt",
        "qrun c.qasm -o o.json >| log.txt",
        "qrun c.qasm -o o.json 3> log.txt",
        "qrun c.qasm -o o.json\n2> log.txt",
        "qrun c.qasm -o o.json 2> log.txt && touch done",
        "qrun c.qasm -o o.json.2> log.txt",
        "qrun c.qasm < in.json",
        "\x0bqrun c.qasm -o o.json",  # bash: no command "\x0bqrun"
        "qrun c.qasm\r-o o.json",  # bash: one word "c.qasm\r-o"
        "qrun c.qasm -o o.json 2> log.txt\r",  # bash: a file "log.txt\r"
        "qrun c.qasm -o o.json && touch done",
        "qrun c.qasm -o o.json; echo hi",
        "qrun c.qasm | tee o.json",
        "qrun $CIRCUIT -o o.json",
        "qrun \"$CIRCUIT\" -o o.json",
        "qrun `cat name` -o o.json",
        "qrun c\\ 1.qasm -o o.json",
        "qrun c*.qasm -o o.json",
        "qrun c.qasm -o ~/o.json",
        "qrun c.qasm --parameters [0.3] -o o.json",
        "qrun c.qasm -o o.json &",
        "qrun c.qasm -o o.json\ntouch x",
        "qrun 'unterminated -o o.json",
        "QRMI_X=1 qrun c.qasm",
        "/opt/bin/qrun c.qasm",
        "python -m qrun c.qasm",
        "qrun --help",
        "qrun c.qasm --logs -o o.json",
        "qrun c.qasm --debug",
        "(qrun c.qasm)",
    ],
)
def test_anything_else_runs_in_a_shell(command: str | None) -> None:
    assert qrun_call(command) is None


def test_unparseable_arguments_are_left_to_the_qrun_process() -> None:
    assert tasks.parse_quietly(["c.qasm", "--shots", "many"]) is None
    assert tasks.parse_quietly(["a", "b", "c", "d"]) is None
    assert tasks.parse_quietly(["c.qasm", "--no-such-flag"]) is None
    parsed = tasks.parse_quietly(["sim", "c.qasm", "out.json", "--shots", "5"])
    assert parsed is not None
    assert (parsed.resource_name, parsed.input_path, parsed.output, parsed.args.shots) == ("sim", "c.qasm", "out.json", 5)


def _job(command: str | None, **overrides: object) -> object:
    from types import SimpleNamespace

    fields = dict(is_shell=command is not None, conda_env=None, container_img=None, env_modules=None, is_shadow=False,
                  benchmark=None, log=[], is_pipe=False, is_service=False)
    return SimpleNamespace(rule=SimpleNamespace(shellcmd=command), **{**fields, **overrides})


def test_a_run_starts_the_sender_only_for_rules_whose_command_may_be_a_plain_qrun() -> None:
    from snakemake_executor_plugin_quantum.executor.inline import rule_may_run_inline

    assert rule_may_run_inline(_job("qrun {input} -o {output}"))
    assert rule_may_run_inline(_job("  qrun\n{input}"))
    assert not rule_may_run_inline(_job(None))  # run: or script:
    assert not rule_may_run_inline(_job("qrunner {input}"))
    assert not rule_may_run_inline(_job("python -m qrun {input}"))
    assert rule_may_run_inline(_job("qrun {input} -o {output} 2> {log}", log=["l.txt"]))  # its log: a redirection
    assert not rule_may_run_inline(_job("qrun {input} -o {output}", benchmark="b.tsv"))
