"""A pipeline file → a validated `Pipeline` model, every problem reported at its `file:line:col`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from orchestrator.core.errors import Diagnostic, PipelineError
from orchestrator.core.suggest import suggest
from orchestrator.language.source import PathKey, SourceDocument, parse, position_in, to_plain

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

    from orchestrator.language.spec import Language, Pipeline

_STEP_TAG_INDEX = 2
_NAME_RULES = {
    "vars": "use letters, digits and '_', not starting with a digit",
    "steps": "use letters, digits, '_', '.' and '-', starting with a letter, digit or '_'",
    "providers": "use letters, digits, '_', '.' and '-', starting with a letter, digit or '_'",
}  # pydantic puts the union tag after ("steps", name) or ("providers", name)


def read_source(file: Path, what: str = "pipeline") -> SourceDocument:
    """Read and parse a YAML file (a pipeline, or `what` it is)."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise PipelineError.at(f"no such {what} file", None, file) from exc
    except UnicodeDecodeError as exc:
        before = exc.object[: exc.start].decode("utf-8")
        byte = exc.object[exc.start]
        raise PipelineError.at(
            f"the {what} is not UTF-8 text: byte 0x{byte:02x} ({exc.reason})",
            position_in(file, before, len(before)),
        ) from exc
    except OSError as exc:
        raise PipelineError.at(f"cannot read the {what}: {exc}", None, file) from exc
    return parse(file, text)


def validate(source: SourceDocument, language: Language) -> Pipeline:
    """Check a parsed document against the language and return its model."""
    from pydantic import ValidationError

    data = to_plain(source)
    _check_shape(source, data, language)
    try:
        return language.pipeline.model_validate(data)
    except ValidationError as exc:
        raise PipelineError(_diagnostics(source, data, exc, language)) from exc


def _check_shape(source: SourceDocument, data: Any, language: Language) -> None:
    """The checks whose messages pydantic cannot phrase well: document, version, step kinds."""
    if data is None:
        raise PipelineError.at(
            "empty pipeline file: expected a mapping with 'version: 1' and 'steps'",
            source.locate(()),
        )
    if not isinstance(data, dict):
        raise PipelineError.at(
            f"a pipeline is a mapping of keys ('version', 'steps', ...), not a {_type_name(data)}",
            source.locate(()),
        )
    if "version" not in data:
        raise PipelineError.at("missing 'version': add 'version: 1' at the top", source.locate(()))
    version = data["version"]
    if type(version) is not int or version != 1:
        raise PipelineError.at(
            f"unsupported version {version!r}: this orch reads version 1",
            source.locate(("version",)),
        )
    steps = data.get("steps")
    if steps == {}:
        raise PipelineError.at("the pipeline has no steps", source.locate(("steps",), key=True))
    if isinstance(steps, dict):
        problems = [_kind_problem(source, name, raw, language) for name, raw in steps.items()]
        found = [p for p in problems if p is not None]
        if found:
            raise PipelineError(found)


def _kind_problem(
    source: SourceDocument, name: Any, raw: Any, language: Language
) -> Diagnostic | None:
    where = ("steps", name)
    if not isinstance(raw, dict):
        return Diagnostic(
            f"step '{name}' must be a mapping of fields, not a {_type_name(raw)}:"
            f" {_kind_hint(language)}",
            source.locate(where),
        )
    if "kind" in raw:
        kind = raw["kind"]
        if kind in language.kinds:
            return None
        return Diagnostic(
            f"step '{name}': unknown kind {kind!r}; expected {_or(language.kinds)}"
            + suggest(str(kind), language.kinds),
            source.locate((*where, "kind")),
        )
    kinds = {kind: [k for k in keys if k in raw] for kind, keys in language.keys().items()}
    used = {kind: keys for kind, keys in kinds.items() if keys}
    if len(used) == 1:
        return None
    if not used:
        all_keys = [k for keys in language.keys().values() for k in keys]
        hints = (suggest(str(k), all_keys) for k in raw)
        hint = next((h for h in hints if h), "")
        return Diagnostic(
            f"step '{name}' has no kind: {_kind_hint(language)}{hint}",
            source.locate(where, key=True),
        )
    named = " and ".join(f"'{keys[0]}' ({kind})" for kind, keys in used.items())
    return Diagnostic(
        f"step '{name}' has several kinds: {named}; keep one", source.locate(where, key=True)
    )


def _kind_hint(language: Language) -> str:
    """``give it 'run' (shell), 'prompt', 'prompt_file' or 'messages' (llm), or ...``"""
    named = [f"{_or([repr(k) for k in keys])} ({kind})" for kind, keys in language.keys().items()]
    if len(named) == 1:
        return f"give it {named[0]}"
    return f"give it {', '.join(named[:-1])}, or {named[-1]}"


def _or(words: Sequence[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def _type_name(value: Any) -> str:
    names = {
        dict: "mapping",
        list: "list",
        str: "string",
        int: "number",
        float: "number",
        bool: "boolean",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


# --------------------------------------------------------------------------- pydantic errors


def _diagnostics(
    source: SourceDocument, data: Any, exc: ValidationError, language: Language
) -> list[Diagnostic]:
    diagnostics = []
    for error in exc.errors(include_url=False):
        loc = _strip_tags(tuple(error["loc"]), language)
        diagnostics.append(_diagnostic(source, data, loc, error, language))
    return diagnostics


def _strip_tags(loc: tuple[PathKey, ...], language: Language) -> tuple[PathKey, ...]:
    from orchestrator.language.spec import PROVIDER_KINDS, VARS_TAGS

    if loc and loc[0] == "vars":
        return tuple(p for i, p in enumerate(loc) if p not in VARS_TAGS.get(i, ()))

    tags = {"steps": language.kinds, "providers": PROVIDER_KINDS}.get(
        str(loc[0]) if loc else "", ()
    )
    if len(loc) > _STEP_TAG_INDEX and loc[_STEP_TAG_INDEX] in tags:
        loc = loc[:_STEP_TAG_INDEX] + loc[_STEP_TAG_INDEX + 1 :]
    return _strip_input_form(loc)


def _strip_input_form(loc: tuple[PathKey, ...]) -> tuple[PathKey, ...]:
    """A step input's location without the tag saying how it is written (text or mapping)."""
    from orchestrator.language.spec import INPUT_FORMS

    if loc[:1] == ("steps",) and loc[2:3] == ("inputs",) and loc[4:5] and loc[4] in INPUT_FORMS:
        return loc[:4] + loc[5:]
    return loc


def _diagnostic(
    source: SourceDocument, data: Any, loc: tuple[PathKey, ...], error: Any, language: Language
) -> Diagnostic:
    kind = error["type"]
    if loc and loc[-1] == "[key]":
        name = loc[-2]
        return Diagnostic(
            f"invalid name {name!r} in {_describe(loc[:-2])}: {_NAME_RULES.get(str(loc[0]), '')}",
            source.locate(loc[:-1], key=True),
        )
    if kind == "extra_forbidden":
        field = str(loc[-1])
        allowed = _allowed_keys(data, loc[:-1], language)
        return Diagnostic(
            f"unknown key '{field}' in {_describe(loc[:-1])}{suggest(field, allowed)}",
            source.locate(loc, key=True),
        )
    if kind == "missing":
        return Diagnostic(
            f"{_describe(loc[:-1])} is missing the required key '{loc[-1]}'",
            source.locate(loc[:-1], key=True),
        )
    if kind in ("union_tag_invalid", "union_tag_not_found") and loc[0] == "providers":
        return _provider_kind_diagnostic(source, loc, error)
    message = str(error["msg"]).removeprefix("Value error, ")
    on_mapping = isinstance(_at(data, loc), dict)
    return Diagnostic(
        f"{_describe(loc)}: {message[:1].lower()}{message[1:]}",
        source.locate(loc, key=on_mapping),
    )


def _provider_kind_diagnostic(
    source: SourceDocument, loc: tuple[PathKey, ...], error: Any
) -> Diagnostic:
    from orchestrator.language.spec import PROVIDER_KINDS as kinds

    tag = error.get("ctx", {}).get("tag")
    if tag is None:
        return Diagnostic(
            f"{_describe(loc)} needs a 'kind': one of {', '.join(kinds)}",
            source.locate(loc, key=True),
        )
    return Diagnostic(
        f"{_describe(loc)}: unknown kind {tag!r}; expected one of {', '.join(kinds)}"
        + suggest(str(tag), kinds),
        source.locate((*loc, "kind")),
    )


def _describe(loc: tuple[PathKey, ...]) -> str:
    """A person's name for a place in the pipeline: ``step 'a', field 'inputs[0]'``."""
    if not loc:
        return "the pipeline"
    owners = {"steps": "step", "providers": "provider", "vars": "var"}
    if loc[0] in owners and len(loc) >= 2 and isinstance(loc[1], str):
        owner, rest = f"{owners[str(loc[0])]} '{loc[1]}'", loc[2:]
    else:
        owner, rest = "", loc
    if not rest:
        return owner
    field = str(rest[0]) + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in rest[1:])
    return f"{owner}, field '{field}'" if owner else f"field '{field}'"


def _allowed_keys(data: Any, loc: tuple[PathKey, ...], language: Language) -> list[str]:
    """The keys the model at `loc` accepts, for did-you-mean suggestions."""
    model = _model_at(data, loc, language)
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items()]


def _model_at(data: Any, loc: tuple[PathKey, ...], language: Language) -> type[BaseModel] | None:
    from orchestrator.language import spec

    providers: dict[str, type[BaseModel]] = {
        "openai": spec.OpenAIProvider,
        "azure": spec.AzureProvider,
        "anthropic": spec.AnthropicProvider,
        "ollama": spec.OllamaProvider,
        "fake": spec.FakeProvider,
    }
    raw = _at(data, loc[:2])
    match loc:
        case ():
            return language.pipeline
        case ("steps", _):
            return language.steps.get(language.infer_kind(raw) or "")
        case ("steps", _, str(field), int()):
            step = language.steps.get(language.infer_kind(raw) or "")
            return _item_model(step, field) if step is not None else None
        case ("providers", _):
            kind = raw.get("kind") if isinstance(raw, dict) else None
            return providers.get(kind) if isinstance(kind, str) else None
        case ("providers", _, "price"):
            return spec.Price
    return None


def _item_model(model: type[BaseModel], field: str) -> type[BaseModel] | None:
    """The model of the items of a list field (an llm step's `messages`), if they have one."""
    from pydantic import BaseModel

    info = model.model_fields.get(field)
    pending = [info.annotation] if info is not None else []
    while pending:
        kind = pending.pop()
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            return kind
        pending.extend(get_args(kind))
    return None


def _at(data: Any, loc: tuple[PathKey, ...]) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data
