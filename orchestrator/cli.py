"""The `orch` command line: the only place that prints errors and chooses exit codes."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from . import __version__
from .errors import OrchError, PipelineError, UsageError

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_PIPELINE = "orch.yaml"
EXIT_INTERRUPTED = 130


def _reports_errors(command: F) -> F:
    """Turn orch's errors into a message on stderr and their exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except OrchError as exc:
            click.echo(exc.render(), err=True)
            raise SystemExit(exc.exit_code) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            raise SystemExit(EXIT_INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]


def _parse_sets(values: tuple[str, ...]) -> dict[str, str]:
    overrides = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name.isidentifier():
            raise UsageError(f"--set expects NAME=VALUE with NAME a var name, got '{value}'")
        overrides[name] = text
    return overrides


_pipeline_argument = click.argument(
    "pipeline", required=False, default=DEFAULT_PIPELINE, type=click.Path(path_type=Path)
)
_set_option = click.option(
    "--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a var (repeatable)."
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="orch", message="%(prog)s %(version)s")
def cli() -> None:
    """orch: declarative pipelines with Make-like semantics."""


@cli.command()
@click.argument("pipelines", nargs=-1, type=click.Path(path_type=Path))
@_set_option
@_reports_errors
def validate(pipelines: tuple[Path, ...], sets: tuple[str, ...]) -> None:
    """Check pipelines without running anything (exit 2 if any is invalid)."""
    from . import graph
    from .pipeline import load

    overrides = _parse_sets(sets)
    failed = False
    for file in pipelines or (Path(DEFAULT_PIPELINE),):
        try:
            loaded = load(file, overrides=overrides)
            graph.build(loaded)
        except PipelineError as exc:
            click.echo(exc.render(), err=True)
            failed = True
            continue
        count = len(loaded.steps)
        click.echo(f"{file}: ok ({count} step{'s' if count != 1 else ''})")
    if failed:
        raise SystemExit(PipelineError.exit_code)


@cli.command("graph")
@_pipeline_argument
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "mermaid", "dot"]),
    default="text",
    show_default=True,
    help="Drawing format.",
)
@_set_option
@_reports_errors
def graph_command(pipeline: Path, fmt: str, sets: tuple[str, ...]) -> None:
    """Print the step graph."""
    from . import graph
    from .pipeline import load

    loaded = load(pipeline, overrides=_parse_sets(sets))
    click.echo(graph.render(loaded, graph.build(loaded), fmt), nl=False)


@cli.command()
@click.option("--write", is_flag=True, help="Write schemas/*.schema.json under the current folder.")
@_reports_errors
def schema(write: bool) -> None:
    """Print the pipeline JSON Schema, or write the schema files."""
    from .schemas import pipeline_schema, write_schemas

    if write:
        for path in write_schemas(Path.cwd()):
            click.echo(f"wrote {path}")
        return
    import json

    click.echo(json.dumps(pipeline_schema(), indent=2, sort_keys=True))
