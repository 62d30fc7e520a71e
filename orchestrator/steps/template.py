"""Template steps: render a template (inline text or a file among the inputs) to the output."""

from __future__ import annotations

from .base import Outcome, StepContext


async def execute(ctx: StepContext) -> Outcome:
    """Render the template with real `read()` contents and write it atomically."""
    definition = ctx.step.definition
    (output,) = ctx.step.outputs
    if "template_file" in definition:
        rendered = ctx.render_file(definition["template_file"])
    else:
        rendered = ctx.runtime(ctx.step.spec.template, definition["template"])  # type: ignore[union-attr]
    return Outcome(written=[ctx.write(output, rendered)])
