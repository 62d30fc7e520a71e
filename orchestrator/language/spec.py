"""Pydantic models of the pipeline language, v1: the source of `schemas/pipeline.schema.json`.

The models describe the file as written. String fields may hold Jinja templates; they are rendered
later (see `templating.py` and `compile.py`), so a field typed ``str`` here is a template.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    field_validator,
    model_validator,
)

LANGUAGE_VERSION = 1
STEP_KINDS = ("shell", "llm", "template")
PROVIDER_KINDS = ("openai", "anthropic", "ollama", "fake")
KIND_KEYS: dict[str, tuple[str, ...]] = {
    "shell": ("run",),
    "llm": ("prompt", "prompt_file", "messages"),
    "template": ("template", "template_file"),
}
DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {"anthropic": {"max_tokens": 4096}}
"""Request options a provider kind needs; they enter step keys like any other option."""
RESERVED_NAMES = frozenset({"env", "vars", "steps", "item", "key", "inputs", "outputs", "read"})

StepName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")]
VarName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
ProviderName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")]
PositiveSeconds = Annotated[float, Field(gt=0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- providers


class Price(_Model):
    """Price in a currency of your choice per million tokens."""

    input: float = Field(0.0, ge=0)
    output: float = Field(0.0, ge=0)
    cached: float | None = Field(
        None, ge=0, description="Price of cached input tokens; default: the input price."
    )


class _ProviderBase(_Model):
    model: str | None = Field(None, description="Model name sent to the provider.")
    options: dict[str, Any] = Field(
        default_factory=dict, description="Request options (temperature, max_tokens, ...)."
    )
    timeout_s: PositiveSeconds = Field(120.0, description="Per-request timeout.")
    total_timeout_s: PositiveSeconds = Field(
        600.0, description="Time budget for one call, retries and waits included."
    )
    max_retries: int = Field(3, ge=0, description="Retries after the first attempt.")
    retry_after_cap_s: PositiveSeconds = Field(
        60.0, description="Longest retry-after honoured; above it the step fails."
    )
    cb_threshold: int = Field(5, ge=1, description="Consecutive failures that open the breaker.")
    cb_cooldown_s: PositiveSeconds = Field(30.0, description="How long an open breaker stays open.")
    max_concurrency: int | None = Field(None, ge=1, description="Parallel calls, on top of -j.")
    price: Price | None = None


class _HttpProvider(_ProviderBase):
    base_url: str | None = Field(None, description="Server address; each kind has a default.")
    api_key_env: str | None = Field(None, description="Environment variable holding the API key.")


class OpenAIProvider(_HttpProvider):
    """Chat completions on OpenAI or any OpenAI-compatible server."""

    kind: Literal["openai"]


class AnthropicProvider(_HttpProvider):
    """Anthropic Messages API."""

    kind: Literal["anthropic"]


class OllamaProvider(_HttpProvider):
    """Ollama's native /api/chat."""

    kind: Literal["ollama"]


class FakeProvider(_ProviderBase):
    """Offline and deterministic: replies with <responses>/<step>.md, or echoes the prompt."""

    kind: Literal["fake"]
    responses: str | None = Field(None, description="Folder of <step>.md replies.")
    echo: bool = Field(False, description="Reply with the rendered prompt.")


Provider = Annotated[
    OpenAIProvider | AnthropicProvider | OllamaProvider | FakeProvider,
    Field(discriminator="kind"),
]


# --------------------------------------------------------------------------- steps


class Message(_Model):
    """One chat message of an llm step."""

    role: Literal["system", "user", "assistant"]
    content: str


class _StepBase(_Model):
    description: str | None = None
    inputs: list[str] = Field(default_factory=list, description="Files, folders (a/) or globs.")
    outputs: list[str] = Field(default_factory=list, description="Files or folders (a/).")
    output: str | None = Field(None, description="Shorthand for a single output.")
    needs: list[str] = Field(default_factory=list, description="Steps to run first.")
    foreach: Any = Field(
        None,
        description="Expand into name@item steps: a list, a mapping or a glob.",
        json_schema_extra={"type": ["array", "object", "string"]},
    )
    timeout_s: PositiveSeconds | None = None
    always_run: bool = Field(False, description="Never up to date.")
    cache: bool = Field(True, description="Allow restoring outputs from the cache.")

    @field_validator("foreach")
    @classmethod
    def _foreach_shape(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, list | dict | str):
            raise ValueError(
                f"expected a list, a mapping or a glob string, not {type(value).__name__}"
            )
        return value

    @model_validator(mode="after")
    def _one_output_field(self) -> _StepBase:
        if self.output is not None and self.outputs:
            raise ValueError("use either 'output' or 'outputs', not both")
        return self

    @property
    def declared_outputs(self) -> list[str]:
        """`outputs`, or `output` as a one-item list."""
        return [self.output] if self.output is not None else list(self.outputs)


class ShellStep(_StepBase):
    """Runs a shell command."""

    kind: Literal["shell"] = "shell"
    run: str
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables.")
    cwd: str | None = Field(None, description="Folder to run in, relative to the workdir.")
    stdout: str | None = Field(None, description="File that receives the command's stdout.")


class TemplateStep(_StepBase):
    """Renders a Jinja template (inline text, or a file that becomes an input) to its output."""

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["template"]}, {"required": ["template_file"]}]}
    )

    kind: Literal["template"] = "template"
    template: str | None = Field(None, description="The template text itself.")
    template_file: str | None = Field(
        None, description="A Jinja template file; it becomes an input of the step."
    )

    @model_validator(mode="after")
    def _one_template(self) -> TemplateStep:
        _require_one_of(self, "template")
        return self


class LlmStep(_StepBase):
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

    kind: Literal["llm"] = "llm"
    prompt: str | None = None
    prompt_file: str | None = Field(None, description="A Jinja template file for the prompt.")
    messages: list[Message] | None = None
    system: str | None = None
    provider: str | None = None
    model: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    extract: Literal["text", "code", "files", "json"] = "text"
    json_schema: dict[str, Any] | None = Field(
        None, alias="schema", description="JSON Schema the reply must satisfy (extract: json)."
    )

    @model_validator(mode="after")
    def _one_prompt_and_schema_with_json(self) -> LlmStep:
        _require_one_of(self, "llm")
        if self.json_schema is not None and self.extract != "json":
            raise ValueError("'schema' is only used with 'extract: json'")
        return self


def _require_one_of(step: BaseModel, kind: str) -> None:
    """Refuse a step that gives none or several of its kind's keys."""
    keys = KIND_KEYS[kind]
    given = [name for name in keys if getattr(step, name) is not None]
    if len(given) != 1:
        found = f", not {' and '.join(given)}" if given else ""
        choices = f"{', '.join(keys[:-1])} or {keys[-1]}"
        raise ValueError(f"give exactly one of {choices}{found}")


def infer_kind(raw: Any) -> str | None:
    """The kind of a raw step mapping: its `kind`, or the one kind whose key it uses."""
    if isinstance(raw, BaseModel):
        return str(getattr(raw, "kind", None))
    if not isinstance(raw, dict):
        return None
    if isinstance(raw.get("kind"), str):
        return str(raw["kind"])
    kinds = [kind for kind, keys in KIND_KEYS.items() if any(k in raw for k in keys)]
    return kinds[0] if len(kinds) == 1 else None


StepSpec = ShellStep | LlmStep | TemplateStep
"""One step as written, of any kind."""

_TaggedStep = Annotated[
    Annotated[ShellStep, Tag("shell")]
    | Annotated[LlmStep, Tag("llm")]
    | Annotated[TemplateStep, Tag("template")],
    Discriminator(infer_kind),
]


# --------------------------------------------------------------------------- pipeline


class Pipeline(_Model):
    """A pipeline file."""

    model_config = ConfigDict(title="orch pipeline")

    version: Literal[1] = Field(description="Language version.")
    name: str | None = None
    description: str | None = None
    workdir: str | None = Field(
        None, description="Base of every relative path; default: the pipeline file's folder."
    )
    vars: dict[VarName, Any] = Field(default_factory=dict, description="Rendered in order.")
    dotenv: list[str] = Field(default_factory=list, description="Files of KEY=VALUE lines.")
    providers: dict[ProviderName, Provider] = Field(default_factory=dict)
    default_provider: str | None = None
    steps: dict[StepName, _TaggedStep] = Field(description="The steps, by name.")
