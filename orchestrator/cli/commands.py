"""The `orch` command line: the only place that prints errors and chooses exit codes."""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from orchestrator import __version__
from orchestrator.cli import completion
from orchestrator.core.errors import OrchError, PipelineError, UsageError
from orchestrator.core.interrupt import EXIT_CODE, Interrupted
from orchestrator.record.status import JobStatus

if TYPE_CHECKING:
    from orchestrator.cli.reporter import Reporter
    from orchestrator.engine.build import Report, StatusReport
    from orchestrator.engine.estimates import Estimate
    from orchestrator.plan.compiled import Plan

F = TypeVar("F", bound=Callable[..., Any])

EXIT_INTERRUPTED = EXIT_CODE


def _reports_errors(command: F) -> F:
    """Turn orch's errors into a message on stderr and their exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except OrchError as exc:
            from orchestrator.record.masking import Masker

            click.echo(Masker.from_environment().text(exc.render()), err=True)
            raise SystemExit(exc.exit_code) from None
        except (Interrupted, KeyboardInterrupt):
            click.echo("interrupted", err=True)
            raise SystemExit(EXIT_INTERRUPTED) from None
        except OSError as exc:  # one orch did not expect: still one line, never a traceback
            from orchestrator.core.errors import describe_os_error

            click.echo(f"orch: {describe_os_error(exc)}", err=True)
            raise SystemExit(1) from None

    return wrapper  # type: ignore[return-value]


def _parse_sets(values: tuple[str, ...]) -> dict[str, Any]:
    """`--set NAME=VALUE` pairs, each VALUE read as YAML (an empty VALUE is the empty string);
    a dotted NAME (`train.lr`) names a value inside a var."""
    overrides = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not all(part.isidentifier() for part in name.split(".")):
            raise UsageError(
                f"--set expects NAME=VALUE with NAME a var name (or a dotted path in one),"
                f" got '{value}'"
            )
        overrides[name] = _yaml_value(name, text)
    return overrides


_NULLS = ("null", "Null", "NULL", "~")


def _yaml_value(name: str, text: str) -> Any:
    """VALUE as YAML: `[a, b]` a list, `5` an int, `true` a bool, `a: 1` a mapping.

    A VALUE that YAML reads as nothing without spelling null (empty, blank, `#fff`) is its text.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        value = YAML(typ="safe", pure=True).load(text)
    except (YAMLError, RecursionError) as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UsageError(f"--set {name}: the value is not valid YAML ({problem})") from exc
    if value is None and text.strip() not in _NULLS:
        return text
    return _plain(name, value)


def _plain(name: str, value: Any) -> Any:
    """A parsed value as JSON-like data: dates become ISO text, mapping keys text."""
    import datetime

    if isinstance(value, dict):
        return {str(key): _plain(name, item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(name, item) for item in value]
    if isinstance(value, datetime.date):
        return value.isoformat()
    if value is None or isinstance(value, str | bool | int | float):
        return value
    raise UsageError(
        f"--set {name}: a YAML {type(value).__name__} cannot be a var;"
        " use a string, number, boolean, list or mapping"
    )


def _found_pipeline(ctx: click.Context, _param: click.Parameter, value: Path | None) -> Any:
    """The PIPELINE argument's file (`.yaml` may be left off), else the folder's pipeline."""
    if ctx.resilient_parsing:
        return value
    from orchestrator.cli import discovery

    try:
        return discovery.pipeline(value)
    except UsageError as exc:
        click.echo(exc.render(), err=True)
        raise SystemExit(exc.exit_code) from None


_pipeline_argument = click.argument(
    "pipeline", required=False, type=click.Path(path_type=Path), callback=_found_pipeline
)
_set_option = click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a var, or a value in one (a.b=...); VALUE is YAML (repeatable).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="orch", message="%(prog)s %(version)s")
@click.option(
    "-C",
    "--directory",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    metavar="DIR",
    help="Change to DIR before anything else (as make -C and git -C do).",
)
def cli(directory: Path | None) -> None:
    """orch: declarative pipelines with Make-like semantics."""
    if directory is not None:
        import os

        try:
            os.chdir(directory)
        except OSError as exc:
            raise click.BadParameter(exc.strerror or str(exc), param_hint="'-C'") from None


@cli.command()
@click.argument("pipelines", nargs=-1, type=click.Path(path_type=Path))
@_set_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per pipeline.")
@_reports_errors
def validate(pipelines: tuple[Path, ...], sets: tuple[str, ...], as_json: bool) -> None:
    """Check pipelines without running anything (exit 2 if any is invalid)."""
    from orchestrator.cli import discovery
    from orchestrator.plan import graph
    from orchestrator.plan.loading import load

    overrides = _parse_sets(sets)
    found: list[dict[str, Any]] = []
    for file in [discovery.pipeline(word) for word in pipelines] or [discovery.pipeline(None)]:
        result: dict[str, Any] = {"pipeline": str(file), "valid": True, "steps": None}
        found.append(result)
        try:
            loaded = load(file, overrides=overrides)
            graph.build(loaded)
        except PipelineError as exc:
            result.update(valid=False, errors=[d.as_json() for d in exc.diagnostics])
            if not as_json:
                click.echo(exc.render(), err=True)
            continue
        result.update(steps=len(loaded.steps), warnings=list(loaded.warnings), errors=[])
        if not as_json:
            _warn(loaded.warnings)
            count = len(loaded.steps)
            click.echo(f"{file}: ok ({count} step{'s' if count != 1 else ''})")
    if as_json:
        import json

        click.echo(json.dumps(found, indent=2, ensure_ascii=False))
    if not all(result["valid"] for result in found):
        raise SystemExit(PipelineError.exit_code)


@cli.command("graph")
@_pipeline_argument
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "mermaid", "dot", "json"]),
    default="text",
    show_default=True,
    help="Drawing format.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (as --format json).")
@_set_option
@_reports_errors
def graph_command(pipeline: Path, fmt: str, as_json: bool, sets: tuple[str, ...]) -> None:
    """Print the step graph."""
    from orchestrator.plan import graph
    from orchestrator.plan.loading import load

    loaded = load(pipeline, overrides=_parse_sets(sets))
    _warn(loaded.warnings)
    click.echo(graph.render(loaded, graph.build(loaded), "json" if as_json else fmt), nl=False)


def _warn(warnings: tuple[str, ...]) -> None:
    """Say what loading a pipeline warned about, on stderr."""
    for line in warnings:
        click.echo(line, err=True)


@cli.command()
@click.option("--write", is_flag=True, help="Write schemas/*.schema.json under the current folder.")
@_reports_errors
def schema(write: bool) -> None:
    """Print the pipeline JSON Schema, or write the schema files."""
    from orchestrator.cli.schemas import pipeline_schema, write_schemas

    if write:
        for path in write_schemas(Path.cwd()):
            click.echo(f"wrote {path}")
        return
    import json

    click.echo(json.dumps(pipeline_schema(), indent=2, sort_keys=True))


# --------------------------------------------------------------------------- builds


def _pipeline_and_targets(args: tuple[str, ...]) -> tuple[Path, tuple[str, ...]]:
    """`[PIPELINE] [TARGET]...`: see `discovery.pipeline_and_targets`."""
    from orchestrator.cli import discovery

    return discovery.pipeline_and_targets(args)


def _shard(value: str | None) -> Any:
    """The `--shard I/N` asked for, if any."""
    if value is None:
        return None
    from orchestrator.plan.shards import Shard

    try:
        return Shard.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _request(args: tuple[str, ...], sets: tuple[str, ...], **options: Any) -> Any:
    from orchestrator.engine.build import Request

    pipeline, targets = _pipeline_and_targets(args)
    return Request(pipeline, targets, _parse_sets(sets), **options)


_targets_argument = click.argument(
    "args",
    nargs=-1,
    metavar="[PIPELINE] [TARGET]...",
    shell_complete=completion.targets(_pipeline_and_targets),
)
_provider_option = click.option(
    "--provider",
    metavar="NAME",
    envvar="ORCH_PROVIDER",
    help="Provider for llm steps without their own [ORCH_PROVIDER].",
)


@cli.command()
@_targets_argument
@click.option("-j", "--jobs", type=click.IntRange(min=1), help="Steps run at once [CPU count].")
@click.option(
    "-B",
    "--force",
    is_flag=True,
    help="Run the named steps (every step when none is named) even if up to date.",
)
@click.option(
    "--downstream", is_flag=True, help="With -B, also run every step after the named ones."
)
@click.option("-n", "--dry-run", is_flag=True, help="Say what would run; write nothing.")
@click.option("-k", "--keep-going", is_flag=True, help="Go on with steps a failure does not block.")
@click.option("--no-cache", is_flag=True, help="Neither restore from nor store in the cache.")
@click.option(
    "--offline",
    is_flag=True,
    envvar="ORCH_OFFLINE",
    help="Fail steps that would call a provider over the network [ORCH_OFFLINE].",
)
@click.option(
    "--sandbox",
    is_flag=True,
    envvar="ORCH_SANDBOX",
    help="Let shell steps write only where their outputs go (Linux Landlock) [ORCH_SANDBOX].",
)
@click.option(
    "--max-cost",
    type=click.FloatRange(min=0),
    envvar="ORCH_MAX_COST",
    metavar="AMOUNT",
    help="Start no paid call that could take the build's cost past AMOUNT [ORCH_MAX_COST].",
)
@click.option(
    "--batch",
    is_flag=True,
    envvar="ORCH_BATCH",
    help="Send llm steps through the providers' batch APIs, at half price [ORCH_BATCH].",
)
@click.option(
    "--remote-required",
    is_flag=True,
    envvar="ORCH_REMOTE_REQUIRED",
    help="Fail the build when the remote cache cannot be used [ORCH_REMOTE_REQUIRED].",
)
@click.option(
    "--shard",
    metavar="I/N",
    envvar="ORCH_SHARD",
    callback=lambda _ctx, _param, value: _shard(value),
    help="Build the I-th of N shares of the steps, sharing results through the remote cache"
    " [ORCH_SHARD].",
)
@click.option(
    "--shard-wait",
    type=click.FloatRange(min=0),
    default=600.0,
    show_default=True,
    envvar="ORCH_SHARD_WAIT",
    metavar="SECONDS",
    help="How long a shard waits for another to upload a step it needs, before building it"
    " itself [ORCH_SHARD_WAIT].",
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    envvar="ORCH_VERBOSE",
    help="Echo each command and show its output as it runs, prefixed with the step's id"
    " when -j > 1 [ORCH_VERBOSE].",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the outcome as JSON instead of progress."
)
@_provider_option
@_set_option
@_reports_errors
def build(
    args: tuple[str, ...],
    jobs: int | None,
    force: bool,
    downstream: bool,
    dry_run: bool,
    keep_going: bool,
    no_cache: bool,
    offline: bool,
    sandbox: bool,
    max_cost: float | None,
    batch: bool,
    remote_required: bool,
    shard: Any,
    shard_wait: float,
    verbose: bool,
    as_json: bool,
    provider: str | None,
    sets: tuple[str, ...],
) -> None:
    """Bring the pipeline's outputs up to date."""
    from orchestrator.cli.reporter import deferred_lines, status_lines
    from orchestrator.engine import build as builds
    from orchestrator.engine.decide import Action

    if downstream and not force:
        raise UsageError("--downstream goes with -B/--force: it forces the steps after them")

    request = _request(
        args,
        sets,
        provider=provider,
        jobs=jobs or 0,
        force=force,
        downstream=downstream,
        keep_going=keep_going,
        use_cache=not no_cache,
        offline=offline,
        sandbox=sandbox,
        max_cost=max_cost,
        batch=batch,
        remote_required=remote_required,
        shard=shard,
        shard_wait=shard_wait,
    )
    if batch:
        _check_batch_settings()
    if dry_run:
        plan, assessments = builds.predict(request)
        _warn(plan.warnings)
        if not as_json:
            _say_writers(request, plan)
        waiting = sum(a.decision.action != Action.UP_TO_DATE for a in assessments)
        if as_json:
            _say_json(_dry_run_json(assessments, waiting))
            return
        changing = (a for a in assessments if a.decision.action != Action.UP_TO_DATE)
        for line in [*status_lines(changing), *deferred_lines(plan.waiting(request.targets))]:
            click.echo(line)
        cost = builds.estimate(request, plan, assessments)
        if cost is not None:
            click.echo(cost.line())
        click.echo(f"dry run: {waiting} of {len(assessments)} steps would change")
        return
    report = _build_json(request) if as_json else _build_and_say(request, verbose=verbose)
    if report.status == JobStatus.CANCELLED:
        raise SystemExit(EXIT_INTERRUPTED)
    if report.status != JobStatus.SUCCEEDED:
        raise SystemExit(1)


def _build_and_say(request: Any, *, verbose: bool = False) -> Report:
    """Build with the progress view (`verbose`: with each command and its output), then say
    the warnings, the summary and, for a failed build, where its run folder is."""
    from orchestrator.cli.reporter import summary
    from orchestrator.engine import build as builds

    with _progress(prefixed=request.job_count > 1) as reporter:
        output = reporter.output if verbose else None
        report = builds.build(
            request, (reporter,), functools.partial(_say_writers, request), output
        )
    _warn(report.warnings)
    manifest = report.manifest
    click.echo(summary(manifest.counts(), report.status, manifest.duration_s, manifest.usage()))
    if report.status not in (JobStatus.SUCCEEDED, JobStatus.CANCELLED):
        click.echo(f"run details: {report.run_folder}", err=True)
    return report


def _build_json(request: Any) -> Report:
    """Build with no progress view, then print the outcome as one JSON object: the job, its
    status, counts, usage, each step's status and failures, and its run folder (null for a
    build that changed nothing)."""
    from orchestrator.engine import build as builds

    report = builds.build(request)
    done = report.manifest.to_json()
    keys = ("job_id", "status", "duration_s", "counts", "usage", "failures", "pending_steps")
    outcome = {key: done[key] for key in keys}
    outcome["status"] = str(report.status)
    outcome["steps"] = {step: record["status"] for step, record in done["steps"].items()}
    outcome["run_folder"] = str(report.run_folder) if report.run_folder.is_dir() else None
    outcome["warnings"] = list(report.warnings)
    _say_json(outcome)
    return report


def _dry_run_json(assessments: list[Any], waiting: int) -> dict[str, Any]:
    return {"steps": [_step_json(a) for a in assessments], "would_change": waiting}


def _step_json(assessment: Any) -> dict[str, Any]:
    """What a build would do with a step: `step`, `action`, `reasons`, and `remote: true`
    when the remote cache holds it."""
    return {
        "step": assessment.step.id,
        "action": assessment.decision.action.value,
        "reasons": list(assessment.decision.reasons),
        **({"remote": True} if assessment.remote else {}),
    }


def _say_json(data: Any) -> None:
    import json

    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _say_writers(request: Any, plan: Plan) -> None:
    """For each target that is a path: which step writes it."""
    for target in request.targets:
        if plan.members(target) is None:
            writer = plan.writer(target)
            if writer is not None:
                click.echo(f"building step '{writer[0]}' (it writes {writer[1]})")


def _progress(*, prefixed: bool) -> AbstractContextManager[Reporter]:
    """The live view on a terminal (unless `CI` is set), else timestamped plain lines.
    `prefixed`: a line of a step's output starts with the step's id (`-v` with `-j` > 1)."""
    import os
    import sys

    if sys.stdout.isatty() and not os.environ.get("CI"):
        from orchestrator.cli.live import LiveReporter

        return LiveReporter(prefixed=prefixed)
    from orchestrator.cli.reporter import PlainReporter

    return nullcontext(PlainReporter(click.echo, prefixed=prefixed))


@cli.command()
@_targets_argument
@click.option("-j", "--jobs", type=click.IntRange(min=1), help="Steps run at once [CPU count].")
@click.option("-k", "--keep-going", is_flag=True, help="Go on with steps a failure does not block.")
@click.option(
    "--offline",
    is_flag=True,
    envvar="ORCH_OFFLINE",
    help="Fail steps that would call a provider over the network [ORCH_OFFLINE].",
)
@_provider_option
@_set_option
@_reports_errors
def watch(
    args: tuple[str, ...],
    jobs: int | None,
    keep_going: bool,
    offline: bool,
    provider: str | None,
    sets: tuple[str, ...],
) -> None:
    """Build, then build again each time an input of the steps or the pipeline changes
    (Ctrl-C stops, exit 0)."""
    from orchestrator.cli.watch import watch as watching

    options = {"jobs": jobs or 0, "keep_going": keep_going, "offline": offline}
    request = _request(args, sets, provider=provider, **options)
    raise SystemExit(watching(request, _build_and_say))


@cli.command()
@_targets_argument
@click.option(
    "--check", is_flag=True, help="Exit 1 if a step is due for a reason other than always_run."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--remote", is_flag=True, help="Count what the remote cache holds as restorable.")
@_provider_option
@_set_option
@_reports_errors
def status(
    args: tuple[str, ...],
    check: bool,
    as_json: bool,
    remote: bool,
    provider: str | None,
    sets: tuple[str, ...],
) -> None:
    """Say which steps are up to date and why the others are not."""
    from orchestrator.cli.reporter import (
        deferred_lines,
        removed_lines,
        status_lines,
        status_summary,
    )
    from orchestrator.engine import build as builds

    request = _request(args, sets, provider=provider)
    found = builds.status(request, remote=remote)
    _warn(found.plan.warnings)
    cost = builds.estimate(request, found.plan, found.assessments)
    if as_json:
        click.echo(_status_json(found, cost))
    else:
        for line in [*status_lines(found.assessments), *deferred_lines(found.plan.deferred)]:
            click.echo(line)
        for line in removed_lines(found.plan.removed if not request.targets else {}):
            click.echo(line)
        for line in _batched_lines(found.plan.workdir):
            click.echo(line)
        if cost is not None:
            click.echo(cost.line())
        summary = status_summary(found.assessments, found.stale)
        if summary:
            click.echo(summary)
    if check and found.stale:
        raise SystemExit(1)


def _check_batch_settings() -> None:
    """UsageError for an `ORCH_BATCH_*` value that is not valid, before anything runs."""
    import os

    from orchestrator.providers.batch import BatchConfig

    BatchConfig.from_env(Path(), os.environ)


def _batched(workdir: str | Path) -> list[tuple[str, str, str]]:
    """(step, batch id, submitted) of the steps waiting on a provider batch (`--batch`)."""
    from orchestrator.store.batches import waiting
    from orchestrator.store.layout import StateFolder

    return waiting(StateFolder(Path(workdir)).batches)


def _batched_lines(workdir: str | Path) -> list[str]:
    """The steps waiting on a provider batch, one line each."""
    return [
        f"batched  {step}  (batch {batch_id}, submitted {submitted})"
        for step, batch_id, submitted in _batched(workdir)
    ]


def _status_json(found: StatusReport, cost: Estimate | None) -> str:
    """`{"pipeline", "up_to_date", "steps": [{"step", "action", "reasons", "stale", "remote"
    (with --remote, when the remote holds it)}],
    "deferred", "removed": [{"step", "reason"}], "batched": [{"step", "batch", "submitted"}],
    "estimate"}`."""
    import json

    steps = [{**_step_json(a), "stale": a.step.id in found.stale} for a in found.assessments]
    removed = [{"step": step, "reason": why} for step, why in found.plan.removed.items()]
    data = {
        "pipeline": found.plan.pipeline,
        "up_to_date": not found.stale,
        "steps": steps,
        "deferred": {group: list(after) for group, after in found.plan.deferred.items()},
        "removed": removed,
        "batched": [
            {"step": step, "batch": batch_id, "submitted": submitted}
            for step, batch_id, submitted in _batched(found.plan.workdir)
        ],
        "estimate": None if cost is None else cost.as_json(),
    }
    return json.dumps(data, indent=2)


# --------------------------------------------------------------------------- list, init, clean


@cli.command("list")
@_pipeline_argument
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_set_option
@_reports_errors
def list_command(pipeline: Path, as_json: bool, sets: tuple[str, ...]) -> None:
    """List the steps and foreach groups, with their descriptions.

    One line per step or group, in the order they are declared: a group shows its number of
    steps and the steps it is planned after; a `default: false` step is marked.
    """
    from orchestrator.plan.compiled import compile_plan
    from orchestrator.plan.listing import entries
    from orchestrator.plan.loading import load

    loaded = load(pipeline, overrides=_parse_sets(sets))
    _warn(loaded.warnings)
    found = entries(loaded, compile_plan(loaded))
    if as_json:
        import json

        click.echo(json.dumps([entry.to_json() for entry in found], indent=2, ensure_ascii=False))
        return
    width = max(len(entry.name) for entry in found)
    for entry in found:
        notes = ", ".join(entry.notes())
        text = " ".join(part for part in (entry.description, notes and f"({notes})") if part)
        click.echo(f"{entry.name:<{width}}  {text}".rstrip())


@cli.command("init")
@click.argument(
    "folder",
    required=False,
    default=".",
    metavar="[DIR]",
    type=click.Path(path_type=Path, file_okay=False),
)
@click.option("--force", is_flag=True, help="Overwrite an existing orch.yaml and workflow.")
@_reports_errors
def init_command(folder: Path, force: bool) -> None:
    """Write a starter orch.yaml, ignore .orch/ in git, and add a CI workflow.

    DIR (default: the current folder) gets orch.yaml, whose steps build offline at once,
    `.orch/` in its .gitignore, and .github/workflows/orch.yml. An existing orch.yaml or
    workflow is an error, with nothing written, unless --force.
    """
    from orchestrator.cli.starter import write_starter

    for line in write_starter(folder, force=force):
        click.echo(line)


@cli.command("clean")
@_targets_argument
@click.option("-n", "--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@_provider_option
@_set_option
@_reports_errors
def clean_command(
    args: tuple[str, ...], dry_run: bool, provider: str | None, sets: tuple[str, ...]
) -> None:
    """Remove the outputs of the steps (all, or TARGETs only); the cache keeps them.

    TARGETs are steps, foreach groups or output paths, as for build, but the steps they need
    are left alone. The cache and the lock file stay, so the next build restores the outputs.
    A file that differs from what the lock file records (a hand edit) is kept in the cache
    first, with the command that brings it back.
    """
    from orchestrator.engine.clean import clean

    cleaned = clean(_request(args, sets, provider=provider), dry_run=dry_run)
    for group, after in cleaned.unplanned.items():
        click.echo(
            f"'{group}' is not planned yet (it is planned after {', '.join(after)}):"
            " its steps are not known, so nothing of it is removed"
        )
    found = cleaned.steps
    verb = "would remove" if dry_run else "removed"
    for step in found:
        for path in step.removed:
            click.echo(f"{verb}  {path}")
        for kept in step.kept:
            click.echo(f"warning  {_kept_line(kept.as_event_data(), dry_run)}")
    if not found:
        click.echo("nothing to remove")
        return
    files, steps = sum(len(step.removed) for step in found), len(found)
    click.echo(f"{verb} {_count(files, 'file')} of {_count(steps, 'step')}")
    rerun = [step.step for step in found if not step.restorable]
    if rerun:
        click.echo(f"not in the cache, so the next build runs again: {', '.join(rerun)}")


def _kept_line(data: dict[str, Any], dry_run: bool) -> str:
    """How a hand edit is kept before clean removes it (or would be)."""
    from orchestrator.cli.reporter import kept_text, kept_what

    if not dry_run:
        return kept_text(data)
    return f"would keep {kept_what(data)} in the cache first"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


# --------------------------------------------------------------------------- cache

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3,
          "gb": 1000**3, "kib": 1024, "mib": 1024**2, "gib": 1024**3}  # fmt: skip
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _size(text: str) -> int:
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not match or match[2].lower() not in _UNITS:
        raise UsageError(f"--max-size expects a size like 500MB or 2GiB, got '{text}'")
    return int(float(match[1]) * _UNITS[match[2].lower()])


def _age(text: str) -> float:
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if not match:
        raise UsageError(f"--max-age expects a duration like 12h, 30d or 2w, got '{text}'")
    return float(match[1]) * _SECONDS[match[2]]


def _cache_of(pipeline: Path | None) -> Any:
    from orchestrator.store.cache import Cache

    return Cache(_state_of(pipeline)[0].cache)


def _state_of(pipeline: Path | None) -> tuple[Any, str | None]:
    """The state folder of the pipeline's workdir (of `.` without one), and the remote cache
    the pipeline names."""
    from orchestrator.cli import discovery
    from orchestrator.store.layout import StateFolder

    pipeline = discovery.pipeline_if_any(pipeline)
    if pipeline is None:
        return StateFolder(Path.cwd()), None
    from orchestrator.plan.loading import load

    loaded = load(pipeline)
    return StateFolder(loaded.workdir), loaded.spec.cache.remote


def _human(size: int) -> str:
    scaled, unit = float(size), "B"
    for larger in ("KB", "MB", "GB"):
        if scaled < 1000:
            break
        scaled, unit = scaled / 1000, larger
    return f"{size} B" if unit == "B" else f"{scaled:.1f} {unit}"


@cli.group()
def cache() -> None:
    """Inspect, read or trim the cache (`.orch/cache` of the pipeline's workdir, or of `.`)."""


_cache_pipeline = click.argument("pipeline", required=False, type=click.Path(path_type=Path))


@cache.command("info")
@_cache_pipeline
@_reports_errors
def cache_info(pipeline: Path | None) -> None:
    """How many step results and files the cache holds, and their size; the remote cache, and
    how many of this workdir's lookups it answered."""
    from orchestrator.store.cache import Cache

    state, named = _state_of(pipeline)
    store = Cache(state.cache)
    info = store.info()
    kept = f"{info.kept} kept edits, " if info.kept else ""
    click.echo(
        f"{store.root}: {info.actions} step results, {kept}{info.objects} files,"
        f" {_human(info.bytes)}"
    )
    import os

    from orchestrator.store.remote import RemoteSettings
    from orchestrator.store.remotetally import Tally

    try:
        remote = RemoteSettings.from_env(os.environ, named)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if remote is not None:
        tally = Tally.read(state.remote_tally)
        click.echo(f"remote: {remote.url} ({remote.mode}): {tally.line()}")


@cache.command("pull")
@_targets_argument
@_provider_option
@_set_option
@_reports_errors
def cache_pull(args: tuple[str, ...], provider: str | None, sets: tuple[str, ...]) -> None:
    """Fill the local cache from the remote with what the steps (all, or TARGETs) need."""
    from orchestrator.engine import build as builds

    found = builds.pull(_request(args, sets, provider=provider))
    _say_exchange(found, "pulled", "from")


@cache.command("push")
@_targets_argument
@_provider_option
@_set_option
@_reports_errors
def cache_push(args: tuple[str, ...], provider: str | None, sets: tuple[str, ...]) -> None:
    """Send the remote the cached results of the steps (all, or TARGETs) the lock records."""
    from orchestrator.engine import build as builds

    found = builds.push(_request(args, sets, provider=provider))
    _say_exchange(found, "pushed", "to")


def _say_exchange(found: Any, verb: str, way: str) -> None:
    """One line per step moved, then a summary; exit 1 when the remote failed."""
    for step in found.moved:
        click.echo(f"{verb}  {step}")
    results = "step result" if len(found.moved) == 1 else "step results"
    click.echo(f"{verb} {len(found.moved)} {results} {way} {found.remote}")
    if found.problem is not None:
        click.echo(f"error: the remote cache failed: {found.problem}", err=True)
        raise SystemExit(1)


@cache.command("cat")
@click.argument("digest")
@_cache_pipeline
@_reports_errors
def cache_cat(digest: str, pipeline: Path | None) -> None:
    """Write the file whose sha256 is DIGEST (a kept edit, or any output) to stdout."""
    from orchestrator.store.cache import CorruptObject
    from orchestrator.store.digest import is_digest

    if not is_digest(digest):
        raise UsageError(f"DIGEST is a sha256 (64 lowercase hex characters), got '{digest}'")
    try:
        found = _cache_of(pipeline).checked_object(digest)
    except CorruptObject as exc:
        raise OrchError(str(exc)) from None
    except OSError as exc:
        raise OrchError(f"cannot read the object {digest}: {exc.strerror or exc}") from None
    import sys

    from orchestrator.store.filestore import Copy

    Copy(found, digest)(sys.stdout.buffer)  # streamed, and checked again as it goes
    sys.stdout.buffer.flush()


@cache.command("gc")
@_cache_pipeline
@click.option("--max-age", default="30d", show_default=True, help="Drop results unused this long.")
@click.option("--max-size", help="Then drop the least recently used until the cache fits.")
@_reports_errors
def cache_gc(pipeline: Path | None, max_age: str, max_size: str | None) -> None:
    """Remove old cache entries, and files no entry names."""
    store = _cache_of(pipeline)
    result = store.gc(max_age_s=_age(max_age), max_bytes=_size(max_size) if max_size else None)
    kept = f", {result.kept_removed} kept edits" if result.kept_removed else ""
    click.echo(
        f"removed {result.actions_removed} step results{kept} and {result.objects_removed} files,"
        f" freed {_human(result.bytes_freed)}"
    )


# --------------------------------------------------------------------------- migrate


@cli.command("migrate")
@click.argument("spec", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the pipeline to this file instead of stdout.",
)
@click.option("--force", is_flag=True, help="Overwrite the output file if it exists.")
@_reports_errors
def migrate_command(spec: Path, output: Path | None, force: bool) -> None:
    """Convert a unified_orchestrator v2 job spec into a pipeline."""
    import os

    from orchestrator.language.migrate import migrate, read_spec
    from orchestrator.store.filestore import atomic_write

    workdir = None
    if output is not None:
        relative = os.path.relpath(Path.cwd(), output.parent.resolve())
        workdir = None if relative == "." else relative
    text, warnings = migrate(read_spec(spec), workdir=workdir)
    for warning in warnings:
        click.echo(warning.render(), err=True)
    if output is None:
        click.echo(text, nl=False)
        return
    if output.resolve() == spec.resolve():
        raise UsageError(f"{output} is the job spec itself; choose another output file")
    if output.exists() and not force:
        raise UsageError(f"{output} exists; pass --force to overwrite it")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(output, text.encode("utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from exc
    click.echo(f"wrote {output}")


# --------------------------------------------------------------------------- runs

_workdir_option = click.option(
    "-C",
    "--workdir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=".",
    show_default=True,
    help="The workdir whose .orch/runs/ to read.",
)
_run_argument = click.argument("run", required=False, metavar="[RUN]")


@cli.command("runs")
@click.option("--limit", type=click.IntRange(min=1), help="Show only the N newest runs.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_workdir_option
@_reports_errors
def runs_command(limit: int | None, as_json: bool, workdir: Path) -> None:
    """List the builds of a workdir, newest first."""
    from orchestrator.cli import history_text
    from orchestrator.record import history

    found = history.list_runs(workdir)
    live = history.live_job(workdir, found)
    entries = [(history.read_manifest(run), run.job_id == live) for run in found[:limit]]
    entries += [(summary, False) for summary in history.unchanged_runs(workdir)[:limit]]
    entries = sorted(entries, key=lambda entry: _newest(entry[0]), reverse=True)
    entries = entries[:limit]
    if as_json:
        import json

        summaries = [history_text.run_summary(manifest, live) for manifest, live in entries]
        click.echo(json.dumps(summaries, indent=2, ensure_ascii=False))
    elif not entries:
        click.echo("no runs yet")
    else:
        for line in history_text.runs_table(entries):
            click.echo(line)


def _newest(manifest: dict[str, Any]) -> tuple[str, str]:
    """The order of runs: by the second their job id names, then their start time."""
    return str(manifest.get("job_id"))[:16], str(manifest.get("started") or "")


@cli.command("show")
@_run_argument
@click.option("--json", "as_json", is_flag=True, help="Print the manifest.")
@_workdir_option
@_reports_errors
def show_command(run: str | None, as_json: bool, workdir: Path) -> None:
    """What happened in a run (RUN: a job id or a unique prefix; default: the latest)."""
    from orchestrator.cli import history_text
    from orchestrator.record import history

    found = history.resolve(workdir, run)
    manifest = history.read_manifest(found)
    if as_json:
        import json

        click.echo(json.dumps(manifest, indent=2, ensure_ascii=False))
        return
    for line in history_text.show_lines(manifest, history.is_live(workdir, found)):
        click.echo(line)


@cli.command("report")
@_run_argument
@click.option(
    "-o",
    "--output",
    default="report.html",
    show_default=True,
    metavar="FILE",
    help="Where to write the page; - for stdout.",
)
@_workdir_option
@_reports_errors
def report_command(run: str | None, output: str, workdir: Path) -> None:
    """Write a run as one self-contained HTML page (RUN: a job id or a unique prefix; default:
    the latest)."""
    from orchestrator.cli import runreport
    from orchestrator.record import history

    found = history.resolve(workdir, run)
    page = runreport.render(runreport.collect(workdir, found))
    if output == "-":
        click.echo(page, nl=False)
        return
    runreport.write(Path(output), page)
    click.echo(f"wrote {output} (run {found.job_id})")


@cli.command("tail")
@_run_argument
@click.option("--type", "types", multiple=True, metavar="GLOB", help="Event types (repeatable).")
@click.option("--step", "steps", multiple=True, metavar="ID", help="Events of a step (repeatable).")
@click.option(
    "--level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="debug",
    help="This level or more severe.",
)
@click.option("-f", "--follow", is_flag=True, help="Keep reading a live build until its job ends.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw event lines.")
@_workdir_option
@_reports_errors
def tail_command(
    run: str | None,
    types: tuple[str, ...],
    steps: tuple[str, ...],
    level: str,
    follow: bool,
    as_json: bool,
    workdir: Path,
) -> None:
    """Print a run's events (RUN: a job id or a unique prefix; default: the latest). With -f
    and no RUN: the build running now, or else the next one to start."""
    from orchestrator.record import history

    if follow and run is None:
        if history.live_run(workdir) is None:
            click.echo(f"waiting for a build in {workdir.resolve()} …", err=True)
        found = history.next_live_run(workdir)
    elif run is not None and (unchanged := history.unchanged(workdir, run)) is not None:
        click.echo(f"run {run} changed nothing: {_unchanged_text(unchanged)}")
        return
    else:
        found = history.resolve(workdir, run)
    wanted = history.EventFilter(types, steps, level)
    if follow:
        events = history.follow(found, lambda: history.is_live(workdir, found))
    else:
        loaded = history.load_events(found)
        if loaded.skipped:
            click.echo(
                f"warning: skipped {loaded.skipped} damaged lines in {found.events_file}", err=True
            )
        events = iter(loaded.events)
    last = None
    for event in events:
        last = event
        if wanted(event):
            click.echo(_event_text(event, as_json))
    unchanged = history.unchanged(workdir, found.job_id) if last is None else None
    if unchanged is not None:
        click.echo(f"run {found.job_id} changed nothing: {_unchanged_text(unchanged)}")
        return
    if follow and (last is None or last.get("type") not in history.END_TYPES):
        click.echo(
            f"warning: run {found.job_id} has no end event and no build is writing it"
            " (the build was killed or crashed)",
            err=True,
        )
        raise SystemExit(1)


def _unchanged_text(summary: dict[str, Any]) -> str:
    count = sum(summary["counts"].values())
    return f"all {count} step{'' if count == 1 else 's'} up to date"


def _event_text(event: dict[str, Any], as_json: bool) -> str:
    if not as_json:
        from orchestrator.cli.history_text import event_line

        return event_line(event)
    import json

    return json.dumps(event, ensure_ascii=False)
