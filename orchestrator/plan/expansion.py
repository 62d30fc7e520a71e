"""From a validated `Pipeline` to planned steps: foreach expansion and the two phases.

Structure (foreach, inputs, outputs, needs, cwd, provider, model, options) is rendered here, at
plan time, and may not call `read()`. Content (run, env values, template, prompt, system,
messages) is parsed here and rendered only when its step runs (see `content`); each step kind's
planner in `steps/` says which of its fields are which. ``steps.<id>`` resolves another step's
outputs on demand, so steps may be declared in any order; a loop of such references is an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator.core.errors import PipelineError, TemplateError
from orchestrator.core.paths import (
    NAME_MAX,
    LiteralPath,
    PathRefused,
    declared,
    escape,
    escapes_through_symlink,
    is_dir,
    is_glob,
    is_within,
    name_of,
    normalize,
    too_long,
    unescape,
)
from orchestrator.language import settings
from orchestrator.language.content import FullScope, key_material, merged
from orchestrator.language.pipeline import LoadedPipeline, Step
from orchestrator.language.references import References
from orchestrator.language.settings import fail_at, plain_data
from orchestrator.language.source import PathKey, SourceDocument
from orchestrator.language.spec import (
    Pipeline,
    Provider,
    RowsForeach,
    StepBase,
)
from orchestrator.language.templating import (
    Reader,
    Renderer,
    StepsView,
    forbidden_read,
    map_strings,
)
from orchestrator.language.tracked import TrackedEnv
from orchestrator.plan.conditions import Conditions, removed_reason
from orchestrator.plan.foreach import Foreach


def expand(
    file: Path,
    spec: Pipeline,
    source: SourceDocument,
    *,
    overrides: dict[str, str],
    environ: dict[str, str],
    provider_override: str | None,
) -> LoadedPipeline:
    """Render a validated pipeline into its steps, raising PipelineError with every problem."""
    renderer = Renderer()
    workdir = settings.workdir(file, spec, source)
    env = TrackedEnv(settings.environment(workdir, spec, source, environ))
    variables = settings.render_vars(spec, source, renderer, env, overrides, workdir)
    base = {**variables, "vars": variables, "env": env}
    providers = settings.render_providers(spec, source, renderer, base)
    default = settings.default_provider(spec, source, renderer, base, providers, provider_override)
    expander = _StepExpander(spec, source, renderer, workdir, base, providers, default)
    steps = expander.expand()
    groups = {group: tuple(members) for group, members in expander.groups.items()}
    globs = {pattern: tuple(found) for pattern, found in expander.foreach.globs.items()}
    return LoadedPipeline(
        file,
        workdir,
        spec,
        source,
        variables,
        env,
        providers,
        steps,
        groups,
        globs,
        warnings=tuple(expander.warnings),
        removed=dict(expander.removed),
        data_files=dict(expander.foreach.digests),
        deferred=dict(expander.foreach.deferred),
        unplannable=dict(expander.foreach.problems),
    )


class _StepExpander:
    """Expands foreach and renders every step, collecting all problems."""

    def __init__(
        self,
        spec: Pipeline,
        source: SourceDocument,
        renderer: Renderer,
        workdir: Path,
        base: Mapping[str, Any],
        providers: Mapping[str, Provider],
        default_provider: str | None,
    ) -> None:
        self.spec = spec
        self.source = source
        self.renderer = renderer
        self.path_renderer = Renderer(renderer.limits, paths=True)
        self.workdir = workdir
        self.base = base
        self.providers = providers
        self.default_provider = default_provider
        self.instances: dict[str, tuple[str, Any, Any]] = {}
        self.groups: dict[str, list[str]] = {}
        self.outputs: dict[str, list[str]] = {}
        self.failed: dict[str, PipelineError] = {}
        self.rendering: list[str] = []
        self.fields: dict[tuple[str, str], tuple[PathKey, ...]] = {}
        self.all_outputs: list[str] | None = None
        self.foreach = Foreach(source, renderer, workdir, base, upstream=self)
        self.conditions = Conditions(source, renderer, base)
        self.removed: dict[str, str] = {}
        """Step ids whose `if` was false, with why (see `conditions.removed_reason`)."""
        self.warnings: list[str] = []
        self._names: dict[str, None] | None = None

    # ------------------------------------------------------------------ driver

    def expand(self) -> dict[str, Step]:
        failures: dict[str, PipelineError] = {}
        for group in self._expansion_order():
            try:
                self._add_instances(group, self.spec.steps[group])
            except PipelineError as exc:
                failures[group] = exc
        self._in_declared_order()
        self.warnings.extend(self.foreach.warnings)
        diagnostics = [d for exc in failures.values() for d in exc.diagnostics]
        if diagnostics:
            raise PipelineError(diagnostics)
        if self.removed and not self.instances:
            self.warnings.append(self._all_removed_warning())
        steps: dict[str, Step] = {}
        for step_id in self.instances:
            try:
                steps[step_id] = self._render_step(step_id)
            except PipelineError as exc:
                diagnostics.extend(d for d in exc.diagnostics if d not in diagnostics)
        if diagnostics:
            raise PipelineError(diagnostics)
        return steps

    # ------------------------------------------------------------------ foreach

    def _add_instances(self, group: str, step_spec: StepBase) -> None:
        members = []
        found = self.foreach.instances(group, step_spec.foreach)
        if not found and group not in self.foreach.deferred:
            self.warnings.append(self.foreach.empty_warning(group, step_spec.foreach))
        for step_id, item, key in found:
            if step_id in self.instances or step_id in self.removed:
                raise fail_at(
                    f"step '{group}': foreach gives '{step_id}' twice",
                    self.source,
                    ("steps", group, "foreach"),
                )
            if not self.conditions.keeps(step_id, group, step_spec.condition, item, key):
                self.removed[step_id] = removed_reason(step_spec.condition)
                continue
            self.instances[step_id] = (group, item, key)
            members.append(step_id)
        if members or step_spec.foreach is not None:  # a removed single step is no group
            self.groups[group] = members

    def _all_removed_warning(self) -> str:
        first = next(iter(self.removed))
        group = first.partition("@")[0]
        location = self.source.locate(("steps", group, "if"))
        return (
            f"{location}: warning: every step is removed by its condition ('if'),"
            " so there is nothing to build"
        )

    def _expansion_order(self) -> list[str]:
        """The groups, those expanding from rows last: their rows file may be another step's
        output, which the other steps must be known to name."""
        groups = list(self.spec.steps)
        rows = [g for g in groups if isinstance(self.spec.steps[g].foreach, RowsForeach)]
        return [g for g in groups if g not in rows] + rows

    def _in_declared_order(self) -> None:
        """Step instances and groups back in the order the pipeline declares them."""
        rank = {group: i for i, group in enumerate(self.spec.steps)}
        self.instances = dict(sorted(self.instances.items(), key=lambda kv: rank[kv[1][0]]))
        self.groups = dict(sorted(self.groups.items(), key=lambda kv: rank[kv[0]]))
        self._names = None

    def steps(self) -> StepsView:
        """`steps` as the steps known so far see it (for a rows path)."""
        return StepsView([*self.instances, *self.groups], self.outputs_of)

    def writes(self, path: str) -> bool:
        """Whether a step known so far writes `path`."""
        return any(
            is_within(path, output)
            for step_id in list(self.instances)
            for output in self._outputs_or_none(step_id)
        )

    def _outputs_or_none(self, step_id: str) -> list[str]:
        try:
            return self.outputs_of(step_id)
        except PipelineError:
            return []

    # ------------------------------------------------------------------ outputs on demand

    def outputs_of(self, name: str) -> list[str]:
        """The rendered outputs of a step id, or of every member of a foreach group."""
        if name in self.removed:
            raise TemplateError(f"step '{name}' is removed by its condition ({self.removed[name]})")
        if name not in self.instances:
            return [out for member in self.groups[name] for out in self.outputs_of(member)]
        if name in self.outputs:
            return self.outputs[name]
        if name in self.failed:
            raise self.failed[name]
        if name in self.rendering:
            loop = " -> ".join([*self.rendering[self.rendering.index(name) :], name])
            raise TemplateError(f"steps refer to each other's outputs: {loop}")
        self.rendering.append(name)
        try:
            self.outputs[name] = self._render_outputs(name)
        except PipelineError as exc:
            self.failed[name] = exc
            raise
        finally:
            self.rendering.pop()
        return self.outputs[name]

    def names(self) -> dict[str, None]:
        """Every step id and foreach group name, as ``steps.`` sees them (keys, in order)."""
        if self._names is None:
            groups = (g for g in self.groups if g not in self.instances)
            self._names = dict.fromkeys([*self.instances, *groups, *self.removed])
        return self._names

    def _steps_view(self) -> StepsView:
        return StepsView(self.names(), self.outputs_of)

    def _path_context(self, step_id: str) -> dict[str, Any]:
        _, item, key = self.instances[step_id]
        return {
            **self.base,
            "steps": self._steps_view(),
            "item": item,
            "key": key,
            "read": forbidden_read("inputs and outputs"),
        }

    def _render_outputs(self, step_id: str) -> list[str]:
        group = self.instances[step_id][0]
        step_spec = self.spec.steps[group]
        declared = step_spec.output_fields()
        context = self._path_context(step_id)
        paths = []
        for field, text in declared:
            for pattern in self._paths(step_id, field, text, context):
                path = self._name(step_id, field, pattern)
                self.fields[(step_id, path)] = field
                paths.append(path)
        return paths

    def _paths(
        self, step_id: str, field: tuple[PathKey, ...], text: str, context: Mapping[str, Any]
    ) -> list[str]:
        """The patterns one entry declares: a lone ``{{ expression }}`` may give a list."""
        values = self._values(step_id, field, text, context)
        return [self._pattern(step_id, field, declared(v)) for v in values]

    def _values(
        self, step_id: str, field: tuple[PathKey, ...], text: str, context: Mapping[str, Any]
    ) -> list[Any]:
        """What one entry renders to, a list spliced into its elements."""
        value = self._evaluate(step_id, field, text, context)
        return list(value) if isinstance(value, list | tuple) else [value]

    def _pattern(self, step_id: str, field: tuple[PathKey, ...], text: str) -> str:
        """A declared path, normalised and checked: a glob, or a name escaped (see `paths`)."""
        try:
            normal = normalize(text)
        except PathRefused as exc:
            raise self._fail(step_id, field, str(exc)) from exc
        name = name_of(normal)
        long = None if is_glob(normal) else too_long(name)
        if long is not None:
            raise self._fail(
                step_id,
                field,
                f"path '{name}' has a name of {len(long.encode())} bytes; file systems allow"
                f" at most {NAME_MAX}",
            )
        if escapes_through_symlink(self.workdir, name):
            raise self._fail(
                step_id, field, f"path '{name}' leads outside the workdir through a symlink"
            )
        return normal

    def _name(
        self, step_id: str, field: tuple[PathKey, ...], pattern: str, what: str = "output"
    ) -> str:
        """The file or folder a declared output (or `what`) names; a glob is refused."""
        if is_glob(pattern):
            instead = "declare a folder ('dir/') instead, or " if what == "output" else ""
            raise self._fail(
                step_id,
                field,
                f"{what} '{pattern}' is a glob; {instead}write '[*]', '[?]' and '[[]'"
                " (or '| literal') for the characters themselves",
            )
        return unescape(pattern)

    def _fail(self, step_id: str, field: tuple[PathKey, ...], problem: str) -> PipelineError:
        group = self.instances[step_id][0]
        return fail_at(f"step '{step_id}': {problem}", self.source, ("steps", group, *field))

    def _evaluate(
        self, step_id: str, field: tuple[PathKey, ...], text: str, context: Mapping[str, Any]
    ) -> Any:
        """A path field's value; each `LiteralPath` in it stays a name (see `Renderer`)."""
        group = self.instances[step_id][0]
        try:
            return self.path_renderer.evaluate(text, context)
        except TemplateError as exc:
            raise fail_at(
                f"step '{step_id}', field '{_field_name(field)}': {exc}",
                self.source,
                ("steps", group, *field),
            ) from exc

    # ------------------------------------------------------------------ whole step

    def _render_step(self, step_id: str) -> Step:
        from orchestrator.steps import kinds

        planning = StepPlanning(self, step_id)
        planning.render_inputs()
        definition, provider = kinds()[planning.spec.kind].plan(planning)
        return planning.finish(definition, provider)

    def generated(self, path: str) -> bool:
        """Whether another step writes the file (so it cannot be read at plan time)."""
        if self.all_outputs is None:
            self.all_outputs = [o for s in self.instances for o in self._outputs_or_none(s)]
        return any(is_within(path, output) for output in self.all_outputs)


class StepPlanning:
    """One step at plan time: its structure rendered, its content templates parsed for its key.

    Each step kind's planner (in `steps/`) calls these methods for its fields; `finish` then
    turns what the content templates reach into the step's scope and key material.
    """

    def __init__(self, expander: _StepExpander, step_id: str) -> None:
        self._expander = expander
        self.step_id = step_id
        self.group, self.item, self.item_key = expander.instances[step_id]
        self.spec: StepBase = expander.spec.steps[self.group]
        self.providers = expander.providers
        self.default_provider = expander.default_provider
        self.workdir = expander.workdir
        self.label = f"step '{step_id}'"
        self.outputs = expander.outputs_of(step_id)
        self.inputs: list[str] = []
        self.extra_inputs: list[str] = []
        self.fallbacks: list[str] = []
        """Inputs the step does not render with (a fake provider's reply file)."""
        self.pipeline_env: Mapping[str, str] = expander.spec.env
        self.fields: dict[str, tuple[PathKey, ...]] = {}
        self.excludes: list[str] = []
        self.optional: list[str] = []
        self._exclusion_fields: dict[str, tuple[PathKey, ...]] = {}
        self._path_context = expander._path_context(step_id)
        self._references: list[References] = []
        self._plan_reads: list[str] = []

    # ------------------------------------------------------------------ structure

    def render_inputs(self) -> None:
        """Render the declared inputs (paths, or lists of paths from one expression), their
        exclusions and which of them are optional."""
        expander = self._expander
        for i, entry in enumerate(self.spec.inputs):
            text, optional = (
                (entry, False) if isinstance(entry, str) else (entry.path, entry.optional)
            )
            field: tuple[PathKey, ...] = (
                ("inputs", i) if isinstance(entry, str) else ("inputs", i, "path")
            )
            for value in expander._values(self.step_id, field, text, self._path_context):
                if _is_exclusion(value):
                    if optional:
                        raise self.fail(
                            f"{self.label}: an exclusion ('{value}') cannot be optional", field
                        )
                    self._exclude(expander._pattern(self.step_id, field, value[1:]), field)
                    continue
                path = expander._pattern(self.step_id, field, declared(value))
                self.declare_input(path, field)
                if optional and path not in self.optional:
                    self.optional.append(path)
        self._check_exclusions()

    def _exclude(self, pattern: str, field: tuple[PathKey, ...]) -> None:
        if pattern not in self.excludes:
            self.excludes.append(pattern)
            self._exclusion_fields.setdefault(pattern, field)

    def _check_exclusions(self) -> None:
        """An exclusion needs a glob or folder input to take files out of."""
        if self.excludes and not any(is_glob(p) or is_dir(p) for p in self.inputs):
            first = self.excludes[0]
            raise self.fail(
                f"{self.label}: the exclusion '!{name_of(first)}' has no glob or folder input to"
                " exclude from (to name a file starting with '!', write './!name')",
                self._exclusion_fields[first],
            )

    def declare_input(self, path: str, field: tuple[PathKey, ...]) -> None:
        """Add an input (a pattern, see `paths`) once, remembering where it was declared."""
        if path not in self.inputs:
            self.inputs.append(path)
        self.fields.setdefault(path, field)

    def input_file(self, field: tuple[PathKey, ...], text: str) -> str:
        """A file path field that is also an input (prompt_file, template_file): its name."""
        name = self.path(field, text)
        self.declare_input(escape(name), field)
        return name

    def structure(self, field: tuple[PathKey, ...], value: Any) -> Any:
        """A structure field rendered now; a lone ``{{ expression }}`` keeps its type."""
        self._refuse_read(field, value)
        try:
            return plain_data(self._expander.renderer.evaluate_value(value, self._context()))
        except TemplateError as exc:
            raise self.field_error(field, exc) from exc

    def path(self, field: tuple[PathKey, ...], text: str) -> str:
        """A path field naming one file or folder (cwd, prompt_file, template_file): its name,
        rendered and checked now."""
        self._refuse_read(field, text)
        expander = self._expander
        value = expander._evaluate(self.step_id, field, text, self._context())
        pattern = expander._pattern(self.step_id, field, declared(value))
        return expander._name(self.step_id, field, pattern, _field_name(field))

    def _context(self) -> dict[str, Any]:
        """What structure fields see: the path context, and the step's inputs and outputs."""
        return {**self._path_context, "inputs": self.shown_inputs, "outputs": self.shown_outputs}

    @property
    def shown_inputs(self) -> list[str]:
        """The inputs as templates see them: each name as a `LiteralPath`, globs as written."""
        return [p if is_glob(p) else LiteralPath(unescape(p)) for p in self.inputs]

    @property
    def shown_outputs(self) -> list[str]:
        """The outputs as templates see them, each a `LiteralPath`."""
        return [LiteralPath(path) for path in self.outputs]

    def _refuse_read(self, field: tuple[PathKey, ...], value: Any) -> None:
        for text in _strings(value):
            try:
                uses_read = "read" in self._expander.renderer.references(text).names
            except TemplateError as exc:
                raise self.field_error(field, exc) from exc
            if uses_read:
                raise self.field_error(
                    field,
                    "read() cannot be used here: this field is rendered before any step runs"
                    " (use it in run, env, template, prompt, system or messages)",
                )

    # ------------------------------------------------------------------ content

    def content(self, field: tuple[PathKey, ...], value: Any, *, pipeline: bool = False) -> Any:
        """A content field, kept as source and rendered when the step runs; its references
        are checked now and enter the key. With `pipeline`, `field` is a top-level field the
        step takes (the pipeline's `env`), and errors are located there."""
        for text in _strings(value):
            try:
                self._add_references(self._expander.renderer.references(text))
            except TemplateError as exc:
                if pipeline:
                    problem = f"{self.label}, pipeline field '{_field_name(field)}': {exc}"
                    raise fail_at(problem, self._expander.source, field) from exc
                raise self.field_error(field, exc) from exc
        return value

    def content_file(self, field: tuple[PathKey, ...], path: str) -> None:
        """A template file among the inputs: parsed now when the user writes it; when another
        step writes it, every var, item, key, steps and paths count (not env)."""
        if self._expander.generated(path):
            names = {*self._expander.base["vars"], *_FILE_NAMES}
            self._references.append(References(names=names))
            return
        try:
            text = (self.workdir / path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise self.fail(f"{self.label}: cannot read '{path}': {exc}", field) from exc
        self._plan_reads.append(path)
        try:
            self._add_references(self._expander.renderer.references(text))
        except TemplateError as exc:
            raise self.fail(f"{self.label}, in {path}: {exc}", field) from exc

    def is_file(self, path: str) -> bool:
        """Whether a file `path` is in the workdir now (not through a symlink leading out); the
        plan depends on the answer, so a saved plan holds only while it does not change."""
        self._plan_reads.append(path)
        workdir = self.workdir
        return (workdir / path).is_file() and not escapes_through_symlink(workdir, path)

    def _add_references(self, found: References) -> None:
        self._scope().check_defined(found)
        reader = Reader(self.inputs, self.workdir, self.excludes)
        for path in sorted(found.reads):
            reader.check(path)
        self._references.append(found)

    def _scope(self) -> FullScope:
        base = self._expander.base
        return FullScope(
            vars=base["vars"],
            env=base["env"],
            step_names=self._expander.names(),
            outputs_of=self._expander.outputs_of,
            item=self.item,
            key=self.item_key,
            inputs=tuple(self.shown_inputs),
            outputs=tuple(self.shown_outputs),
        )

    # ------------------------------------------------------------------ checks and result

    def fail(
        self, message: str, field: tuple[PathKey, ...] = (), *, key: bool = False
    ) -> PipelineError:
        """An error about this step, located at one of its fields (or the step itself)."""
        return fail_at(
            message,
            self._expander.source,
            ("steps", self.group, *field),
            key=key or not field,
        )

    def field_error(self, field: tuple[PathKey, ...], problem: object) -> PipelineError:
        """An error in one field, named and located."""
        return self.fail(f"{self.label}, field '{_field_name(field)}': {problem}", field)

    def require_one_output(self) -> None:
        """Refuse a step that does not declare exactly one output file."""
        if len(self.outputs) != 1 or self.outputs[0].endswith("/"):
            raise self.fail(
                f"{self.label} writes one file: declare one 'output' that is not a folder"
            )

    def finish(self, definition: dict[str, Any], provider: str | None) -> Step:
        """The planned step: its definition with the key material of what its content reaches."""
        try:
            scope = self._scope().restrict(merged(self._references))
        except TemplateError as exc:
            raise self.fail(f"{self.label}: {exc}") from exc
        definition["context"] = key_material(scope)
        needs = [str(self.structure(("needs", i), text)) for i, text in enumerate(self.spec.needs)]
        for path in self.outputs:
            self.fields.setdefault(path, self._expander.fields[(self.step_id, path)])
        return Step(
            id=self.step_id,
            group=self.group,
            kind=self.spec.kind,
            spec=self.spec,
            inputs=tuple(dict.fromkeys([*self.inputs, *self.extra_inputs])),
            outputs=tuple(self.outputs),
            needs=tuple(needs),
            definition=definition,
            item=self.item,
            item_key=self.item_key,
            provider=provider,
            fallbacks=tuple(self.fallbacks),
            fields=self.fields,
            scope=scope,
            plan_reads=tuple(self._plan_reads),
            expands=self._expander.foreach.expands.get(self.group, ()),
            excludes=tuple(self.excludes),
            optional=tuple(self.optional),
        )


_FILE_NAMES = ("vars", "steps", "item", "key", "inputs", "outputs")
"""What a template file another step writes may use (env is left out of keys)."""


def _is_exclusion(value: Any) -> bool:
    """Whether an input entry's value is an exclusion: text starting with ``!`` that is not a
    name orch gives (a `LiteralPath` is always a file)."""
    return isinstance(value, str) and not isinstance(value, LiteralPath) and value.startswith("!")


def _strings(value: Any) -> list[str]:
    """Every string inside nested lists and mappings."""
    found: list[str] = []
    map_strings(value, found.append)
    return found


def _field_name(field: tuple[PathKey, ...]) -> str:
    return str(field[0]) + "".join(f"[{p}]" for p in field[1:]) if field else "step"
