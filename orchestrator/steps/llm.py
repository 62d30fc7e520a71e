"""LLM steps: render the request with real `read()` contents, call the provider, extract the
outputs from the reply and write them; `logs/<step>.log` holds the request and the reply."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.core.errors import StepFailed
from orchestrator.core.paths import is_within
from orchestrator.language.source import PathKey
from orchestrator.language.spec import StepBase, require_one_key
from orchestrator.steps import Kind, Planning, extract
from orchestrator.steps.base import Outcome, StepContext
from orchestrator.steps.conversation import Conversation, Route, repaired
from orchestrator.store.filestore import confined_tree, confined_unlink

if TYPE_CHECKING:
    from orchestrator.language.pipeline import Step
    from orchestrator.language.spec import Provider
    from orchestrator.providers import ChatRequest, Reply


class Message(BaseModel):
    """One chat message of an llm step."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["system", "user", "assistant"]
    content: str
    cache: bool = Field(
        False,
        description="Anthropic: cache the prompt up to and including this message"
        " (cache_control); not part of the key.",
    )


class LlmStep(StepBase):
    """Calls a language model."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": ["prompt"]},
                {"required": ["prompt_file"]},
                {"required": ["messages"]},
            ]
        }
    )
    KEYS: ClassVar[tuple[str, ...]] = ("prompt", "prompt_file", "messages")

    kind: Literal["llm"] = "llm"
    prompt: str | None = None
    prompt_file: str | None = Field(None, description="A Jinja template file for the prompt.")
    messages: list[Message] | None = None
    system: str | None = None
    cache_system: bool = Field(
        False, description="Anthropic: cache the system prompt (cache_control); not in the key."
    )
    provider: str | list[str] | None = Field(
        None,
        description="A provider's name, or several: the first, then the others in order when"
        " it is unavailable (breaker open, server errors or rate limits after retries, no"
        " connection).",
    )
    model: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    extract: Literal["text", "code", "files", "json"] = "text"
    json_schema: dict[str, Any] | None = Field(
        None, alias="schema", description="JSON Schema the reply must satisfy (extract: json)."
    )
    on_truncated: Literal["fail", "continue"] = Field(
        "fail",
        description="A reply cut off by a token limit fails the step, or is continued by up to"
        " 4 more calls whose parts are joined.",
    )
    repair: int = Field(
        1,
        ge=0,
        le=5,
        description="More calls that show the model why its reply gave no outputs (extract"
        " failed) and ask for a corrected one.",
    )

    @model_validator(mode="after")
    def _one_prompt_and_schema_with_json(self) -> LlmStep:
        require_one_key(self)
        if self.json_schema is not None and self.extract != "json":
            raise ValueError("'schema' is only used with 'extract: json'")
        if self.provider == []:
            raise ValueError("'provider' lists no provider")
        return self


def plan(step: Planning) -> tuple[dict[str, Any], str]:
    """The prompt, system and messages are content; provider, model and options structure."""
    spec = step.spec
    assert isinstance(spec, LlmStep)
    _check_outputs(step, spec)
    model = step.structure(("model",), spec.model)
    definition: dict[str, Any] = {
        "model": None if model is None else str(model),
        "options": step.structure(("options",), spec.options),
        "extract": spec.extract,
        "schema": spec.json_schema,
        "system": step.content(("system",), spec.system),
    }
    if spec.on_truncated != "fail":  # joined parts are another output than one reply
        definition["on_truncated"] = spec.on_truncated
    if spec.prompt_file is not None:
        path = step.input_file(("prompt_file",), spec.prompt_file)
        step.content_file(("prompt_file",), path)
        definition["prompt_file"] = path
    elif spec.messages is not None:
        messages = [m.model_dump(exclude={"cache"}) for m in spec.messages]
        definition["messages"] = step.content(("messages",), messages)
    else:
        definition["prompt"] = step.content(("prompt",), spec.prompt)
    if spec.json_schema is not None:
        _check_schema(step, spec.json_schema)
    provider, *fallbacks = _providers_of(step, spec)
    model, options = definition.pop("model"), definition.pop("options")
    _check_model(step, provider, model)
    for name in (provider, *fallbacks):
        _check_options(step, step.providers[name], options)
    definition["provider"] = _identity(step.providers[provider], model, options)
    if fallbacks:  # each with its own model; the step's options apply to all
        for name in fallbacks:
            _check_model(step, name, None)
        definition["fallbacks"] = [
            _identity(step.providers[name], None, options) for name in fallbacks
        ]
    step.fallbacks.extend(fallbacks)
    for name in (provider, *fallbacks):
        step.extra_inputs.extend(_recorded_reply(step, name))
    return definition, provider


def _identity(provider: Provider, model: str | None, options: dict[str, Any]) -> dict[str, Any]:
    """What of the provider enters the key and the request: its kind, the model, and the options
    (the kind's defaults, then the provider's, then the step's); never its name, address, key,
    timeouts or retry settings."""
    from orchestrator.language.options import moved
    from orchestrator.language.spec import DEFAULT_OPTIONS

    merged = {**DEFAULT_OPTIONS.get(provider.kind, {}), **provider.options, **options}
    identity = {"kind": provider.kind, "model": model or provider.model, "options": merged}
    sent = moved(provider.kind, merged)
    if sent:
        identity["sent_as"] = sent
    return identity


def _check_options(step: Planning, provider: Provider, options: Any) -> None:
    """Refuse a step option the provider's kind cannot honour, at the option."""
    from orchestrator.language.options import refusals

    if provider.kind == "fake" or not isinstance(options, dict):
        return
    merged = {**provider.options, **options}
    for refusal in refusals(provider.kind, merged):
        field = ("options", refusal.option) if refusal.option in options else ("options",)
        raise step.fail(f"{step.label}: {refusal}", field)


def _check_outputs(step: Planning, spec: LlmStep) -> None:
    if spec.extract != "files":
        step.require_one_output()
    elif not step.outputs or not all(out.endswith("/") for out in step.outputs):
        raise step.fail(
            f"{step.label}: 'extract: files' writes into folders; declare outputs ending in '/'"
        )


def _check_schema(step: Planning, schema: dict[str, Any]) -> None:
    from jsonschema import exceptions, validators

    try:
        validators.validator_for(schema).check_schema(schema)
    except exceptions.SchemaError as exc:
        raise step.fail(
            f"{step.label}: 'schema' is not a valid JSON Schema: {exc.message}", ("schema",)
        ) from exc


def _check_model(step: Planning, provider: str, model: str | None) -> None:
    config = step.providers[provider]
    if model or config.model or config.kind == "fake":
        return
    raise step.fail(
        f"{step.label} has no model: set 'model' on the step or on provider '{provider}'"
    )


def _recorded_reply(step: Planning, provider: str) -> list[str]:
    """A fake provider's reply file for the step: an input, so editing it reruns the step."""
    from orchestrator.core.paths import escape
    from orchestrator.providers.fake import reply_candidates

    for path in reply_candidates(step.providers[provider], step.step_id, step.group):
        if step.is_file(path):
            return [escape(path)]
    return []


def _providers_of(step: Planning, spec: LlmStep) -> list[str]:
    """The step's provider, then its fallbacks (`provider: [primary, secondary]`)."""
    from orchestrator.core.suggest import suggest

    if spec.provider is None:
        if step.default_provider is not None:
            return [step.default_provider]
        reason = (
            "no providers are declared"
            if not step.providers
            else "several providers are declared and no 'default_provider' chooses one"
        )
        raise step.fail(f"{step.label} needs a provider: {reason}")
    listed = isinstance(spec.provider, list)
    written = spec.provider if isinstance(spec.provider, list) else [spec.provider]
    names: list[str] = []
    for index, text in enumerate(written):
        field: tuple[PathKey, ...] = ("provider", index) if listed else ("provider",)
        name = str(step.structure(field, text))
        if name not in step.providers:
            raise step.fail(f"unknown provider '{name}'{suggest(name, step.providers)}", field)
        if name in names:
            raise step.fail(f"{step.label}: provider '{name}' is listed twice", field)
        names.append(name)
    return names


async def execute(ctx: StepContext) -> Outcome:
    """Call the model (retries aside, and follow-ups for a reply cut off or unusable) and write
    what the extract mode takes from the reply."""
    from orchestrator.providers import Call

    assert ctx.providers is not None and ctx.step.provider is not None
    spec = ctx.step.spec
    assert isinstance(spec, LlmStep)
    request = _request(ctx)
    log = _Log(ctx.log)
    await log.request(ctx.step.provider, request)

    def emit(type: str, level: str = "info", **data: Any) -> None:
        if type == "llm.retry":
            log.note(f"attempt {data['attempt']} failed ({data['kind']}): {data['message']}")
        elif type == "llm.followup":
            log.note(f"{data['reason']}: {data['message']}; asking again")
        elif type == "llm.fallback":
            log.note(f"{data['provider']} unavailable ({data['message']}); asking {data['to']}")
        elif type.startswith("llm.batch."):
            log.note(_batch_note(type, data))
        ctx.emit(type, level, **data)

    call = Call(ctx.step.id, ctx.step.group, emit)
    talk = Conversation(_routes(ctx), call, log.reply, budget=ctx.providers().budget)
    try:
        contents = await _usable_contents(ctx, talk, request, spec)
        written = await ctx.write_all(contents)
    except StepFailed as failure:
        log.note(f"failed ({failure.kind}): {failure.message}")
        failure.meta.update(_usage(talk))  # what was answered is paid all the same
        raise
    if ctx.step.definition["extract"] == "files":
        _remove_stale(ctx, set(contents))
    return Outcome(written=written, meta=_usage(talk))


async def _usable_contents(
    ctx: StepContext, talk: Conversation, request: ChatRequest, spec: LlmStep
) -> dict[str, str]:
    """The outputs the reply gives; up to `repair` more calls show the model why its reply
    did not give them."""
    text = await talk.text(request, spec.on_truncated)
    while True:
        try:
            return _contents(ctx, text)
        except StepFailed as failure:
            if failure.kind != "extract" or talk.followups.get("repair", 0) >= spec.repair:
                raise
            talk.follow_up("repair", failure.message)
            text = await talk.text(repaired(request, text, failure.message), spec.on_truncated)


class _Rendering(Protocol):
    """What building a request needs: the step, and a way to render its content."""

    @property
    def step(self) -> Step: ...

    def render(self, value: Any) -> Any: ...

    def render_file(self, path: str) -> str: ...


@dataclass(frozen=True)
class _AsWritten:
    """Content left as written: what a request looks like before its inputs exist."""

    step: Step
    workdir: Path

    def render(self, value: Any) -> Any:
        return value

    def render_file(self, path: str) -> str:
        try:
            return (self.workdir / path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return ""


def draft(ctx: StepContext) -> tuple[ChatRequest, bool]:
    """The request the step would send with its inputs as they are now, and whether it could
    be rendered; when it could not (an input is not there yet), its templates as written."""
    try:
        return _request(ctx), True
    except StepFailed:
        return _request(_AsWritten(ctx.step, ctx.workdir)), False


def _request(ctx: _Rendering) -> ChatRequest:
    from orchestrator.providers import ChatRequest

    spec = ctx.step.spec
    assert isinstance(spec, LlmStep)
    definition = ctx.step.definition
    if "messages" in definition:
        rendered = ctx.render(definition["messages"])
        messages = tuple({"role": m["role"], "content": str(m["content"])} for m in rendered)
    else:
        if "prompt" in definition:
            prompt = ctx.render(definition["prompt"])
        else:
            prompt = ctx.render_file(definition["prompt_file"])
        messages = ({"role": "user", "content": str(prompt)},)
    system = ctx.render(definition["system"])
    provider = definition["provider"]
    schema = spec.json_schema if spec.extract == "json" else None
    marked = [i for i, message in enumerate(spec.messages or ()) if message.cache]
    return ChatRequest(
        messages,
        provider["model"],
        provider["options"],
        system,
        timeout_s=spec.timeout_s,
        schema=schema,
        cache_points=frozenset(marked),
        cache_system=spec.cache_system,
    )


def _contents(ctx: StepContext, text: str) -> dict[str, str]:
    """Output path → content, from the reply as the step's extract mode reads it."""
    spec = ctx.step.spec
    assert isinstance(spec, LlmStep)
    outputs = ctx.step.outputs
    if spec.extract == "files":
        return extract.files(text, outputs, ctx.others)
    if spec.extract == "code":
        return {outputs[0]: extract.first_code_block(text)}
    if spec.extract == "json":
        return {outputs[0]: extract.json_document(text, spec.json_schema)}
    return {outputs[0]: text}


def _remove_stale(ctx: StepContext, written: set[str]) -> None:
    """Make the output folders hold exactly what the reply named (and other steps' outputs);
    never through a symlink leading outside the workdir (WriteRefused)."""
    for folder in ctx.step.outputs:
        _, files = confined_tree(ctx.workdir, folder)
        for relative in files:
            if relative in written or any(is_within(relative, other) for other in ctx.others):
                continue
            if confined_unlink(ctx.workdir, relative):
                ctx.emit("file.removed", path=relative, reason="not in the reply")


def _routes(ctx: StepContext) -> list[Route]:
    """The step's provider, then its fallbacks, each with the model and options planned."""
    assert ctx.providers is not None and ctx.step.provider is not None
    providers = ctx.providers()
    names = (ctx.step.provider, *ctx.step.fallbacks)
    identities = (ctx.step.definition["provider"], *ctx.step.definition.get("fallbacks", ()))
    return [
        Route(
            name,
            providers.get(name),
            identity["model"],
            identity["options"],
            providers.settings(name).price,
        )
        for name, identity in zip(names, identities, strict=True)
    ]


def _batch_note(type: str, data: Mapping[str, Any]) -> str:
    """A line of the step's log about its batch."""
    if type == "llm.batch.submitted":
        return f"submitted in batch {data['batch_id']} of {data['requests']} requests"
    if type == "llm.batch.resumed":
        return f"waiting again on batch {data['batch_id']}, submitted {data['submitted']}"
    if type == "llm.batch.ended":
        return f"batch {data['batch_id']} ended ({data['status']})"
    if type == "llm.batch.ignored":
        return f"batch record {data['record']} ignored: {data['reason']}"
    return str(data.get("message", type))


def _usage(talk: Conversation) -> dict[str, Any]:
    """What the manifest and the cache keep about the calls: who answered, and what they cost."""
    route = talk.route
    meta: dict[str, Any] = {"provider": route.name, "model": route.model, "calls": talk.calls}
    if talk.last is not None:
        meta["finish_reason"] = talk.last.finish_reason
    if talk.usage is not None:
        meta["tokens"] = talk.usage.as_dict()
    if talk.cost is not None:
        meta["cost"] = round(talk.cost, 10)
    if talk.batch is not None:
        meta["batch"] = talk.batch
    return meta


class _Log:
    """The step's log: the rendered request, notes on failed attempts, then the reply."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def request(self, provider: str, request: ChatRequest) -> None:
        lines = [f"# request: provider {provider}, model {request.model}"]
        if request.options:
            lines.append(f"options: {_inline(request.options)}")
        system = request.system_text()
        if system:
            lines += ["", "## system", system]
        for message in request.messages:
            if message["role"] != "system":
                lines += ["", f"## {message['role']}", message["content"]]
        await self._write("\n".join(lines) + "\n", "w")

    def note(self, text: str) -> None:
        self._put(f"\n# {text}\n", "a")

    async def reply(self, reply: Reply) -> None:
        usage = reply.usage
        head = (
            f"# reply: finish {reply.finish_reason}, tokens in {usage.input}"
            f" (cached {usage.cached}), out {usage.output}, attempts {reply.attempts}"
        )
        await self._write(f"\n{head}\n\n{reply.text}\n", "a")

    async def _write(self, text: str, mode: str) -> None:
        """Off the event loop: creating files waits on the disk's journal."""
        await asyncio.to_thread(self._put, text, mode)

    def _put(self, text: str, mode: str) -> None:
        with self.path.open(mode, encoding="utf-8") as file:
            file.write(text)


def _inline(options: Mapping[str, Any]) -> str:
    import json

    return json.dumps(dict(options), sort_keys=True, ensure_ascii=False)


KIND = Kind(LlmStep, plan=plan, execute=execute)
