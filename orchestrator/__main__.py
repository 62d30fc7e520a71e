"""Entry point of the `orch` command (also `python -m orchestrator`)."""

from __future__ import annotations

import sys


def main() -> None:
    """Run the command line; `orch --version` answers before the CLI framework loads.

    SIGINT and SIGTERM are routed to orch's handler first thing, so a signal at any moment
    unwinds the same way (exit 130, no traceback); once the command is done, they are ignored.
    """
    from orchestrator.core import interrupt

    interrupt.take_over()
    try:
        try:
            _run()
        finally:
            interrupt.ignore()
    except (interrupt.Interrupted, KeyboardInterrupt):
        sys.stderr.write("interrupted\n")
        raise SystemExit(interrupt.EXIT_CODE) from None


def _run() -> None:
    if sys.argv[1:] == ["--version"]:
        from orchestrator import __version__

        print(f"orch {__version__}")
        return
    from orchestrator.cli.commands import cli

    cli(prog_name="orch")  # also under `python -m orchestrator`: completion reads _ORCH_COMPLETE


if __name__ == "__main__":
    main()
