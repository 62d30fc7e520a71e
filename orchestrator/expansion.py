"""From a validated `Pipeline` to rendered steps: foreach expansion and plan-time rendering.

Each step's `inputs` and `outputs` are rendered first, then its other fields with `inputs`,
`outputs` and a planning `read()` in the context. ``steps.<id>`` resolves another step's
outputs on demand, so steps may be declared in any order; a loop of such references is an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import settings
from .errors import Diagnostic, OrchError, PipelineError, TemplateError
from .paths import (
    PathRefused,
    escapes_through_symlink,
    expand_glob,
    is_glob,
    is_within,
    normalize,
)
from .pipeline import LoadedPipeline, Step
from .settings import fail_at
from .source import PathKey, SourceDocument
from .spec import LlmStep, Pipeline, Provider, ShellStep, TemplateStep
from .templating import Reader, Renderer, StepsView, forbidden_read, suggest

StepSpec = ShellStep | LlmStep | TemplateStep


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
    env = settings.environment(workdir, spec, source, environ)
    variables = settings.render_vars(spec, source, renderer, env, overrides)
    base = {**variables, "vars": variables, "env": env}
    providers = settings.render_providers(spec, source, renderer, base)
    default = settings.default_provider(spec, source, renderer, base, providers, provider_override)
    expander = _StepExpander(spec, source, renderer, workdir, base, providers, default)
    steps = expander.expand()
    groups = {group: tuple(members) for group, members in expander.groups.items()}
    globs = {pattern: tuple(found) for pattern, found in expander.globs.items()}
    return LoadedPipeline(
        file, workdir, spec, source, variables, env, providers, steps, groups, globs
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
        self.globs: dict[str, list[str]] = {}

    # ------------------------------------------------------------------ driver

    def expand(self) -> dict[str, Step]:
        diagnostics: list[Diagnostic] = []
        for group, step_spec in self.spec.steps.items():
            try:
                self._add_instances(group, step_spec)
            except PipelineError as exc:
                diagnostics.extend(exc.diagnostics)
        if diagnostics:
            raise PipelineError(diagnostics)
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

    def _add_instances(self, group: str, step_spec: StepSpec) -> None:
        members = []
        for step_id, item, key in self._foreach(group, step_spec):
            if step_id in self.instances:
                raise fail_at(
                    f"step '{group}': foreach gives '{step_id}' twice",
                    self.source,
                    ("steps", group, "foreach"),
                )
            self.instances[step_id] = (group, item, key)
            members.append(step_id)
        self.groups[group] = members

    def _foreach(self, group: str, step_spec: StepSpec) -> list[tuple[str, Any, Any]]:
        where = ("steps", group, "foreach")
        items = step_spec.foreach
        if items is None:
            return [(group, None, None)]
        if isinstance(items, str):
            context = {**self.base, "read": forbidden_read("foreach")}
            try:
                items = self.renderer.evaluate(items, context)
            except TemplateError as exc:
                raise fail_at(
                    f"step '{group}', field 'foreach': {exc}", self.source, where
                ) from exc
            if isinstance(items, str):
                items = self._glob(group, items)
        if isinstance(items, dict):
            return [(f"{group}@{key}", value, key) for key, value in items.items()]
        if isinstance(items, list | tuple):
            return [
                (f"{group}@{item if _is_scalar(item) else index}", item, None)
                for index, item in enumerate(items)
            ]
        raise fail_at(
            f"step '{group}': foreach must be a list, a mapping or a glob,"
            f" not {type(items).__name__}",
            self.source,
            where,
        )

    def _glob(self, group: str, pattern: str) -> list[str]:
        try:
            normal = normalize(pattern)
        except PathRefused as exc:
            raise fail_at(
                f"step '{group}', field 'foreach': {exc}", self.source, ("steps", group, "foreach")
            ) from exc
        if not is_glob(normal):
            return [normal]
        self.globs[normal] = expand_glob(self.workdir, normal)
        return self.globs[normal]

    # ------------------------------------------------------------------ outputs on demand

    def outputs_of(self, name: str) -> list[str]:
        """The rendered outputs of a step id, or of every member of a foreach group."""
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

    def _steps_view(self) -> StepsView:
        names = [*self.instances, *(g for g in self.groups if g not in self.instances)]
        return StepsView(names, self.outputs_of)

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
        declared: list[tuple[tuple[PathKey, ...], str]] = (
            [(("output",), step_spec.output)]
            if step_spec.output is not None
            else [(("outputs", i), text) for i, text in enumerate(step_spec.outputs)]
        )
        if isinstance(step_spec, ShellStep) and step_spec.stdout is not None:
            declared.append((("stdout",), step_spec.stdout))
        context = self._path_context(step_id)
        paths = []
        for field, text in declared:
            for path in self._paths(step_id, field, text, context, output=True):
                self.fields[(step_id, path)] = field
                paths.append(path)
        return paths

    def _paths(
        self,
        step_id: str,
        field: tuple[PathKey, ...],
        text: str,
        context: Mapping[str, Any],
        *,
        output: bool,
    ) -> list[str]:
        """The paths one entry declares: a lone ``{{ expression }}`` may give a list."""
        value = self._render(step_id, field, text, context, evaluate=True)
        values = value if isinstance(value, list | tuple) else [value]
        return [self._path(step_id, field, str(v), output=output) for v in values]

    def _path(
        self, step_id: str, field: tuple[PathKey, ...], rendered: str, *, output: bool
    ) -> str:
        group = self.instances[step_id][0]
        where = ("steps", group, *field)
        try:
            normal = normalize(rendered)
        except PathRefused as exc:
            raise fail_at(f"step '{step_id}': {exc}", self.source, where) from exc
        if output and is_glob(normal):
            raise fail_at(
                f"step '{step_id}': output '{normal}' is a glob; declare a folder ('dir/') instead",
                self.source,
                where,
            )
        if escapes_through_symlink(self.workdir, normal):
            raise fail_at(
                f"step '{step_id}': path '{normal}' leads outside the workdir through a symlink",
                self.source,
                where,
            )
        return normal

    def _render(
        self,
        step_id: str,
        field: tuple[PathKey, ...],
        text: Any,
        context: Mapping[str, Any],
        *,
        evaluate: bool = False,
    ) -> Any:
        group = self.instances[step_id][0]
        try:
            if evaluate and isinstance(text, str):
                return self.renderer.evaluate(text, context)
            return self.renderer.render_value(text, context)
        except TemplateError as exc:
            name = str(field[0]) + "".join(f"[{p}]" for p in field[1:])
            raise fail_at(
                f"step '{step_id}', field '{name}': {exc}", self.source, ("steps", group, *field)
            ) from exc

    # ------------------------------------------------------------------ whole step

    def _render_step(self, step_id: str) -> Step:
        group, item, key = self.instances[step_id]
        step_spec = self.spec.steps[group]
        outputs = self.outputs_of(step_id)
        path_context = self._path_context(step_id)
        inputs: list[str] = []
        fields: dict[str, tuple[PathKey, ...]] = {}
        for i, text in enumerate(step_spec.inputs):
            for path in self._paths(step_id, ("inputs", i), text, path_context, output=False):
                inputs.append(path)
                fields.setdefault(path, ("inputs", i))
        needs = [
            str(self._render(step_id, ("needs", i), text, path_context))
            for i, text in enumerate(step_spec.needs)
        ]
        render_kind = {"shell": self._shell, "llm": self._llm, "template": self._template}[
            step_spec.kind
        ]
        definition, provider = render_kind(step_id, step_spec, inputs, outputs, path_context)
        for path in outputs:
            fields.setdefault(path, self.fields[(step_id, path)])
        if "prompt_file" in definition:
            fields.setdefault(definition["prompt_file"], ("prompt_file",))
        return Step(
            id=step_id,
            group=group,
            kind=step_spec.kind,
            spec=step_spec,
            inputs=tuple(dict.fromkeys(inputs)),
            outputs=tuple(outputs),
            needs=tuple(needs),
            definition=definition,
            item=item,
            item_key=key,
            provider=provider,
            fields=fields,
        )

    def _field_context(
        self, path_context: Mapping[str, Any], inputs: list[str], outputs: list[str]
    ) -> dict[str, Any]:
        return {**path_context, "inputs": inputs, "outputs": outputs, "read": Reader(inputs, None)}

    def _shell(
        self,
        step_id: str,
        spec: Any,
        inputs: list[str],
        outputs: list[str],
        path_context: Mapping[str, Any],
    ) -> tuple[dict[str, Any], None]:
        context = self._field_context(path_context, inputs, outputs)
        cwd = None
        if spec.cwd is not None:
            rendered = self._render(step_id, ("cwd",), spec.cwd, path_context)
            cwd = self._path(step_id, ("cwd",), rendered, output=False)
        definition = {
            "run": self._render(step_id, ("run",), spec.run, context),
            "env": self._render(step_id, ("env",), spec.env, context),
            "cwd": cwd,
        }
        return definition, None

    def _template(
        self,
        step_id: str,
        spec: Any,
        inputs: list[str],
        outputs: list[str],
        path_context: Mapping[str, Any],
    ) -> tuple[dict[str, Any], None]:
        self._require_one_output(step_id, outputs)
        context = self._field_context(path_context, inputs, outputs)
        text = self._render(step_id, ("template",), spec.template, context)
        file = self._as_input_file(step_id, ("template",), text, inputs)
        if file is None:
            return {"template": text}, None
        return {
            "template_file": file,
            **self._file_definition(step_id, ("template",), "template", file, context),
        }, None

    def _llm(
        self,
        step_id: str,
        spec: Any,
        inputs: list[str],
        outputs: list[str],
        path_context: Mapping[str, Any],
    ) -> tuple[dict[str, Any], str]:
        if spec.extract == "files":
            if not outputs or not all(out.endswith("/") for out in outputs):
                raise fail_at(
                    f"step '{step_id}': 'extract: files' writes into folders; declare outputs"
                    " ending in '/'",
                    self.source,
                    ("steps", self.instances[step_id][0]),
                    key=True,
                )
        else:
            self._require_one_output(step_id, outputs)
        if spec.prompt_file is not None:
            rendered = self._render(step_id, ("prompt_file",), spec.prompt_file, path_context)
            prompt_file = self._path(step_id, ("prompt_file",), rendered, output=False)
            if prompt_file not in inputs:
                inputs.append(prompt_file)
        context = self._field_context(path_context, inputs, outputs)
        definition: dict[str, Any] = {
            "system": self._render(step_id, ("system",), spec.system, context),
            "model": self._render(step_id, ("model",), spec.model, context),
            "options": self._render(step_id, ("options",), spec.options, context),
            "extract": spec.extract,
            "schema": spec.json_schema,
        }
        if spec.prompt is not None:
            definition["prompt"] = self._render(step_id, ("prompt",), spec.prompt, context)
        elif spec.messages is not None:
            messages = [m.model_dump() for m in spec.messages]
            definition["messages"] = self._render(step_id, ("messages",), messages, context)
        else:
            definition["prompt_file"] = prompt_file
            definition.update(
                self._file_definition(step_id, ("prompt_file",), "prompt", prompt_file, context)
            )
        if spec.json_schema is not None:
            self._check_schema(step_id, spec.json_schema)
        provider = self._provider_of(step_id, spec, context)
        self._check_model(step_id, provider, definition["model"])
        inputs.extend(self._recorded_reply(step_id, provider))
        return definition, provider

    # ------------------------------------------------------------------ helpers

    def _require_one_output(self, step_id: str, outputs: list[str]) -> None:
        if len(outputs) != 1 or outputs[0].endswith("/"):
            raise fail_at(
                f"step '{step_id}' writes one file: declare one 'output' that is not a folder",
                self.source,
                ("steps", self.instances[step_id][0]),
                key=True,
            )

    def _as_input_file(
        self, step_id: str, field: tuple[PathKey, ...], text: str, inputs: list[str]
    ) -> str | None:
        """The template's path when the text names one of the inputs, else None (inline)."""
        try:
            normal = normalize(text)
        except PathRefused:
            return None
        if any(is_within(normal, declared) for declared in inputs):
            return normal
        if "\n" not in text and (self.workdir / normal).is_file():
            group = self.instances[step_id][0]
            raise fail_at(
                f"step '{step_id}': template file '{normal}' is not among the inputs; add it there",
                self.source,
                ("steps", group, *field),
            )
        return None

    def _file_definition(
        self,
        step_id: str,
        field: tuple[PathKey, ...],
        name: str,
        path: str,
        context: Mapping[str, Any],
    ) -> dict[str, Any]:
        """How a template file enters the definition: rendered when it is a source file.

        A file another step writes is rendered only when its step runs; its content enters the
        key through the input hashes, and the vars and item it may use enter here instead.
        """
        if self._generated(path):
            _, item, key = self.instances[step_id]
            return {name: None, "vars": self.base["vars"], "item": item, "key": key}
        return {name: self._render_file(step_id, field, path, context)}

    def _generated(self, path: str) -> bool:
        if self.all_outputs is None:
            self.all_outputs = []
            for step_id in self.instances:
                try:
                    self.all_outputs.extend(self.outputs_of(step_id))
                except PipelineError:
                    continue
        return any(is_within(path, output) for output in self.all_outputs)

    def _render_file(
        self, step_id: str, field: tuple[PathKey, ...], path: str, context: Mapping[str, Any]
    ) -> str | None:
        """A source template file rendered for planning, or None while it does not exist."""
        try:
            text = (self.workdir / path).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise fail_at(
                f"step '{step_id}': cannot read '{path}': {exc}",
                self.source,
                ("steps", self.instances[step_id][0], *field),
            ) from exc
        try:
            return self.renderer.render(text, context)
        except OrchError as exc:
            raise fail_at(
                f"step '{step_id}', in {path}: {exc}",
                self.source,
                ("steps", self.instances[step_id][0], *field),
            ) from exc

    def _check_schema(self, step_id: str, schema: dict[str, Any]) -> None:
        from jsonschema import exceptions, validators

        try:
            validators.validator_for(schema).check_schema(schema)
        except exceptions.SchemaError as exc:
            raise fail_at(
                f"step '{step_id}': 'schema' is not a valid JSON Schema: {exc.message}",
                self.source,
                ("steps", self.instances[step_id][0], "schema"),
            ) from exc

    def _check_model(self, step_id: str, provider: str, model: str | None) -> None:
        config = self.providers[provider]
        if model or config.model or config.kind == "fake":
            return
        raise fail_at(
            f"step '{step_id}' has no model: set 'model' on the step or on provider '{provider}'",
            self.source,
            ("steps", self.instances[step_id][0]),
            key=True,
        )

    def _recorded_reply(self, step_id: str, provider: str) -> list[str]:
        """A fake provider's reply file for the step: an input, so editing it reruns the step."""
        from .providers.fake import reply_candidates

        group = self.instances[step_id][0]
        for path in reply_candidates(self.providers[provider], step_id, group):
            if (self.workdir / path).is_file() and not escapes_through_symlink(self.workdir, path):
                return [path]
        return []

    def _provider_of(self, step_id: str, spec: LlmStep, context: Mapping[str, Any]) -> str:
        where: tuple[PathKey, ...] = ("steps", self.instances[step_id][0])
        if spec.provider is None:
            if self.default_provider is not None:
                return self.default_provider
            reason = (
                "no providers are declared"
                if not self.providers
                else ("several providers are declared and no 'default_provider' chooses one")
            )
            raise fail_at(
                f"step '{step_id}' needs a provider: {reason}", self.source, where, key=True
            )
        name = str(self._render(step_id, ("provider",), spec.provider, context))
        if name not in self.providers:
            raise fail_at(
                f"step '{step_id}': unknown provider '{name}'{suggest(name, self.providers)}",
                self.source,
                (*where, "provider"),
            )
        return name


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)
