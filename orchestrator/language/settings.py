"""Pipeline-wide values: the workdir, the environment after dotenv, vars and providers.

Precedence for the environment: real environment variables, then dotenv files (a later file
wins over an earlier one). Vars render in file order, each seeing the vars before it and `env`;
a `vars:` list merges values files and mappings in order; `--set` values (already typed by YAML)
replace vars, or values inside them (`train.lr`), as given. A var or provider option whose
whole text is one ``{{ expression }}`` keeps the expression's type (`"{{ n }}"` with n = 5 is 5).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator.core.errors import PipelineError, TemplateError
from orchestrator.core.paths import PathRefused, normalize
from orchestrator.core.suggest import suggest
from orchestrator.language import values
from orchestrator.language.source import PathKey, SourceDocument
from orchestrator.language.spec import RESERVED_NAMES, Pipeline, Provider
from orchestrator.language.templating import Renderer, describe_jinja_error, forbidden_read


def fail_at(
    message: str, source: SourceDocument, path: tuple[PathKey, ...], key: bool = False
) -> PipelineError:
    return PipelineError.at(message, source.locate(path, key=key))


def workdir(file: Path, spec: Pipeline, source: SourceDocument) -> Path:
    workdir = (file.parent / (spec.workdir or ".")).resolve()
    if not workdir.is_dir():
        raise fail_at(f"workdir '{spec.workdir}' is not a folder ({workdir})", source, ("workdir",))
    return workdir


def environment(
    workdir: Path, spec: Pipeline, source: SourceDocument, environ: dict[str, str]
) -> dict[str, str]:
    """The environment: dotenv files (later ones win) under the real environment."""
    from dotenv import dotenv_values

    loaded: dict[str, str] = {}
    for index, name in enumerate(spec.dotenv):
        try:
            path = workdir / normalize(name)
        except PathRefused as exc:
            raise fail_at(f"dotenv: {exc}", source, ("dotenv", index)) from exc
        if path.is_file():
            values = dotenv_values(path)
            loaded.update({k: v for k, v in values.items() if v is not None})
    return {**loaded, **environ}


def render_vars(
    spec: Pipeline,
    source: SourceDocument,
    renderer: Renderer,
    env: Mapping[str, str],
    overrides: Mapping[str, Any],
    workdir: Path,
) -> dict[str, Any]:
    """Vars in file order, each seeing the ones before it; `--set` values replace them as given.

    `vars` is a mapping, or a list of values files and mappings merged in order (see
    `values`). A var that is one ``{{ expression }}`` keeps the expression's type. A dotted
    `--set a.b` replaces a value inside a var, which must have it.
    """
    variables: dict[str, Any] = {}
    listed = isinstance(spec.vars, list)
    entries = spec.vars if isinstance(spec.vars, list) else [spec.vars]
    for index, entry in enumerate(entries):
        where: tuple[PathKey, ...] = ("vars", index) if listed else ("vars",)
        if isinstance(entry, str):
            names = _merge_file(variables, entry, workdir, source, where)
        else:
            names = _render_mapping(variables, entry, source, renderer, env, overrides, where)
        _apply_overrides(variables, names, overrides, source.file)
    for name, value in overrides.items():
        if name.split(".")[0] in RESERVED_NAMES:
            raise PipelineError.at(f"--set {name}: '{name}' is a reserved name", None, source.file)
        if "." in name:
            values.set_path(variables, name, value, source.file)
        else:
            variables.setdefault(name, value)
    return variables


def _merge_file(
    variables: dict[str, Any],
    name: str,
    workdir: Path,
    source: SourceDocument,
    where: tuple[PathKey, ...],
) -> list[str]:
    """Merge a values file into the vars; the names it sets."""
    try:
        path = workdir / normalize(name)
    except PathRefused as exc:
        raise fail_at(f"values file: {exc}", source, where) from exc
    loaded = values.read_values(path, name, source.locate(where))
    for key, value in loaded.items():
        variables[key] = values.merge(variables.get(key), value)
    return list(loaded)


def _render_mapping(
    variables: dict[str, Any],
    entry: Mapping[str, Any],
    source: SourceDocument,
    renderer: Renderer,
    env: Mapping[str, str],
    overrides: Mapping[str, Any],
    where: tuple[PathKey, ...],
) -> list[str]:
    """Render a mapping of vars in order and merge each into the vars; the names it sets."""
    for name, value in entry.items():
        if name in RESERVED_NAMES:
            raise fail_at(f"var '{name}' uses a reserved name", source, (*where, name), key=True)
        if name in overrides:
            variables[name] = overrides[name]
            continue
        context = {**variables, "vars": variables, "env": env, "read": forbidden_read("vars")}
        try:
            rendered = plain_data(renderer.evaluate_value(value, context))
        except TemplateError as exc:
            raise fail_at(f"var '{name}': {exc}", source, (*where, name)) from exc
        variables[name] = values.merge(variables.get(name), rendered)
    return list(entry)


def _apply_overrides(
    variables: dict[str, Any], names: list[str], overrides: Mapping[str, Any], file: Path
) -> None:
    """Apply the `--set` values on the vars just set, so that later vars see them; a dotted
    one waits until its key exists (it must by the end)."""
    for dotted, value in overrides.items():
        if dotted.split(".")[0] not in names:
            continue
        if "." not in dotted:
            variables[dotted] = value
        elif values.has_path(variables, dotted):
            values.set_path(variables, dotted, value, file)


def render_providers(
    spec: Pipeline, source: SourceDocument, renderer: Renderer, base: Mapping[str, Any]
) -> dict[str, Provider]:
    providers: dict[str, Provider] = {}
    context = {**base, "read": forbidden_read("providers")}
    for name, provider in spec.providers.items():
        fields = provider.model_dump(exclude_defaults=True, exclude={"kind"}, by_alias=True)
        try:
            rendered = _render_provider(renderer, fields, context)
        except TemplateError as exc:
            raise fail_at(f"provider '{name}': {exc}", source, ("providers", name)) from exc
        providers[name] = type(provider).model_validate({"kind": provider.kind, **rendered})
    return providers


def _render_provider(
    renderer: Renderer, fields: Mapping[str, Any], context: Mapping[str, Any]
) -> dict[str, Any]:
    """A provider's fields rendered: `options` keep the types of lone expressions (so that
    `max_tokens: "{{ n }}"` sends a number); the other fields are text."""
    rendered = {k: renderer.render_value(v, context) for k, v in fields.items() if k != "options"}
    if "options" in fields:
        rendered["options"] = plain_data(renderer.evaluate_value(fields["options"], context))
    return rendered


def plain_data(value: Any) -> Any:
    """An evaluated value as plain data (tuples become lists, copies of mappings), since values
    enter step keys and saved plans; an object that is not data is a TemplateError."""
    from jinja2 import Undefined

    if isinstance(value, Mapping):
        return {_plain_key(key): plain_data(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain_data(item) for item in value]
    if value is None or isinstance(value, bool | int | float | datetime.date):
        return value  # YAML gives dates; they stay as the file wrote them
    if isinstance(value, str):
        return str(value)  # a Markup is a str too
    if isinstance(value, Undefined):
        raise TemplateError(describe_jinja_error(Exception(value._undefined_message)))
    raise TemplateError(
        f"the expression gives a {type(value).__name__}; a value must be a string, number,"
        " boolean, list or mapping"
    )


def _plain_key(key: Any) -> Any:
    return key if isinstance(key, str | int | float | bool) else str(key)


def default_provider(
    spec: Pipeline,
    source: SourceDocument,
    renderer: Renderer,
    base: Mapping[str, Any],
    providers: Mapping[str, Provider],
    override: str | None,
) -> str | None:
    """`--provider` (or ORCH_PROVIDER), else the rendered `default_provider`, else the only
    provider declared. A pipeline that declares no providers ignores the override."""
    if override is not None and providers:
        if override not in providers:
            raise PipelineError.at(
                f"--provider (or ORCH_PROVIDER) '{override}': no such provider"
                f"{suggest(override, providers)}",
                None,
                source.file,
            )
        return override
    if spec.default_provider is None:
        return next(iter(providers)) if len(providers) == 1 else None
    try:
        name = renderer.render(spec.default_provider, {**base, "read": forbidden_read("providers")})
    except TemplateError as exc:
        raise fail_at(f"default_provider: {exc}", source, ("default_provider",)) from exc
    if name not in providers:
        raise fail_at(
            f"default_provider '{name}' is not among the providers{suggest(name, providers)}",
            source,
            ("default_provider",),
        )
    return name
