"""B6 qrun overhead: a whole ``qrun`` process, start to result, on a warm vQPU.

Three commands timed in interleaved rounds, each a fresh process started from this one:

- qrun:     ``qrun circuits/ghz5.qasm --shots 1024 -o out.json`` in a job environment
            (``QRMI_JOB_QPU_RESOURCES`` etc.) pointing at a warm vQPU;
- imports:  ``python -c 'import <what qrun imports>'`` (interpreter + our modules, no work);
- floor:    ``python -c pass`` (the interpreter alone).
"""

from __future__ import annotations

import sys

from .common import (
    CIRCUITS,
    Context,
    Row,
    Section,
    Stats,
    command,
    interleave,
    run_process,
    vqpu_service,
)

TARGET_SECONDS = 0.150
IMPORTS = ("import snakemake_executor_plugin_quantum.cli.qrun, snakemake_executor_plugin_quantum.backends.vqpu_client, "
           "snakemake_executor_plugin_quantum.payloads.inputs, snakemake_executor_plugin_quantum.atomic")


def run(ctx: Context) -> Section:
    section = Section("B6", "qrun overhead: start-to-result of one qrun process on a warm vQPU")
    rounds = ctx.size(10, 60)
    out = ctx.workdir / "b6-out.json"
    with vqpu_service("b6", ctx.workdir / "b6-events", lanes=2) as service:
        env = service.job_env()
        qrun = [command("qrun"), str(CIRCUITS / "ghz5.qasm"), "--shots", "1024", "-o", str(out)]
        sides = {
            "qrun": lambda: run_process(qrun, env=env),
            "imports": lambda: run_process([sys.executable, "-c", IMPORTS], env=env),
            "floor": lambda: run_process([sys.executable, "-c", "pass"], env=env),
        }
        ctx.log(f"  B6 {rounds} rounds of qrun / imports / python -c pass")
        times = interleave(sides, rounds, warmup=2)
    qrun_s, imports_s, floor_s = (Stats.of(times[k]) for k in ("qrun", "imports", "floor"))
    section.method = (
        f"{rounds} interleaved rounds after 2 warm-up rounds; each figure is the wall time of a whole "
        "process as `subprocess` sees it (fork/exec to exit). The vQPU is warm (started before the "
        "rounds; `vqpu serve --lanes 2`), the package is precompiled (`compileall`), GHZ-5 with 1024 "
        "shots, the job's acquisition token given (as the executor sets it). The row's baseline is "
        "`python -c pass`, the floor any Python process pays here."
    )
    section.add(Row("qrun median wall time", qrun_s, floor_s, base_name="python -c pass",
                    target=f"median < {TARGET_SECONDS * 1e3:.0f} ms", met=qrun_s.median < TARGET_SECONDS))
    section.add(Row("imports only (qrun's modules)", imports_s, floor_s, base_name="python -c pass"))
    section.add(Row("qrun p95 wall time", Stats.of([qrun_s.percentile(95)]), None))
    work = qrun_s.median - imports_s.median
    section.data.update(qrun=qrun_s.median, imports=imports_s.median, floor=floor_s.median)
    section.note(
        f"Median qrun {qrun_s.median * 1e3:.0f} ms = interpreter floor {floor_s.median * 1e3:.0f} ms + "
        f"importing qrun's modules {max(0.0, imports_s.median - floor_s.median) * 1e3:.0f} ms + the rest "
        f"{work * 1e3:.0f} ms (resolving the resource, reading the circuit, the HTTP round trip with "
        "the simulation, writing the output atomically)."
    )
    if qrun_s.median >= TARGET_SECONDS:
        section.note(
            "**Target missed.** The largest part is "
            + ("the imports" if imports_s.median - floor_s.median > work else "the work after the imports")
            + "; cutting imports (lazy `argparse`/`logging`/`uuid`, no `platform`) or the round trip "
              "would be the fix."
        )
    return section
