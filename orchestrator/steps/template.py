"""Template steps: render a template (inline text or a file among the inputs) to the output."""

from __future__ import annotations

from ..errors import StepFailed, TemplateError
from ..settings import context_for
from ..templating import Reader
from .base import Outcome, StepContext


async def execute(ctx: StepContext) -> Outcome:
    """Render the template with real `read()` contents and write it atomically."""
    definition = ctx.step.definition
    (output,) = ctx.step.outputs
    if "template_file" in definition:
        text = _read_template(ctx, definition["template_file"])
        context = context_for(ctx.pipeline, ctx.step, Reader(ctx.step.inputs, ctx.workdir))
        try:
            rendered = ctx.renderer.render(text, context)
        except TemplateError as exc:
            raise StepFailed("template", f"in {definition['template_file']}: {exc}") from exc
    else:
        rendered = ctx.runtime(ctx.step.spec.template, definition["template"])  # type: ignore[union-attr]
    return Outcome(written=[ctx.write(output, rendered)])


def _read_template(ctx: StepContext, path: str) -> str:
    try:
        return (ctx.workdir / path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StepFailed("template", f"cannot read template '{path}': {exc}") from exc
