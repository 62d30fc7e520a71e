"""Loading a pipeline file: read and validate it, then expand its steps."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.language.pipeline import LoadedPipeline


def load(
    file: Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    provider: str | None = None,
) -> LoadedPipeline:
    """Read, validate and render a pipeline file; raise PipelineError on any problem."""
    import os

    from orchestrator.language.includes import read_pipeline
    from orchestrator.language.loader import validate
    from orchestrator.plan.expansion import expand
    from orchestrator.steps import language

    source = read_pipeline(file)
    spec = validate(source, language())
    pipeline = expand(
        file,
        spec,
        source,
        overrides=dict(overrides or {}),
        environ=dict(os.environ if environ is None else environ),
        provider_override=provider,
    )
    _check_provider_settings(pipeline)
    return pipeline


def _check_provider_settings(pipeline: LoadedPipeline) -> None:
    """Refuse `ORCH_PROVIDER_*` settings that are not valid, and a provider with no address,
    when the pipeline has providers."""
    from orchestrator.core.errors import PipelineError, UsageError
    from orchestrator.providers.config import overrides, resolve

    try:
        if pipeline.spec.providers:
            overrides(pipeline.env)
        for name, provider in pipeline.providers.items():
            resolve(name, provider, pipeline.env)
    except UsageError as exc:
        raise PipelineError.at(str(exc), None, pipeline.source.file) from exc
