"""What every command shares: one-line errors and exit codes."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from ..errors import DEBUG_VARIABLE, QuantumError


def run_command(prog: str, main: Callable[[list[str]], int], argv: list[str] | None = None) -> int:
    """Run ``main``; a QuantumError becomes one line on stderr and its exit code."""
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv or os.environ.get(DEBUG_VARIABLE) == "1"
    import logging  # only configured here; the library modules that log import it themselves

    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format=f"{prog}: %(message)s")
    try:
        return main(argv)
    except QuantumError as exc:
        if debug:
            raise
        from ..redact import mask, secret_values

        print(f"{prog}: error: {mask(str(exc), secret_values(os.environ))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
