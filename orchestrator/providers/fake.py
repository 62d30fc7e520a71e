"""The offline provider: deterministic replies without a network.

The reply to step `s` is the file `<responses>/s.md` (a foreach instance `g@item` falls back to
`<responses>/g.md`); with `echo: true` it is the rendered prompt. Token counts are word counts.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.core.paths import PathRefused, escapes_through_symlink, normalize, too_long
from orchestrator.language.spec import FakeProvider as FakeSpec
from orchestrator.providers.base import Call, ChatRequest, ProviderError, Reply, Usage
from orchestrator.providers.config import Settings

if TYPE_CHECKING:
    from orchestrator.language.spec import Provider


class FakeProvider:
    """Replies from files, or echoes."""

    def __init__(self, settings: Settings, workdir: Path) -> None:
        self.name = settings.name
        self.kind = settings.kind
        self.settings = settings
        self.workdir = workdir

    async def complete(self, request: ChatRequest, call: Call) -> Reply:
        """The recorded reply for the calling step."""
        prompt = "\n\n".join(m["content"] for m in request.messages if m["role"] != "system")
        call.emit("llm.request", provider=self.name, model=request.model, attempt=1)
        text = prompt if self.settings.echo else self._recorded(call)
        words = len((request.system_text() or "").split()) + len(prompt.split())
        usage = Usage(input=words, output=len(text.split()))
        call.emit(
            "llm.response",
            provider=self.name,
            model=request.model,
            attempt=1,
            duration_s=0.0,
            finish_reason="stop",
            tokens=usage.as_dict(),
        )
        return Reply(text=text, finish_reason="stop", usage=usage)

    def _recorded(self, call: Call) -> str:
        candidates = reply_files(self.settings.responses, call.step, call.group)
        for path in _normalized(candidates):
            if escapes_through_symlink(self.workdir, path):
                raise ProviderError("client", f"the reply file {path} leads outside the workdir")
            try:
                return (self.workdir / path).read_text(encoding="utf-8")
            except FileNotFoundError:
                continue
            except (OSError, UnicodeDecodeError) as exc:
                raise ProviderError("client", f"cannot read the reply file {path}: {exc}") from exc
        raise ProviderError(
            "client",
            f"provider '{self.name}' has no reply for this step: create {candidates[0]}",
        )


def reply_files(responses: str | None, step: str, group: str) -> list[str]:
    """Where the reply of a step may be, first match wins (paths relative to the workdir)."""
    folder = (responses or ".").rstrip("/")
    names = [step] if step == group else [step, group]
    return [f"{folder}/{name}.md" for name in names]


def reply_candidates(config: Provider | None, step: str, group: str) -> list[str]:
    """The normalised reply files a fake provider would read for a step; none for other kinds."""
    if not isinstance(config, FakeSpec) or config.echo:
        return []
    return _normalized(reply_files(config.responses, step, group))


def _normalized(paths: list[str]) -> list[str]:
    """The paths that can name a file: normalised, without those refused or with too long a
    name (a long step id makes one)."""
    found = []
    for path in paths:
        try:
            normal = normalize(path)
        except PathRefused:
            continue
        if too_long(normal) is None:
            found.append(normal)
    return found
