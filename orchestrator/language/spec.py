"""Pydantic models of the pipeline language, v1: the source of `schemas/pipeline.schema.json`.

The models describe the file as written. String fields may hold Jinja templates; they are rendered
later (see `templating.py` and `compile.py`), so a field typed ``str`` here is a template.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from typing import Annotated, Any, ClassVar, Literal, Union, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

PROVIDER_KINDS = ("openai", "azure", "anthropic", "ollama", "fake")
AZURE_API_VERSION = "2024-10-21"
"""The latest generally available version of Azure OpenAI's inference API."""
DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {"anthropic": {"max_tokens": 4096}}
"""Request options a provider kind needs; they enter step keys like any other option."""
RESERVED_NAMES = frozenset({"env", "vars", "steps", "item", "key", "inputs", "outputs", "read"})

StepName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")]
VarName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
ProviderName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")]
PositiveSeconds = Annotated[float, Field(gt=0)]
HeaderName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")]
RESERVED_HEADERS = frozenset({"host", "content-length", "content-type", "transfer-encoding"})


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
    cache_write: float | None = Field(
        None,
        ge=0,
        description="Price of input tokens written to the prompt cache; default: 1.25 times"
        " the input price (Anthropic's 5-minute cache).",
    )


class _ProviderBase(_Model):
    model: str | None = Field(None, description="Model name sent to the provider.")
    options: dict[str, Any] = Field(
        default_factory=dict, description="Request options (temperature, max_tokens, ...)."
    )
    timeout_s: PositiveSeconds | None = Field(
        None,
        description="Read timeout of one request; default 120 s, or longer for an anthropic"
        " call with a large max_tokens.",
    )
    connect_timeout_s: PositiveSeconds = Field(5.0, description="Connect timeout of a request.")
    total_timeout_s: PositiveSeconds = Field(
        600.0, description="Time budget for one call, retries and waits included."
    )
    max_retries: int = Field(2, ge=0, description="Retries after the first attempt.")
    retry_after_cap_s: PositiveSeconds = Field(
        60.0, description="Longest retry-after honoured; above it the step fails."
    )
    cb_failure_rate: float = Field(
        0.8, gt=0, description="Share of failed recent attempts that opens the breaker."
    )
    cb_min_calls: int = Field(20, ge=1, description="Attempts seen before the breaker may open.")
    cb_window: int = Field(40, ge=1, description="Recent attempts the failure rate looks at.")
    cb_cooldown_s: PositiveSeconds = Field(30.0, description="How long an open breaker stays open.")
    max_concurrency: int | None = Field(None, ge=1, description="Parallel calls, on top of -j.")
    price: Price | None = None


class FromEnv(_Model):
    """A value read from an environment variable when the call is made: `{env: NAME}`."""

    env: str = Field(min_length=1, description="The variable; a header it names is a secret.")


class _HttpProvider(_ProviderBase):
    base_url: str | None = Field(None, description="Server address; each kind has a default.")
    api_key_env: str | None = Field(None, description="Environment variable holding the API key.")
    headers: dict[HeaderName, str | FromEnv] = Field(
        default_factory=dict,
        description="Headers of every request: a text, or {env: NAME} for a secret. They never"
        " enter keys, the lock, logs or events.",
    )

    @field_validator("headers")
    @classmethod
    def _no_reserved_header(cls, value: dict[str, str | FromEnv]) -> dict[str, str | FromEnv]:
        for name, text in value.items():
            if name.lower() in RESERVED_HEADERS:
                raise ValueError(f"header '{name}' is set by orch itself")
            if isinstance(text, str) and ("\n" in text or "\r" in text):
                raise ValueError(f"header '{name}' holds a line break")
        return value

    @field_validator("options")
    @classmethod
    def _options_the_kind_honours(cls, value: dict[str, Any]) -> dict[str, Any]:
        from orchestrator.language.options import refusals

        found = refusals(get_args(cls.model_fields["kind"].annotation)[0], value)
        if found:
            raise ValueError(str(found[0]))
        return value


class OpenAIProvider(_HttpProvider):
    """Chat completions on OpenAI or any OpenAI-compatible server."""

    kind: Literal["openai"]


class AzureProvider(_HttpProvider):
    """Chat completions on Azure OpenAI: a deployment of the resource at `base_url`."""

    kind: Literal["azure"]
    deployment: str | None = Field(
        None, description="The deployment called; default: the step's or provider's model."
    )
    api_version: str = Field(AZURE_API_VERSION, description="The api-version query parameter.")

    @field_validator("api_version", mode="before")
    @classmethod
    def _date_as_written(cls, value: Any) -> Any:
        """`api_version: 2024-10-21` unquoted, which YAML reads as a date."""
        return value.isoformat() if isinstance(value, date) else value


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
    OpenAIProvider | AzureProvider | AnthropicProvider | OllamaProvider | FakeProvider,
    Field(discriminator="kind"),
]


# --------------------------------------------------------------------------- foreach


class RowsForeach(_Model):
    """One step per row of a data file: `{rows: data/cases.jsonl, key: id}`."""

    rows: str = Field(
        description="A .json, .jsonl/.ndjson, .yaml/.yml or .csv file of rows (mappings);"
        " a template seeing vars and env."
    )
    key: str | None = Field(
        None, description="The field whose value names each step; default: the row's index."
    )


class FilesForeach(_Model):
    """One step per file matched, with exclusions: `{files: [docs/*.md, "!docs/draft*.md"]}`."""

    files: list[str] = Field(
        min_length=1,
        description="Globs or files, each a template seeing vars and env; an entry starting"
        " with '!' takes the files it matches out.",
    )

    @field_validator("files", mode="before")
    @classmethod
    def _one_pattern(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("files")
    @classmethod
    def _no_empty_pattern(cls, value: list[str]) -> list[str]:
        for index, entry in enumerate(value):
            if entry in ("", "!"):
                raise ValueError(f"entry {index} is empty ({entry!r})")
        return value


Combination = dict[str, Any]


class MatrixForeach(_Model):
    """One step per combination of the axes' values: `{matrix: {locale: [fr, de]}}`."""

    matrix: dict[str, list[Any] | str] = Field(
        description="Axes in order, each a list, an expression giving a list, or a glob."
    )
    exclude: list[Combination] = Field(
        default_factory=list, description="Partial combinations to drop."
    )
    include: list[Combination] = Field(
        default_factory=list, description="Whole combinations to add."
    )

    @model_validator(mode="after")
    def _known_axes(self) -> MatrixForeach:
        if not self.matrix:
            raise ValueError("the matrix has no axes")
        axes = list(self.matrix)
        for field in ("exclude", "include"):
            for index, row in enumerate(getattr(self, field)):
                unknown = [name for name in row if name not in self.matrix]
                if unknown:
                    raise ValueError(
                        f"{field}[{index}] names unknown axis '{unknown[0]}'"
                        f"; the axes are {', '.join(axes)}"
                    )
        for index, row in enumerate(self.exclude):
            if not row:
                raise ValueError(f"exclude[{index}] names no axis")
        for index, row in enumerate(self.include):
            missing = [name for name in axes if name not in row]
            if missing:
                raise ValueError(f"include[{index}] gives no value for axis '{missing[0]}'")
        return self


FOREACH_FORMS: dict[str, tuple[type[_Model], frozenset[str]]] = {
    "rows": (RowsForeach, frozenset({"rows", "key"})),
    "files": (FilesForeach, frozenset({"files"})),
    "matrix": (MatrixForeach, frozenset({"matrix", "exclude", "include"})),
}
"""A mapping is one of these forms when it holds the form's key and only keys the form knows."""


def foreach_form(value: Any) -> type[_Model] | None:
    """The model of a `foreach` mapping written as `{rows: ...}`, `{files: ...}` or
    `{matrix: ...}`, else None (a list, a string, or a plain mapping of key → value)."""
    if not isinstance(value, dict):
        return None
    for name, (model, keys) in FOREACH_FORMS.items():
        if name in value and set(value) <= keys:
            return model
    return None


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    message = str(error["msg"]).removeprefix("Value error, ")
    message = message[:1].lower() + message[1:]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {message}" if where else message


ForeachSpec = list[Any] | str | RowsForeach | FilesForeach | MatrixForeach | dict[str, Any] | None


# --------------------------------------------------------------------------- steps


class Input(_Model):
    """An input written as a mapping, to say more than its path."""

    path: str = Field(description="A file, a folder (a/) or a glob.")
    optional: bool = Field(False, description="A glob may match nothing and a file may be missing.")


def _input_form(value: Any) -> str:
    return "mapping" if isinstance(value, dict | Input) else "text"


INPUT_FORMS = ("text", "mapping")
"""The tags of the two ways to write an input (pydantic puts them in error locations)."""
InputEntry = Annotated[
    Union[Annotated[str, Tag("text")], Annotated[Input, Tag("mapping")]],  # noqa: UP007
    Discriminator(_input_form),
]


class StepBase(_Model):
    """The fields every step kind has. Each kind (in `orchestrator/steps/`) subclasses it with
    `kind: Literal["<name>"]`, its own fields, and `KEYS`."""

    KEYS: ClassVar[tuple[str, ...]] = ()
    """The keys that name the kind when `kind:` is not written; a step gives exactly one."""

    kind: str
    description: str | None = Field(
        None, description="What the step is for, shown by `orch list`; not part of its key."
    )
    inputs: list[InputEntry] = Field(
        default_factory=list,
        description="Files, folders (a/) or globs; '!pattern' excludes from the globs and folders.",
    )
    outputs: list[str] = Field(default_factory=list, description="Files or folders (a/).")
    output: str | None = Field(None, description="Shorthand for a single output.")
    needs: list[str] = Field(default_factory=list, description="Steps to run first.")
    foreach: ForeachSpec = Field(
        None,
        description="Expand into name@item steps: a list, a mapping, a glob or an expression,"
        " {rows: file}, {files: [globs, '!exclusions']} or {matrix: {axis: values}}.",
    )
    timeout_s: PositiveSeconds | None = None
    always_run: bool = Field(False, description="Never up to date.")
    cache: bool = Field(True, description="Allow restoring outputs from the cache.")
    condition: str | bool | None = Field(
        None,
        alias="if",
        description="Keep the step only when this template gives true (vars, env, item, key).",
    )
    default: bool = Field(True, description="false: build the step only when a target asks for it.")

    @field_validator("foreach", mode="before")
    @classmethod
    def _foreach_shape(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, list | dict | str | BaseModel):
            raise ValueError(
                f"expected a list, a mapping or a glob string, not {type(value).__name__}"
            )
        form = foreach_form(value)
        if form is None:
            return value
        try:
            return form.model_validate(value)
        except ValidationError as exc:
            raise ValueError(_first_problem(exc)) from None

    @model_validator(mode="after")
    def _one_output_field(self) -> StepBase:
        if self.output is not None and self.outputs:
            raise ValueError("use either 'output' or 'outputs', not both")
        return self

    def output_fields(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Each field that names an output, with its text: `output`, or each of `outputs`."""
        if self.output is not None:
            return [(("output",), self.output)]
        return [(("outputs", i), text) for i, text in enumerate(self.outputs)]


def require_one_key(step: StepBase) -> None:
    """Refuse a step that gives none or several of its kind's `KEYS`."""
    keys = type(step).KEYS
    given = [name for name in keys if getattr(step, name) is not None]
    if len(given) != 1:
        found = f", not {' and '.join(given)}" if given else ""
        choices = f"{', '.join(keys[:-1])} or {keys[-1]}"
        raise ValueError(f"give exactly one of {choices}{found}")


@dataclass(frozen=True, eq=False)
class Language:
    """The pipeline language over a set of step kinds: each kind's model by its name."""

    steps: Mapping[str, type[StepBase]]

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self.steps)

    def keys(self) -> dict[str, tuple[str, ...]]:
        """The keys that name each kind."""
        return {kind: model.KEYS for kind, model in self.steps.items()}

    def infer_kind(self, raw: Any) -> str | None:
        """The kind of a raw step mapping: its `kind`, or the one kind whose key it uses."""
        if isinstance(raw, BaseModel):
            return str(getattr(raw, "kind", None))
        if not isinstance(raw, dict):
            return None
        if isinstance(raw.get("kind"), str):
            return str(raw["kind"])
        found = [kind for kind, keys in self.keys().items() if any(k in raw for k in keys)]
        return found[0] if len(found) == 1 else None

    @cached_property
    def pipeline(self) -> type[Pipeline]:
        """The model of a pipeline file whose steps are of these kinds."""
        tagged = tuple(Annotated[model, Tag(kind)] for kind, model in self.steps.items())
        step: Any = Annotated[Union[tagged], Discriminator(self.infer_kind)]  # noqa: UP007
        steps: Any = dict[StepName, step]
        field = (steps, Field(description="The steps, by name."))
        return create_model("Pipeline", __base__=Pipeline, __doc__=Pipeline.__doc__, steps=field)


# --------------------------------------------------------------------------- pipeline


def _vars_form(value: Any) -> str:
    return "list" if isinstance(value, list) else "mapping"


def _entry_form(value: Any) -> str:
    return "mapping" if isinstance(value, dict) else "file"


VarsEntry = Annotated[
    Union[  # noqa: UP007
        Annotated[str, Tag("file")],
        Annotated[dict[VarName, Any], Tag("mapping")],
    ],
    Discriminator(_entry_form),
]
"""A values file (YAML, JSON or TOML) or a mapping of vars."""
Vars = Annotated[
    Union[  # noqa: UP007
        Annotated[dict[VarName, Any], Tag("mapping")],
        Annotated[list[VarsEntry], Tag("list")],
    ],
    Discriminator(_vars_form),
]
VARS_TAGS = {1: ("mapping", "list"), 3: ("file", "mapping")}
"""Where pydantic puts the union tags of `vars` in an error's location."""


class CacheSettings(_Model):
    """Where results are shared, and what orch cannot see that should still tell them apart."""

    remote: str | None = Field(
        None,
        description="A remote cache URL (s3://, gs://, az://, file://); ORCH_REMOTE_CACHE wins."
        " Credentials come from the store's own environment variables.",
    )
    salt: str | None = Field(
        None,
        description="Text every step key includes (an OS, a tool version orch cannot see);"
        " ORCH_CACHE_SALT wins.",
    )


class Pipeline(_Model):
    """A pipeline file."""

    model_config = ConfigDict(title="orch pipeline")

    version: Literal[1] = Field(description="Language version.")
    name: str | None = None
    description: str | None = None
    workdir: str | None = Field(
        None, description="Base of every relative path; default: the pipeline file's folder."
    )
    include: list[str] = Field(
        default_factory=list,
        description="Files whose vars, providers and steps are merged in, relative to this file.",
    )
    vars: Vars = Field(
        default_factory=dict,
        description="Rendered in order; or a list of values files and mappings, merged in order.",
    )
    dotenv: list[str] = Field(default_factory=list, description="Files of KEY=VALUE lines.")
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Environment variables of every shell step (templates); a step's env wins.",
    )
    providers: dict[ProviderName, Provider] = Field(default_factory=dict)
    default_provider: str | None = None
    cache: CacheSettings = Field(
        default_factory=CacheSettings, description="The remote cache and the key salt."
    )
    steps: dict[StepName, StepBase] = Field(description="The steps, by name.")
    """Of the kinds of a `Language`, whose `pipeline` model validates files."""
