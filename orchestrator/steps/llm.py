"""LLM steps: render the request with real `read()` contents, call the provider, extract the
outputs from the reply and write them; `logs/<step>.log` holds the request and the reply."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StepFailed
from ..paths import is_within
from . import extract
from .base import Outcome, StepContext

if TYPE_CHECKING:
    from ..providers import ChatRequest, Reply
    from ..spec import LlmStep


async def execute(ctx: StepContext) -> Outcome:
    """Call the model once (retries aside) and write what the extract mode takes from it."""
    from ..providers import Call

    assert ctx.providers is not None and ctx.step.provider is not None
    providers = ctx.providers()
    request = _request(ctx)
    log = _Log(ctx.log)
    await log.request(ctx.step.provider, request)

    def emit(type: str, level: str = "info", **data: Any) -> None:
        if type == "llm.retry":
            log.note(f"attempt {data['attempt']} failed ({data['kind']}): {data['message']}")
        ctx.emit(type, level, **data)

    try:
        provider = providers.get(ctx.step.provider)
        reply = await provider.complete(request, Call(ctx.step.id, ctx.step.group, emit))
    except StepFailed as failure:
        log.note(f"failed ({failure.kind}): {failure.message}")
        failure.meta.update({"provider": ctx.step.provider, "model": request.model})
        raise
    await log.reply(reply)
    meta = _usage(ctx, request, reply)
    try:
        contents = _contents(ctx, reply.text)
        written = await ctx.write_all(contents)
    except StepFailed as failure:
        failure.meta.update(meta)  # the reply was paid for all the same
        raise
    if ctx.step.spec.extract == "files":  # type: ignore[union-attr]
        _remove_stale(ctx, set(contents))
    return Outcome(written=written, meta=meta)


def _request(ctx: StepContext) -> ChatRequest:
    from ..hashing import resolved_definition
    from ..providers import ChatRequest

    spec: LlmStep = ctx.step.spec  # type: ignore[assignment]
    definition = ctx.step.definition
    if spec.messages is not None:
        planned = [dict(m) for m in definition["messages"]]
        rendered = ctx.runtime([m.model_dump() for m in spec.messages], planned)
        messages = tuple({"role": m["role"], "content": str(m["content"])} for m in rendered)
    else:
        if spec.prompt is not None:
            prompt = ctx.runtime(spec.prompt, definition["prompt"])
        else:
            prompt = ctx.render_file(definition["prompt_file"])
        messages = ({"role": "user", "content": str(prompt)},)
    system = ctx.runtime(spec.system, definition["system"])
    provider = resolved_definition(ctx.step, ctx.pipeline.providers)["provider"]
    return ChatRequest(
        messages, provider["model"], provider["options"], system, timeout_s=spec.timeout_s
    )


def _contents(ctx: StepContext, text: str) -> dict[str, str]:
    """Output path → content, from the reply as the step's extract mode reads it."""
    spec: LlmStep = ctx.step.spec  # type: ignore[assignment]
    outputs = ctx.step.outputs
    if spec.extract == "files":
        return extract.files(text, outputs, ctx.others)
    if spec.extract == "code":
        return {outputs[0]: extract.first_code_block(text)}
    if spec.extract == "json":
        return {outputs[0]: extract.json_document(text, spec.json_schema)}
    return {outputs[0]: text}


def _remove_stale(ctx: StepContext, written: set[str]) -> None:
    """Make the output folders hold exactly what the reply named (and other steps' outputs)."""
    for folder in ctx.step.outputs:
        root = ctx.workdir / folder
        for file in sorted(root.rglob("*")):
            relative = file.relative_to(ctx.workdir).as_posix()
            if file.is_dir() or relative in written:
                continue
            if any(is_within(relative, other) for other in ctx.others):
                continue
            file.unlink()
            ctx.emit("file.removed", path=relative, reason="not in the reply")


def _usage(ctx: StepContext, request: ChatRequest, reply: Reply) -> dict[str, Any]:
    """What the manifest and the cache keep about the call."""
    assert ctx.providers is not None and ctx.step.provider is not None
    settings = ctx.providers().settings(ctx.step.provider)
    meta: dict[str, Any] = {
        "provider": ctx.step.provider,
        "model": request.model,
        "calls": reply.attempts,
        "finish_reason": reply.finish_reason,
        "tokens": reply.usage.as_dict(),
    }
    if settings.price is not None:
        meta["cost"] = reply.usage.cost(settings.price)
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
