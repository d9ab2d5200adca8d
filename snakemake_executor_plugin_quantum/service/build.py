"""Assemble a vQPU service from a resource's QRMI_* settings (and command-line overrides)."""

from __future__ import annotations

import argparse
import os

from ..backends import limits_from_settings
from ..backends.lanes import LaneParent, ProcessLane
from ..backends.local import LocalResource
from ..engines import build_engine, spec_from_settings
from ..errors import ConfigError
from ..resources.config import VQPU
from ..resources.events import default_event_dir, event_path
from ..resources.values import setting_number
from .server import ServiceOptions, VQPUService

ENGINES = ("aer", "pulser")
DEFAULT_TASK_TIMEOUT = 3600.0  # seconds, for tasks whose client sent no timeout


def _number(settings: dict[str, str], key: str, default: float, override: float | None = None) -> float:
    """A number setting; a command-line ``override`` wins and is checked the same way."""
    return setting_number({key: override} if override is not None else settings, key, default, float)


def options_from(args: argparse.Namespace, settings: dict[str, str]) -> ServiceOptions:
    event_file = args.event_file or settings.get("QRMI_VQPU_EVENT_FILE") or event_path(
        args.event_dir or settings.get("QRMI_VQPU_EVENT_DIR") or default_event_dir(), args.name
    )
    token = None
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as handle:
                token = handle.read().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read --token-file {args.token_file}: {exc.strerror}") from None
        if len(token) < 16:
            raise ConfigError(f"the token in {args.token_file} is shorter than 16 characters")
    return ServiceOptions(
        name=args.name,
        host=args.host or settings.get("QRMI_VQPU_HOST") or "127.0.0.1",
        port=int(_number(settings, "QRMI_VQPU_PORT", 0, args.port)),
        token=token,
        allow_no_token=args.no_token,
        event_file=event_file,
        idle_timeout=_number(settings, "QRMI_VQPU_IDLE_TIMEOUT", 0, args.idle_timeout),
        walltime=_number(settings, "QRMI_VQPU_WALLTIME", 0, args.walltime),
        parent_pid=args.parent_pid,
        max_request_bytes=int(_number(settings, "QRMI_VQPU_MAX_REQUEST_MB", 64, args.max_request_mb) * 2**20),
        slurm_job_id=os.environ.get("SLURM_JOB_ID"),
        max_connections=setting_number(settings, "QRMI_VQPU_MAX_CONNECTIONS", 512, int, minimum=1),
        connection_idle_seconds=setting_number(settings, "QRMI_VQPU_CONNECTION_IDLE_SECONDS", 5.0, float, minimum=0.1),
    )


def build_service(
    name: str, settings: dict[str, str], options: ServiceOptions, engine: str | None = None, lanes: int | None = None
) -> VQPUService:
    """The front end validates and prepares; ``lanes`` warm worker processes simulate."""
    engine = engine or settings.get("QRMI_VQPU_ENGINE") or "aer"
    if engine not in ENGINES:
        raise ConfigError(f"QRMI_VQPU_ENGINE={engine!r} must be one of {', '.join(ENGINES)}")
    lane_count = int(_number(settings, "QRMI_VQPU_LANES", min(4, os.cpu_count() or 1), lanes))
    if lane_count < 1:
        raise ConfigError("a vQPU needs at least one lane")
    limits = limits_from_settings(settings)
    spec = spec_from_settings(engine, settings, limits)
    explicit_threads = engine == "aer" and bool(spec.options.threads)  # QRMI_AER_THREADS set: always exactly that
    if engine == "aer" and not explicit_threads:
        # Lanes run side by side: split the cores between them. Small circuits also run
        # faster single-threaded (OpenMP start-up: GHZ-5 2.2 ms vs 3.2 ms here).
        from dataclasses import replace

        spec = replace(spec, options=replace(spec.options, threads=max(1, (os.cpu_count() or 1) // lane_count)))
    # One engine, built before this process starts any thread: the lane parent forked
    # right after inherits it, and so does every worker it forks (no second import).
    front = build_engine(spec, dedicated=True)
    parent = LaneParent(front)
    workers: list[ProcessLane] = []
    try:
        workers = [ProcessLane(parent) for _ in range(lane_count)]
        front.warm_up()  # while the workers warm up: parse and run once, for the inline path
        for worker in workers:
            worker.wait_ready()
    except BaseException:
        for worker in workers:
            worker.close()
        parent.close()
        raise
    budget = (os.cpu_count() or 1) if engine == "aer" and not explicit_threads else None  # see LocalResource
    # Every task gets a deadline: the client's (the job's timeout), else this default.
    default_timeout = setting_number(settings, "QRMI_VQPU_TASK_TIMEOUT", DEFAULT_TASK_TIMEOUT, float, minimum=0.001)
    resource = LocalResource(
        name, VQPU, front, limits, lanes=workers, inline_small=True, core_budget=budget, default_timeout=default_timeout
    )
    resource.on_close = parent.close  # after the lanes: workers first, then their parent
    return VQPUService(resource, options)
