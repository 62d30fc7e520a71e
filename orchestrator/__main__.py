"""Entry point of the `orch` command (also `python -m orchestrator`)."""

from __future__ import annotations

import sys


def main() -> None:
    """Run the command line; `orch --version` answers before the CLI framework loads."""
    if sys.argv[1:] == ["--version"]:
        from . import __version__

        print(f"orch {__version__}")
        return
    from .cli import cli

    cli()


if __name__ == "__main__":
    main()
