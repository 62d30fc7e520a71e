"""A compiled plan: the steps of a pipeline in dependency order, reduced to what a build checks.

A plan holds, per step, its kind, its declared inputs and outputs, the steps it waits for and
the hash of its resolved definition. It is plain data, so it can be saved and reused while the
pipeline and everything it was compiled from are unchanged (see `plancache`); the full
pipeline is loaded again only when a step has to run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from orchestrator.core.errors import UsageError
from orchestrator.core.paths import escape, is_within
from orchestrator.store.digest import is_digest

if TYPE_CHECKING:
    from orchestrator.language.pipeline import LoadedPipeline, Step
    from orchestrator.steps.commands import Command


class PlannedStep(NamedTuple):
    """One step as the build sees it; `inputs` include the outputs of the steps it `needs`."""

    id: str
    kind: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    preds: tuple[str, ...]
    definition: str
    always_run: bool = False
    cache: bool = True
    provider: str | None = None
    nested: tuple[str, ...] = ()
    """Outputs of other steps inside this step's output folders: not part of its outputs."""
    expands: tuple[tuple[str, str | None], ...] = ()
    """Files other steps write that planning this step read, with their sha256 then (None:
    absent): once their writers are done, the step stands only if they still match."""
    default: bool = True
    """False: built only when a target asks for it (or for a step that needs it)."""
    excludes: tuple[str, ...] = ()
    """What the inputs' ``!`` entries take out of its glob and folder inputs."""
    command: Command | None = None
    """What a shell step runs, when that needs no rendering: the build runs it from the plan
    (see `steps.commands`)."""

    def owns(self, path: str) -> bool:
        """Whether a file under one of the output folders belongs to this step."""
        return not any(is_within(path, other) for other in self.nested)


@dataclass(frozen=True)
class Plan:
    """Every step of a pipeline, in dependency order (ties in declaration order)."""

    pipeline: str
    name: str
    workdir: str
    steps: Mapping[str, PlannedStep]
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    sources: tuple[str, ...] = ()
    """Inputs that no step writes: files, folders and globs the user provides (optional
    inputs left out: they may be missing)."""
    warnings: tuple[str, ...] = ()
    """What loading the pipeline warned about, said again on every build."""
    deferred: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Foreach groups not planned yet, each with the steps whose outputs it expands from."""
    removed: Mapping[str, str] = field(default_factory=dict)
    unplannable: Mapping[str, str] = field(default_factory=dict)
    """Deferred groups whose file cannot be planned from as it is, with why."""
    """Step ids their `if` removed, with why (`if: … is false`)."""
    waiters: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Deferred groups with the steps whose `needs` name them."""
    remote: str | None = None
    """The pipeline's remote cache URL (`cache: {remote: ...}`), if it names one."""

    def members(self, name: str) -> tuple[str, ...] | None:
        """The step ids a target name stands for, None if unknown; for a group not planned
        yet, the steps it waits for."""
        if name in self.steps:
            return (name,)
        if name in self.deferred:
            return self.deferred[name]
        return self.groups.get(name)

    def select(self, targets: Iterable[str]) -> list[str]:
        """The named steps (ids, foreach groups or output paths) and all they need, in order;
        with no target, the default steps and all they need."""
        wanted = list(targets)
        stack = [step.id for step in self.steps.values() if step.default] if not wanted else []
        for target in wanted:
            stack.extend(self.resolve(target))
        chosen = self._with_needs(stack)
        return [name for name in self.steps if name in chosen]

    def _with_needs(self, steps: Iterable[str]) -> set[str]:
        """The steps and every step they wait for, directly or not."""
        found: set[str] = set()
        stack = list(steps)
        while stack:
            name = stack.pop()
            if name not in found:
                found.add(name)
                stack.extend(self.steps[name].preds)
        return found

    def waiting(self, targets: Iterable[str]) -> dict[str, tuple[str, ...]]:
        """The groups not planned yet that the targets ask for (all of them when none are
        named), each with the steps it waits for: those named, and those a chosen step
        `needs`."""
        wanted = set(targets)
        if not wanted or not self.deferred:
            return dict(self.deferred)
        chosen = set(self.select(wanted)) if self.waiters else set()
        return {
            group: after
            for group, after in self.deferred.items()
            if group in wanted or chosen.intersection(self.waiters.get(group, ()))
        }

    def first_round(self, selected: list[str], targets: Iterable[str]) -> list[str]:
        """The steps a build runs before planning the groups that wait for other steps'
        outputs and that the targets ask for: the steps that write those outputs, and what
        they need (all the selected steps when no such group waits)."""
        waiting = self.waiting(targets)
        if not waiting:
            return selected
        needed = self._with_needs(p for producers in waiting.values() for p in producers)
        return [name for name in self.steps if name in needed]

    def resolve(self, target: str) -> tuple[str, ...]:
        """The step ids a target stands for: a step, a foreach group, or the step that writes
        a path; UsageError (with did-you-mean) for anything else."""
        members = self.members(target)
        if members is not None:
            return members
        if target in self.removed:
            raise UsageError(
                f"step '{target}' is not in the plan: it is removed by its condition"
                f" ({self.removed[target]})"
            )
        writer = self.writer(target)
        if writer is not None:
            return (writer[0],)
        from orchestrator.core.suggest import suggest

        outputs = [path for step in self.steps.values() for path in step.outputs]
        names = [*self.steps, *(g for g in self.groups if g not in self.steps), *outputs]
        raise UsageError(
            f"no step named '{target}' (nor a foreach group, a declared output or a pipeline"
            f" file){suggest(target, names)}"
        )

    def writer(self, target: str) -> tuple[str, str] | None:
        """The step that writes the path `target` and the output that holds it (the path
        itself, or the innermost declared folder holding it); None if no step does."""
        from orchestrator.core.paths import PathRefused, is_glob, normalize

        try:
            path = normalize(target)
        except PathRefused:
            return None
        found: tuple[str, str] | None = None
        for step in self.steps.values():
            for output in step.outputs:
                if output.rstrip("/") == path.rstrip("/"):
                    return step.id, output
                if is_within(path, output) and (found is None or len(output) > len(found[1])):
                    found = step.id, output
        return None if is_glob(path) else found

    def to_json(self) -> dict[str, Any]:
        """Plain data for saving."""
        return {
            "pipeline": self.pipeline,
            "name": self.name,
            "workdir": self.workdir,
            "groups": {name: list(ids) for name, ids in self.groups.items()},
            "sources": list(self.sources),
            "warnings": list(self.warnings),
            "deferred": {name: list(ids) for name, ids in self.deferred.items()},
            "removed": dict(self.removed),
            "unplannable": dict(self.unplannable),
            "waiters": {name: list(ids) for name, ids in self.waiters.items()},
            "remote": self.remote,
            "steps": [_compact(step) for step in self.steps.values()],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        """The plan `to_json` saved, checked field by field: ValueError if any field is not
        what `to_json` writes (a path not in canonical form, a step waiting for one that
        does not come before it, a definition hash that is not a sha256…)."""
        steps: dict[str, PlannedStep] = {}
        for raw in _typed(data, "steps", list):
            step = _step_from_json(raw, steps)
            steps[step.id] = step
        groups = {}
        for name, ids in _typed(data, "groups", dict, {}).items():
            groups[_str(name)] = tuple(_known(i, steps) for i in _strings(ids, name))
        sources = _paths(data, "sources")
        warnings = _strings(data.get("warnings"), "warnings")
        removed = {}
        for step_id, reason in _typed(data, "removed", dict, {}).items():
            if step_id in steps or step_id in groups:
                raise ValueError(f"removed step '{step_id}' is also in the plan")
            removed[_str(step_id)] = _str(reason)
        pipeline, name, workdir = (_typed(data, key, str) for key in _PLAN_TEXT)
        deferred = {}
        for group, ids in _typed(data, "deferred", dict, {}).items():
            deferred[_str(group)] = tuple(_known(i, steps) for i in _strings(ids, group))
        unplannable = {}
        for group, why in _typed(data, "unplannable", dict, {}).items():
            if group not in deferred:
                raise ValueError(f"'{group}' cannot be planned but is not deferred")
            unplannable[_str(group)] = _str(why)
        waiters = {}
        for group, ids in _typed(data, "waiters", dict, {}).items():
            if group not in deferred:
                raise ValueError(f"steps wait for '{group}', which is not deferred")
            waiters[_str(group)] = tuple(_known(i, steps) for i in _strings(ids, group))
        remote = data.get("remote")
        if remote is not None and not isinstance(remote, str):
            raise ValueError("'remote' is not text")
        return cls(
            pipeline,
            name,
            workdir,
            steps,
            groups,
            sources,
            warnings,
            deferred,
            removed,
            unplannable,
            waiters,
            remote,
        )


def _step_from_json(raw: Any, earlier: Mapping[str, PlannedStep]) -> PlannedStep:
    if type(raw) is not dict:
        raise ValueError("a step is not a mapping")
    step_id = _typed(raw, "id", str)
    if step_id in earlier:
        raise ValueError(f"step '{step_id}' twice")
    definition = _typed(raw, "definition", str)
    if not is_digest(definition):
        raise ValueError(f"step '{step_id}': its definition hash is not a sha256")
    provider = raw.get("provider")
    preds = _strings(raw.get("preds"), "preds")
    for pred in preds:
        _known(pred, earlier)
    return PlannedStep(
        id=step_id,
        kind=_typed(raw, "kind", str),
        inputs=_paths(raw, "inputs"),
        outputs=_paths(raw, "outputs"),
        preds=preds,
        definition=definition,
        always_run=_typed(raw, "always_run", bool, False),
        cache=_typed(raw, "cache", bool, True),
        provider=None if provider is None else _str(provider),
        nested=_paths(raw, "nested"),
        expands=_expands(raw.get("expands")),
        default=_typed(raw, "default", bool, True),
        excludes=_paths(raw, "excludes"),
        command=_command(raw.get("command")),
    )


def _command(raw: Any) -> Command | None:
    """A saved step's command, checked (see `Command.from_json`)."""
    if raw is None:
        return None
    from orchestrator.steps.commands import Command

    return Command.from_json(raw)


def _expands(raw: Any) -> tuple[tuple[str, str | None], ...]:
    """The `[path, sha256 or null]` pairs of a saved step's `expands`."""
    if raw is None:
        return ()
    if type(raw) is not list or not all(type(p) is list and len(p) == 2 for p in raw):
        raise ValueError("'expands' is not a list of [path, sha256] pairs")
    paths = _paths({"expands": [path for path, _ in raw]}, "expands")
    digests = [digest for _, digest in raw]
    if not all(digest is None or is_digest(digest) for digest in digests):
        raise ValueError("'expands' holds a digest that is not a sha256")
    return tuple(zip(paths, digests, strict=True))


_MISSING: Any = object()
_PLAN_TEXT = ("pipeline", "name", "workdir")
_NOT_CANONICAL = frozenset({"", ".", ".."})


def _typed(data: Mapping[str, Any], name: str, kind: type, default: Any = _MISSING) -> Any:
    value = data.get(name, default)
    if value is _MISSING or type(value) is not kind:
        raise ValueError(f"'{name}' is not a {kind.__name__}")
    return value


def _strings(values: Any, name: str) -> tuple[str, ...]:
    """`values`, a list of strings (or None: empty) saved as `name`."""
    if values is None:
        return ()
    if type(values) is not list or (values and set(map(type, values)) != {str}):
        raise ValueError(f"'{name}' is not a list of strings")
    return tuple(values)


def _paths(data: Mapping[str, Any], name: str) -> tuple[str, ...]:
    """The list of paths under `name`, each in the form `paths.normalize` gives (checked
    without rebuilding it)."""
    paths = _strings(data.get(name), name)
    for path in paths:
        parts = (path[:-1] if path.endswith("/") else path).split("/")
        if _NOT_CANONICAL.intersection(parts) or path[0] in "~\\" or path[1:2] == ":":
            raise ValueError(f"'{path}' is not a canonical workdir-relative path")
    return paths


def _str(value: Any) -> str:
    if type(value) is not str:
        raise ValueError(f"{value!r} is not a string")
    return value


def _known(step_id: str, steps: Mapping[str, PlannedStep]) -> str:
    if step_id not in steps:
        raise ValueError(f"'{step_id}' is not an earlier step")
    return step_id


_DEFAULTS = {
    "inputs": [],
    "outputs": [],
    "preds": [],
    "always_run": False,
    "cache": True,
    "default": True,
}


def _compact(step: PlannedStep) -> dict[str, Any]:
    """Leave out fields at their default, which keeps saved plans of many steps small."""
    compact: dict[str, Any] = {}
    for name, value in zip(PlannedStep._fields, step, strict=True):
        if value is None or value == () or _DEFAULTS.get(name, _MISSING) == value:
            continue
        compact[name] = list(value) if type(value) is tuple else value
    if step.command is not None:
        compact["command"] = step.command.to_json()
    return compact


def _ready(pipeline: LoadedPipeline, step: Step) -> Command | None:
    """The command a step runs from the plan, if its kind can say it before it runs and the
    real environment is all of the pipeline's (no dotenv file adds to it)."""
    from orchestrator.steps import kinds

    ready = kinds()[step.kind].ready
    if ready is None or pipeline.spec.dotenv:
        return None
    return ready(step)


def compile_plan(pipeline: LoadedPipeline) -> Plan:
    """Check the graph of a loaded pipeline and reduce it to a plan."""
    from orchestrator.plan import graph as graphs
    from orchestrator.store.hashing import definition_hash

    graph = graphs.build(pipeline)
    index = graphs.OutputIndex(pipeline.steps.values())
    salt = pipeline.env.get("ORCH_CACHE_SALT") or pipeline.spec.cache.salt
    steps = {}
    sources: set[str] = set()
    for step_id in graphs.ordered(pipeline, graph):
        step = pipeline.steps[step_id]
        steps[step_id] = PlannedStep(
            id=step_id,
            kind=step.kind,
            inputs=_with_needed_outputs(pipeline, step),
            outputs=step.outputs,
            preds=tuple(sorted(graph.predecessors(step_id))),
            definition=definition_hash(step.kind, key_definition(step, salt)),
            always_run=step.spec.always_run,
            cache=step.spec.cache,
            provider=step.provider,
            nested=index.nested(step_id, step.outputs),
            expands=step.expands,
            default=step.spec.default,
            excludes=step.excludes,
            command=_ready(pipeline, step),
        )
        sources.update(
            path
            for path in step.inputs
            if path not in step.optional and not index.producers(path, step.excludes)
        )
    groups = {name: ids for name, ids in pipeline.groups.items() if name not in pipeline.steps}
    deferred = {
        group: tuple(sorted({p for path in paths for p in index.producers(path)}))
        for group, paths in pipeline.deferred.items()
    }
    return Plan(
        str(pipeline.file),
        pipeline.name,
        str(pipeline.workdir),
        steps,
        groups,
        tuple(sorted(sources)),
        pipeline.warnings,
        removed=pipeline.removed,
        deferred=deferred,
        unplannable=pipeline.unplannable,
        waiters=_waiters(pipeline),
        remote=pipeline.spec.cache.remote,
    )


def _waiters(pipeline: LoadedPipeline) -> dict[str, tuple[str, ...]]:
    """Each deferred group that steps `need`, with those steps."""
    found: dict[str, list[str]] = {}
    for step in pipeline.steps.values():
        for need in step.needs:
            if need in pipeline.deferred:
                found.setdefault(need, []).append(step.id)
    return {group: tuple(ids) for group, ids in found.items()}


def key_definition(step: Step, salt: str | None = None) -> dict[str, Any]:
    """A step's definition as it enters its key: what it does, where it writes, and the
    pipeline's cache salt when it has one."""
    found = {**step.definition, "outputs": sorted(step.outputs)}
    if salt:
        found["salt"] = salt
    return found


def _with_needed_outputs(pipeline: LoadedPipeline, step: Step) -> tuple[str, ...]:
    """A step's inputs and the outputs of the steps it needs: `needs` means "depends on"
    (a needed folder that holds one of the step's own outputs is left out)."""
    needed = [
        escape(output)
        for name in step.needs
        for member in pipeline.members(name) or ()
        for output in pipeline.steps[member].outputs
        if not any(is_within(own, output) for own in step.outputs)
    ]
    return tuple(dict.fromkeys([*step.inputs, *needed]))
