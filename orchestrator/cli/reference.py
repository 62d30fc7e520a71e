"""`docs/cli.md`: every command and option of `orch`, written from the click commands.

Regenerate it with `python -m orchestrator.cli.reference > docs/cli.md`.
"""

from __future__ import annotations

import inspect

import click

HEADER = """\
# Command line reference

Every `orch` command and option, generated from the commands themselves: do not edit by hand;
run `python -m orchestrator.cli.reference > docs/cli.md` after changing a command.
The [README](../README.md#everyday-commands) shows them at work, and how to set up shell completion.
"""


def reference(group: click.Group) -> str:
    """The markdown reference of every command under `group`, in name order."""
    parts = [HEADER]
    root = click.Context(group, info_name="orch", **group.context_settings)
    for path, ctx in [("orch", root), *_commands(root)]:
        parts.append(_section(path, ctx))
    return "\n".join(parts)


def _commands(ctx: click.Context) -> list[tuple[str, click.Context]]:
    """Each command below `ctx`'s, with its full name and its context (subcommands after
    their group)."""
    found = []
    command = ctx.command
    if isinstance(command, click.Group):
        for name in sorted(command.list_commands(ctx)):
            sub = command.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            child = click.Context(sub, parent=ctx, info_name=name)
            found.append((child.command_path, child))
            found.extend(_commands(child))
    return found


def _section(path: str, ctx: click.Context) -> str:
    """A command's heading, usage, help and option table."""
    command = ctx.command
    pieces = " ".join(command.collect_usage_pieces(ctx))
    lines = [f"## `{path}`", "", "```text", f"{path} {pieces}".rstrip(), "```", ""]
    help_text = inspect.cleandoc(command.help or "")
    if help_text:
        lines += [_paragraphs(help_text), ""]
    options = [p for p in command.get_params(ctx) if isinstance(p, click.Option)]
    records = [r for p in options if (r := p.get_help_record(ctx)) is not None]
    if records:
        lines += ["| Option | Meaning |", "| --- | --- |"]
        lines += [f"| `{name}` | {_cell(text)} |" for name, text in records]
        lines.append("")
    return "\n".join(lines)


def _paragraphs(text: str) -> str:
    """Help text as markdown paragraphs (click's `\\b` no-rewrap marks dropped)."""
    return "\n".join(line for line in text.splitlines() if line.strip() != "\b")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def main() -> None:
    """Print the reference."""
    from orchestrator.cli.commands import cli

    click.echo(reference(cli), nl=False)


if __name__ == "__main__":
    main()
