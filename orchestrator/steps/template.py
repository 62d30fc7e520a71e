"""Template steps: inline `template:` text, or a `template_file:` that becomes an input, rendered
to the step's one output when the step runs."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field, model_validator

from orchestrator.language.spec import StepBase, require_one_key
from orchestrator.steps import Kind, Planning
from orchestrator.steps.base import Outcome, StepContext

_EXPRESSION = re.compile(r"\{\{.*?\}\}")
_TEMPLATE_SUFFIXES = frozenset(
    [
        "j2",
        "jinja",
        "jinja2",
        "tmpl",
        "tpl",
        "html",
        "htm",
        "md",
        "markdown",
        "txt",
        "rst",
        "xml",
        "json",
        "yaml",
        "yml",
        "toml",
        "csv",
        "css",
        "js",
        "py",
        "sh",
        "ini",
        "cfg",
    ]
)


class TemplateStep(StepBase):
    """Renders a Jinja template (inline text, or a file that becomes an input) to its output."""

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["template"]}, {"required": ["template_file"]}]}
    )
    KEYS: ClassVar[tuple[str, ...]] = ("template", "template_file")

    kind: Literal["template"] = "template"
    template: str | None = Field(None, description="The template text itself.")
    template_file: str | None = Field(
        None, description="A Jinja template file; it becomes an input of the step."
    )

    @model_validator(mode="after")
    def _one_template(self) -> TemplateStep:
        require_one_key(self)
        return self


def plan(step: Planning) -> tuple[dict[str, Any], None]:
    """The template text is content; a template file is an input whose text is parsed now."""
    spec = step.spec
    assert isinstance(spec, TemplateStep)
    step.require_one_output()
    if spec.template_file is not None:
        path = step.input_file(("template_file",), spec.template_file)
        step.content_file(("template_file",), path)
        return {"template_file": path}, None
    assert spec.template is not None
    if looks_like_path(spec.template):
        raise step.fail(
            f"{step.label}: 'template' is the template text itself, but"
            f" '{spec.template.strip()}' looks like a file name; to render a file, write"
            " 'template_file:' instead",
            ("template",),
        )
    return {"template": step.content(("template",), spec.template)}, None


def looks_like_path(text: str) -> bool:
    """One word naming a file: a known template suffix, or a folder and a suffix."""
    word = _EXPRESSION.sub("x", text.strip())
    if not word or any(c.isspace() for c in word) or "{%" in word or "{#" in word:
        return False
    stem, dot, suffix = word.rpartition(".")
    if not dot or not stem or not suffix.isalnum():
        return False
    return suffix.lower() in _TEMPLATE_SUFFIXES or "/" in stem


async def execute(ctx: StepContext) -> Outcome:
    """Render the template with real `read()` contents and write it atomically."""
    definition = ctx.step.definition
    (output,) = ctx.step.outputs
    if "template_file" in definition:
        rendered = ctx.render_file(definition["template_file"])
    else:
        rendered = str(ctx.render(definition["template"]))
    return Outcome(written=[ctx.write(output, rendered)])


KIND = Kind(TemplateStep, plan=plan, execute=execute)
