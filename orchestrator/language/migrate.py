"""`orch migrate`: a unified_orchestrator v2 job spec → an orch pipeline.

A v2 job spec is a YAML mapping with `project`, `task_description`, `provider`, `concurrency`,
`timeout_s` and `output_dir`. The pipeline comes out as commented YAML written from a template
(no YAML dumper), in the architect → builder + docs → qa shape of `pipelines/notes_app.yaml`.
Every problem in the spec is reported at its `file:line:col`; keys orch does not know are
returned as warnings and listed in a comment of the pipeline.
"""

from __future__ import annotations

import math
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

from orchestrator.core.errors import Diagnostic, Location, PipelineError
from orchestrator.core.paths import PathRefused, is_glob, normalize, overlaps
from orchestrator.core.suggest import suggest
from orchestrator.language.source import SourceDocument, to_plain
from orchestrator.language.templating import is_template

PROVIDERS = {
    "openai": "openai",
    "anthropic": "anthropic",
    "ollama": "ollama",
    "fake": "offline",
    "offline": "offline",
}
"""v2 provider → the name of the orch provider the pipeline declares for it."""
DEFAULT_PROVIDER = "offline"
DEFAULT_OUTPUT_DIR = "generated/{project}"
REQUIRED_KEYS = ("project", "task_description")
KNOWN_KEYS = (*REQUIRED_KEYS, "provider", "concurrency", "timeout_s", "output_dir")
TOTAL_TIMEOUT_S = 600
"""orch's default time budget of one provider call (`total_timeout_s`), retries included."""
HINTS = {
    "model": "set 'model' under each provider instead",
    "retries": "set 'max_retries' under each provider instead",
    "max_retries": "set 'max_retries' under each provider instead",
    "circuit_breaker": (
        "set 'cb_failure_rate', 'cb_min_calls' and 'cb_cooldown_s' under each provider instead"
    ),
}
"""What to do instead, for v2-era keys that have no direct counterpart."""

_NAME = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
_PLAIN_KEY = re.compile(r"\A[A-Za-z0-9_.-]+\Z")


class _Invalid(ValueError):
    """A value of the spec that cannot be converted; the message says why."""


@dataclass(frozen=True)
class UnknownKey:
    """A key of the spec that has no orch counterpart."""

    name: str
    location: Location
    hint: str

    def message(self) -> str:
        """The warning text, without its location."""
        hint = f"; {self.hint}" if self.hint else ""
        return f"warning: unknown key {self.name} is not converted{hint}"


@dataclass(frozen=True)
class JobSpec:
    """A checked v2 job spec."""

    project: str
    task: str
    provider: str
    """The orch provider's name (see PROVIDERS)."""
    given_provider: str | None
    concurrency: int | None
    timeout_s: int | float | None
    output_dir: str
    unknown: tuple[UnknownKey, ...] = ()


# --------------------------------------------------------------------------- reading


def read_spec(file: Path) -> SourceDocument:
    """Read and parse a job spec file; problems become PipelineError."""
    from orchestrator.language.loader import read_source

    return read_source(file, "job spec")


def migrate(source: SourceDocument, *, workdir: str | None = None) -> tuple[str, list[Diagnostic]]:
    """The pipeline text for a parsed job spec, and a warning per key it did not convert.

    `workdir` is written as the pipeline's `workdir` (relative to where the pipeline will be
    saved); None leaves it out. Raises PipelineError listing every invalid value.
    """
    job = check(source)
    warnings = [Diagnostic(key.message(), key.location) for key in job.unknown]
    return render(job, source.file.name, workdir), warnings


def check(source: SourceDocument) -> JobSpec:
    """The job spec's values, checked; PipelineError with every problem otherwise."""
    data = to_plain(source)
    top = source.locate(())
    if data is None:
        raise PipelineError.at(
            "empty job spec: expected a mapping with 'project' and 'task_description'", top
        )
    if not isinstance(data, dict):
        raise PipelineError.at(
            f"a job spec is a mapping of keys ('project', 'task_description', ...),"
            f" not {_type_name(data)}",
            top,
        )
    problems = [
        Diagnostic(f"missing '{key}': the job spec needs it", top)
        for key in REQUIRED_KEYS
        if key not in data
    ]
    values: dict[str, Any] = {}
    for key, checker in _CHECKS.items():
        if key in data:
            try:
                values[key] = checker(data[key])
            except _Invalid as exc:
                problems.append(Diagnostic(f"'{key}': {exc}", source.locate((key,))))
    if not problems:
        problems.extend(_clash(source, values))
    if problems:
        raise PipelineError(problems)
    project = values["project"]
    return JobSpec(
        project=project,
        task=values["task_description"],
        provider=values.get("provider", DEFAULT_PROVIDER),
        given_provider=data.get("provider"),
        concurrency=values.get("concurrency"),
        timeout_s=values.get("timeout_s"),
        output_dir=values.get("output_dir", DEFAULT_OUTPUT_DIR.format(project=project)),
        unknown=tuple(_unknown(source, key) for key in data if key not in KNOWN_KEYS),
    )


def _unknown(source: SourceDocument, key: Any) -> UnknownKey:
    hint = ""
    if isinstance(key, str):
        hint = HINTS.get(key) or suggest(key, KNOWN_KEYS).removeprefix("; ")
    return UnknownKey(_key_name(key), source.locate((key,), key=True), hint)


def _key_name(key: Any) -> str:
    text = str(key)
    return f"'{text}'" if _PLAIN_KEY.match(text) else _quoted(text)


def _clash(source: SourceDocument, values: dict[str, Any]) -> list[Diagnostic]:
    """The output folder may not hold the files the pipeline keeps under build/<project>/."""
    if "output_dir" not in values:
        return []
    build = f"build/{values['project']}/"
    if overlaps(values["output_dir"] + "/", build):
        message = f"'output_dir': '{values['output_dir']}' overlaps '{build}', where the design"
        message += " and the test report go; choose another folder"
        return [Diagnostic(message, source.locate(("output_dir",)))]
    return []


# --------------------------------------------------------------------------- values


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing"
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    names.update({dict: "a mapping", list: "a list"})
    return names.get(type(value), type(value).__name__)


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"expected {what}, not {_type_name(value)}")
    if not value.strip():
        raise _Invalid(f"expected {what}, not an empty string")
    return value


def _project(value: Any) -> str:
    name = _string(value, "a project name")
    if not _NAME.match(name):
        raise _Invalid(
            f"invalid project name {_quoted(name)}: use letters, digits, '_', '.' and '-',"
            " starting with a letter, digit or '_'"
        )
    return name


def _task(value: Any) -> str:
    return _string(value, "the text of the task")


def _provider(value: Any) -> str:
    name = _string(value, f"a provider ({', '.join(PROVIDERS)})")
    found = PROVIDERS.get(name.strip().lower())
    if found is None:
        raise _Invalid(
            f"unknown provider {_quoted(name)}; expected one of {', '.join(PROVIDERS)}"
            + suggest(name.strip().lower(), PROVIDERS)
        )
    return found


def _concurrency(value: Any) -> int:
    if type(value) is not int:
        raise _Invalid(f"expected a whole number of calls at once, not {_type_name(value)}")
    if value < 1:
        raise _Invalid(f"expected 1 or more, not {value}")
    return value


def _timeout(value: Any) -> int | float:
    if type(value) not in (int, float):
        raise _Invalid(f"expected a number of seconds, not {_type_name(value)}")
    if not math.isfinite(value) or value <= 0:
        raise _Invalid(f"expected a positive number of seconds, not {value}")
    return int(value) if type(value) is int else float(value)


def _output_dir(value: Any) -> str:
    text = _string(value, "a folder relative to the project")
    if is_glob(text) or is_template(text):
        raise _Invalid(f"{_quoted(text)} is a pattern: name one folder")
    if text.startswith(("/", "\\", "~")) or text[1:2] == ":":
        raise _Invalid(f"{_quoted(text)} is absolute: give a folder relative to the project")
    normal = posixpath.normpath(text)
    if normal == ".." or normal.startswith("../"):
        raise _Invalid(f"{_quoted(text)} leads outside the project through '..'")
    if normal == ".":
        raise _Invalid(f"{_quoted(text)} is the project folder itself: name a folder in it")
    try:
        return normalize(normal + "/").rstrip("/")
    except PathRefused as exc:
        raise _Invalid(f"{exc}; give a folder inside the project") from exc


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "project": _project,
    "task_description": _task,
    "provider": _provider,
    "concurrency": _concurrency,
    "timeout_s": _timeout,
    "output_dir": _output_dir,
}


# --------------------------------------------------------------------------- YAML text


def _printable(char: str) -> bool:
    """Whether YAML allows the character as it is inside a scalar (line breaks aside)."""
    code = ord(char)
    return (
        char == "\t"
        or 0x20 <= code <= 0x7E
        or 0xA0 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    ) and char not in "\u2028\u2029\ufeff"


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "\0": "\\0"}


def _quoted(text: str) -> str:
    """A YAML double-quoted scalar that reads back as `text`."""
    parts = []
    for char in text:
        code = ord(char)
        if char in _ESCAPES:
            parts.append(_ESCAPES[char])
        elif _printable(char):
            parts.append(char)
        elif code <= 0xFF:
            parts.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            parts.append(f"\\u{code:04x}")
        else:
            parts.append(f"\\U{code:08x}")
    return '"' + "".join(parts) + '"'


def _verbatim(text: str) -> str:
    """A Jinja template that renders to `text` exactly.

    Text without Jinja markers stays as it is. Otherwise it goes between ``{% raw %}`` and
    ``{% endraw %}``; each ``{%`` in it is written as ``{{ '{%' }}`` outside the raw block, so
    no ``{% endraw %}`` inside the text can end the block early. Text ending in blank lines is
    wrapped too, so that the YAML block holding it needs no 'keep' chomping.
    """
    if not is_template(text) and not text.endswith("\n\n"):
        return text
    inner = "{% endraw %}{{ '{%' }}{% raw %}".join(text.split("{%"))
    return "{% raw %}" + inner + "{% endraw %}"


def _block(text: str) -> str:
    """`text` as the literal block scalar of a key at indent 2 (header and lines at indent 4),
    or double-quoted when a block cannot hold it exactly."""
    if not text or text.endswith("\n\n") or not all(c == "\n" or _printable(c) for c in text):
        return _quoted(text)
    header = "|"
    if text[0] in " \t\n":
        header += "2"  # the first line's own indentation is not the block's
    if not text.endswith("\n"):
        header += "-"
    body = text.removesuffix("\n").split("\n")
    return header + "".join(f"\n    {line}" if line else "\n" for line in body)


def _number(value: int | float) -> str:
    return str(value) if isinstance(value, int) else repr(value)


# --------------------------------------------------------------------------- the pipeline


_PIPELINE = Template(
    """\
# Generated by `orch migrate` from the unified_orchestrator v2 job spec $spec_name.
# Check it with `orch validate`, then run it with `orch build`.
${unknown_comment}\
version: 1
name: $name
description: $description
$workdir
vars:
  app: $name
  out: $out    # v2 output_dir: the folder the builder writes
  # v2 task_description$task_note
  task: $task

dotenv: [.env]

${providers_comment}\
providers:
  offline:
    kind: fake    # offline and deterministic: the reply is <responses>/<step>.md
    responses: $responses
${http_providers}\
default_provider: "{{ env.ORCH_PROVIDER | default('$provider') }}"

steps:
  architect:
    description: Design the code from the task description.
    system: You are a software architect.
    prompt: |
      Design the Python project `{{ app }}` that the task below asks for: its modules, data
      model, public interface and the tests to write. Keep it to one or two pages of Markdown.

      Task:
      {{ task }}
    output: build/{{ app }}/design.md

  builder:
    description: Implement the design, with tests.
    inputs: ["{{ steps.architect.output }}"]
    system: You are a senior Python engineer.
    prompt: |
      Implement this design in Python, with pytest tests under `tests/`. The tests run as
      `python -m pytest {{ out }}/tests` with `{{ out }}` on PYTHONPATH. Reply with one fenced
      block per file, the file's path (relative to `{{ out }}/`) on the fence line, for example
      ```python tests/test_app.py

      {{ read(steps.architect.output) }}
    extract: files
    outputs: ["{{ out }}/"]

  docs:
    description: Write the README.
    inputs: ["{{ steps.architect.output }}"]
    system: You are a technical writer.
    prompt: |
      Write the README of `{{ app }}`: what it does, how to install, run and test it, and how
      to use it, with examples. Reply with the Markdown only.

      {{ read(steps.architect.output) }}
    output: "{{ out }}/README.md"

  qa:
    description: Run the generated tests.
    needs: [docs]
    inputs: ["{{ out }}/"]
    run: python -m pytest -q -p no:cacheprovider {{ out | quote }}/tests
    env:
      PYTHONDONTWRITEBYTECODE: "1"   # keep __pycache__ out of the builder's output folder
      PYTHONPATH: "{{ out }}"        # the tests import the generated code
    stdout: build/{{ app }}/qa.txt
"""
)

_HTTP_PROVIDERS = (
    ("openai", "model: gpt-4o-mini", "options: { temperature: 0 }"),
    ("anthropic", "model: claude-sonnet-4-5", "options: { max_tokens: 8000 }"),
    ("ollama", "model: llama3.1"),
)


def render(job: JobSpec, spec_name: str, workdir: str | None = None) -> str:
    """The pipeline text of a checked job spec."""
    task = _verbatim(job.task)
    return _PIPELINE.substitute(
        spec_name=_quoted(spec_name),
        unknown_comment=_unknown_comment(job.unknown),
        name=_quoted(job.project),
        description=_quoted(f"{job.project}, migrated from a unified_orchestrator v2 job spec."),
        workdir=_workdir_line(workdir),
        out=_quoted(job.output_dir),
        task_note=", verbatim: {% raw %} keeps Jinja off its braces" if task != job.task else "",
        task=_block(task),
        providers_comment=_providers_comment(job),
        provider=job.provider,
        responses=_quoted(f"pipelines/{job.project}/responses"),
        http_providers="".join(_http_provider(job, *fields) for fields in _HTTP_PROVIDERS),
    )


def _unknown_comment(unknown: tuple[UnknownKey, ...]) -> str:
    if not unknown:
        return ""
    lines = ["#", "# Keys of the job spec that were not converted (review them):"]
    for key in unknown:
        hint = f": {key.hint}" if key.hint else ""
        lines.append(f"#   {key.name} (line {key.location.line}){hint}")
    return "\n".join(lines) + "\n"


def _workdir_line(workdir: str | None) -> str:
    if workdir is None:
        return (
            "# Paths are relative to this file's folder. Saved anywhere but the project's top\n"
            "# folder, add `workdir:` with the way there (e.g. `workdir: ..`).\n"
        )
    return f"workdir: {_quoted(workdir)}    # where `orch migrate` ran; paths are relative to it\n"


def _providers_comment(job: JobSpec) -> str:
    given = (
        f"v2 provider: {_quoted(job.given_provider)}"
        if job.given_provider is not None
        else "the job spec names no provider"
    )
    lines = [
        f"# The default provider is '{job.provider}' ({given}); ORCH_PROVIDER or",
        "# `orch build --provider NAME` picks another. Change the models as you need.",
    ]
    if job.timeout_s is not None:
        lines.append("# v2 timeout_s -> each HTTP provider's timeout_s (seconds per request).")
    if job.concurrency is not None:
        lines.append("# v2 concurrency -> each HTTP provider's max_concurrency (calls at once);")
        lines.append("# the build-wide equivalent is `orch build -j N` (or ORCH_JOBS).")
    return "\n".join(lines) + "\n"


def _http_provider(job: JobSpec, kind: str, *fields: str) -> str:
    lines = [f"  {kind}:", f"    kind: {kind}", *(f"    {field}" for field in fields)]
    if job.timeout_s is not None:
        lines.append(f"    timeout_s: {_number(job.timeout_s)}")
        if job.timeout_s > TOTAL_TIMEOUT_S:
            lines.append(
                f"    total_timeout_s: {_number(job.timeout_s)}"
                "    # the budget of a call: at least one whole request"
            )
    if job.concurrency is not None:
        lines.append(f"    max_concurrency: {job.concurrency}")
    return "\n".join(lines) + "\n"
