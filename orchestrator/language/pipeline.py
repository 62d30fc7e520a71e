"""A loaded pipeline: its settings and its steps with every template rendered at plan time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.language.source import SourceDocument
    from orchestrator.language.spec import Pipeline, Provider, StepBase


@dataclass(frozen=True)
class Step:
    """One step after foreach expansion and plan-time rendering.

    `definition` identifies what the step does: its structure rendered, the source text of its
    content templates, and under ``context`` the key material of what they can reach. `scope`
    is that same part of the context with its real values, the only context the content is
    rendered in when the step runs. `inputs` and `outputs` are normalised workdir-relative
    paths, directories ending in ``/``.
    """

    id: str
    group: str
    kind: str
    spec: StepBase
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    needs: tuple[str, ...]
    definition: Mapping[str, Any]
    item: Any = None
    item_key: Any = None
    provider: str | None = None
    fallbacks: tuple[str, ...] = ()
    """Providers an llm step tries, in order, when `provider` is unavailable."""
    fields: Mapping[str, tuple[str | int, ...]] = field(default_factory=dict)
    scope: Mapping[str, Any] = field(default_factory=dict)
    expands: tuple[tuple[str, str | None], ...] = ()
    """Files other steps write that planning this step read (a `foreach` over an upstream
    output), each with its sha256 then (None: absent). The step comes after their writers and
    stands only while they still hold those bytes."""
    excludes: tuple[str, ...] = ()
    """The inputs' exclusions (``!`` entries), without the ``!``: patterns, like `inputs`."""
    optional: tuple[str, ...] = ()
    """The inputs that may match nothing or be missing."""
    plan_reads: tuple[str, ...] = ()
    """The files planning looked at (template files parsed, reply files looked for): the plan
    holds while they are unchanged, present or not."""

    def field_of(self, path: str) -> tuple[str | int, ...]:
        """Where in the pipeline file an input or output of this step was declared."""
        return ("steps", self.group, *self.fields.get(path, ()))


@dataclass(frozen=True)
class LoadedPipeline:
    """A validated pipeline with its rendered vars, environment, providers and steps."""

    file: Path
    workdir: Path
    spec: Pipeline
    source: SourceDocument
    vars: Mapping[str, Any]
    env: Mapping[str, str]
    providers: Mapping[str, Provider]
    steps: Mapping[str, Step] = field(default_factory=dict)
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    globs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """The `foreach` globs and what they matched when the pipeline was loaded."""
    unplannable: Mapping[str, str] = field(default_factory=dict)
    """Deferred groups whose file exists but cannot be planned from, with why."""
    deferred: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """The foreach groups that expand from files other steps write, not written yet: each
    group and those files. A build plans them once their writers are done."""
    warnings: tuple[str, ...] = ()
    """Problems that do not stop a build, as ``file:line:col: warning: ...`` lines."""
    removed: Mapping[str, str] = field(default_factory=dict)
    """Step ids whose `if` was false, with why: not steps, but named in messages."""
    data_files: Mapping[str, str | None] = field(default_factory=dict)
    """The data files `foreach: {rows: ...}` read when the pipeline was loaded, each with its
    sha256 then (None: absent)."""

    @property
    def name(self) -> str:
        """The pipeline's name, or its file's stem."""
        return self.spec.name or self.file.stem

    def members(self, name: str) -> tuple[str, ...] | None:
        """The step ids a name stands for (a step, or a foreach group), None if unknown."""
        if name in self.steps:
            return (name,)
        return self.groups.get(name)

    def names(self) -> list[str]:
        """Every name a target, `needs` or ``steps.`` may use."""
        return [*self.steps, *(g for g in self.groups if g not in self.steps)]
