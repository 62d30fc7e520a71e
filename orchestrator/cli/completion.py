"""Shell completion of targets: the step and foreach group names of the pipeline.

Click answers `_ORCH_COMPLETE=bash_source|zsh_source|fish_source orch` with the script of each
shell; the script then asks `orch` for the words that fit. Completion must never print an
error, so a pipeline that cannot be planned completes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.core.errors import OrchError

if TYPE_CHECKING:
    import click
    from click.shell_completion import CompletionItem


def target_names(pipeline: Path) -> list[str]:
    """The steps and groups of the pipeline (the saved plan when it is valid); none when it
    cannot be planned."""
    from orchestrator.engine.build import Request, open_plan

    try:
        plan, _ = open_plan(Request(pipeline))
    except Exception:  # completion says nothing rather than fail
        return []
    groups = [name for name in (*plan.groups, *plan.deferred) if name not in plan.steps]
    return list(dict.fromkeys([*plan.steps, *groups]))


def targets(
    split: Callable[[tuple[str, ...]], tuple[Path, tuple[str, ...]]],
) -> Callable[[click.Context, click.Parameter, str], list[CompletionItem]]:
    """A `shell_complete` callback for `[PIPELINE] [TARGET]...`, given how the words typed
    so far split into the pipeline and targets."""

    def complete(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[Any]:
        from click.shell_completion import CompletionItem

        typed = tuple(ctx.params.get("args") or ())
        try:
            pipeline, named = split(typed)
        except OrchError:  # no pipeline found, or several: offer files
            return [CompletionItem(incomplete, type="file")]
        found = [
            CompletionItem(name)
            for name in target_names(pipeline)
            if name.startswith(incomplete) and name not in named
        ]
        if not typed and not pipeline.is_file():  # the first word may name the pipeline
            found.append(CompletionItem(incomplete, type="file"))
        return found

    return complete
