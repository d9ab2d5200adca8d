"""vqpu: start, inspect and stop vQPU services by hand.

    vqpu serve NAME [--engine aer|pulser] [--lanes N] [--idle-timeout S] [--walltime S] ...
    vqpu status [NAME ...]
    vqpu stop NAME [...]

Settings come from the resource config entry NAME (type ``vqpu``) and ``NAME_QRMI_*``
variables, as for any resource; flags override them. The executor starts its sidecars
with this same command.
"""

from __future__ import annotations

import argparse
import glob
import os
import signal
import sys
import time
from typing import NoReturn

from ..errors import ConfigError, QuantumError, ResourceUnavailableError
from ..resources.events import VQPUEvent, clear_event, default_event_dir, event_path, read_event
from ..resources.resolve import CONFIG_ENV
from .common import run_command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vqpu", description="Run and manage warm virtual QPU services.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and request logs")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start a vQPU service in the foreground")
    serve.add_argument("name", help="service name (a resource of type vqpu in the config, or any new name)")
    serve.add_argument("--config", help=f"resource config (default: ${CONFIG_ENV}, else the embedded default)")
    serve.add_argument("--engine", choices=("aer", "pulser"), help="simulator (default: QRMI_VQPU_ENGINE, else aer)")
    serve.add_argument("--host", help="bind address (default 127.0.0.1; any other address requires the token)")
    serve.add_argument("--port", type=int, help="port (default: a free one)")
    serve.add_argument("--lanes", type=int, help="tasks run at once (default: QRMI_VQPU_LANES, else min(4, CPUs))")
    serve.add_argument("--idle-timeout", type=float, help="stop after this many seconds without work (0: never)")
    serve.add_argument("--walltime", type=float, help="stop after this many seconds in all (0: unlimited)")
    serve.add_argument("--event-file", help="readiness event file (default: EVENT_DIR/NAME.json)")
    serve.add_argument("--event-dir", help=f"directory of event files (default {default_event_dir()})")
    serve.add_argument("--parent-pid", type=int, help="stop when this process exits (used by the executor)")
    serve.add_argument("--token-file", help="read the access token from this file instead of generating one")
    serve.add_argument("--no-token", action="store_true", help="serve without a token (loopback only; for debugging)")
    serve.add_argument("--max-request-mb", type=float, help="largest request accepted (default 64)")

    status = sub.add_parser("status", help="list vQPU services and their health")
    status.add_argument("names", nargs="*", help="services to show (default: all in the event directory)")
    status.add_argument("--event-dir", help=f"directory of event files (default {default_event_dir()})")

    stop = sub.add_parser("stop", help="stop vQPU services by the PID in their event file")
    stop.add_argument("names", nargs="+")
    stop.add_argument("--event-dir", help=f"directory of event files (default {default_event_dir()})")
    stop.add_argument("--timeout", type=float, default=10.0, help="seconds to wait before SIGKILL")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "status":
        return _status(args)
    return _stop(args)


# ------------------------------------------------------------------- serve


def _serve(args: argparse.Namespace) -> int:
    from ..resources import jobenv
    from ..resources.config import VQPU, find_config, load_config

    config = load_config(find_config(args.config or os.environ.get(CONFIG_ENV), os.getcwd()))
    base = {}
    if args.name in config:
        definition = config.get(args.name)
        if definition.type != VQPU:
            raise ConfigError(f"resource '{args.name}' is of type {definition.type}, not vqpu")
        base = dict(definition.environment)
    settings = jobenv.resource_settings(args.name, os.environ, base)
    from ..service.build import build_service, options_from

    _log_tasks(args.name, args.debug)
    options = options_from(args, settings)
    service = build_service(args.name, settings, options, args.engine, args.lanes)
    service.install_signal_handlers()
    event = service.event()
    print(f"vqpu: {args.name} ({event.engine}) ready at {event.url}, pid {event.pid}", file=sys.stderr, flush=True)
    reason = service.serve()
    print(f"vqpu: {args.name} stopped: {reason}", file=sys.stderr)
    _end_now()


def _end_now() -> NoReturn:
    """Exit without Python's teardown of qiskit's and Aer's objects (~0.2 s), which whoever
    stops the vQPU would wait for: its lanes are reaped and its event file is gone already."""
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _log_tasks(name: str, debug: bool) -> None:
    """A service's log (its stderr) records every task at INFO, with timestamps."""
    import logging

    logging.getLogger("snakemake_executor_plugin_quantum").setLevel(logging.DEBUG if debug else logging.INFO)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter(f"%(asctime)s vqpu {name}: %(message)s"))


# ------------------------------------------------------------------ status


def _events(names: list[str], event_dir: str | None) -> list[tuple[str, VQPUEvent | None]]:
    directory = event_dir or default_event_dir()
    if names:
        return [(n, read_event(event_path(directory, n))) for n in names]
    paths = sorted(glob.glob(os.path.join(directory, "*.json")))
    return [(os.path.basename(p)[:-5], read_event(p)) for p in paths]


def _status(args: argparse.Namespace) -> int:
    """One line per vQPU from ``QuantumResource.status()``: up (Online) or DOWN (Offline), and why."""
    from ..backends import ResourceStatus
    from ..backends.vqpu_client import VQPUClient

    directory = args.event_dir or default_event_dir()
    names = args.names or [os.path.basename(p)[:-5] for p in sorted(glob.glob(os.path.join(directory, "*.json")))]
    if not names:
        print(f"no vQPU services in {directory}")
        return 0
    healthy = True
    for name in names:
        client = VQPUClient(name, {"QRMI_VQPU_EVENT_FILE": event_path(directory, name)}, connect_timeout=0)
        try:
            status, reason = client.probe()
            if status is not ResourceStatus.ONLINE:
                healthy = False
                print(f"{name}: not running" if reason.startswith("no event file") else f"{name}: DOWN ({reason})")
                continue
            event, meta = client.event, client.metadata()
            print(
                f"{name}: up  {event.engine:<6} {event.url:<28} pid {event.pid:<7} node {event.node} "
                f"lanes {meta['lanes']} queued {meta['queued']} completed {meta['completed']} failed {meta['failed']}"
            )
        except QuantumError as exc:
            healthy = False
            print(f"{name}: DOWN ({exc})")
        finally:
            client.close()
    return 0 if healthy else 1


# -------------------------------------------------------------------- stop


def _stop(args: argparse.Namespace) -> int:
    failed = False
    for name, event in _events(args.names, args.event_dir):
        path = event_path(args.event_dir or default_event_dir(), name)
        if event is None:
            print(f"{name}: not running")
            continue
        try:
            print(f"{name}: {stop_service(event, path, args.timeout)}")
        except QuantumError as exc:
            failed = True
            print(f"{name}: {exc}", file=sys.stderr)
    return 1 if failed else 0


def stop_service(event: VQPUEvent, path: str, timeout: float = 10.0) -> str:
    """Stop the service an event describes: SIGTERM its PID (SIGKILL after ``timeout``)."""
    if not event.is_local():
        from ..backends.vqpu_client import VQPUClient

        client = VQPUClient(event.name, {"QRMI_VQPU_EVENT_FILE": path}, connect_timeout=0)
        try:
            client.shutdown()
        except ResourceUnavailableError:
            clear_event(path, pid=event.pid)
            return f"stale event removed (service on {event.node} unreachable)"
        finally:
            client.close()
        return f"shutdown requested on {event.node}"
    if not _same_process(event):
        clear_event(path, pid=event.pid)
        return "stale event removed (process already gone)"
    os.kill(event.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _same_process(event):
            clear_event(path, pid=event.pid)
            return f"stopped (pid {event.pid})"
        time.sleep(0.05)
    os.kill(event.pid, signal.SIGKILL)
    clear_event(path, pid=event.pid)
    return f"killed after {timeout:g} s (pid {event.pid})"


def _same_process(event: VQPUEvent) -> bool:
    """Is ``event.pid`` still the process that wrote the event (not a recycled PID)?"""
    import psutil

    try:
        process = psutil.Process(event.pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return process.create_time() <= event.started + 1.0
    except psutil.NoSuchProcess:
        return False


def entry() -> int:
    return run_command("vqpu", main)


if __name__ == "__main__":
    sys.exit(entry())
