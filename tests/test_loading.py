"""A valid pipeline loads: vars, dotenv, --set, foreach, kinds, rendering and providers."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.core.errors import PipelineError, TemplateError
from orchestrator.language.pipeline import Step
from orchestrator.language.templating import Reader
from orchestrator.plan import graph
from orchestrator.plan.loading import load

from . import buildkit
from .conftest import FIXTURES

FULL = FIXTURES / "full" / "pipeline.yaml"


def rendered(step: Step, field: str) -> Any:
    """What a content field of a step of the full pipeline renders to when the step runs."""
    return buildkit.rendered(step, field, FULL.parent)


def test_full_pipeline_has_every_kind_and_expands_foreach() -> None:
    pipeline = load(FULL, environ={})
    assert list(pipeline.steps) == [
        "lint@src/a.py",
        "lint@src/b.py",
        "translate@en",
        "translate@fr",
        "sizes@small",
        "sizes@large",
        "summary",
        "report",
    ]
    kinds = {step.group: step.kind for step in pipeline.steps.values()}
    assert kinds == {
        "lint": "shell",
        "translate": "template",
        "sizes": "shell",
        "summary": "llm",
        "report": "shell",
    }
    assert pipeline.workdir == FULL.parent


def test_vars_render_in_order_and_dotenv_fills_the_environment() -> None:
    pipeline = load(FULL, environ={})
    assert pipeline.vars["message"] == "hello, dotenv"
    assert pipeline.env["FROM_DOTENV"] == "yes"
    assert rendered(pipeline.steps["report"], "env") == {"MESSAGE": "hello, dotenv"}


def test_real_environment_wins_over_dotenv() -> None:
    pipeline = load(FULL, environ={"WHO": "shell"})
    assert pipeline.vars["message"] == "hello, shell"


def test_set_overrides_a_var_verbatim_and_later_vars_see_it() -> None:
    pipeline = load(FULL, environ={}, overrides={"who": "{{ raw }}"})
    assert pipeline.vars["message"] == "hello, {{ raw }}"


def test_foreach_binds_item_and_key() -> None:
    steps = load(FULL, environ={}).steps
    assert steps["lint@src/b.py"].outputs == ("build/lint/b.ok",)
    assert steps["lint@src/b.py"].inputs == ("src/b.py",)
    assert rendered(steps["sizes@large"], "run") == "echo large=100 > build/sizes/large.txt"
    assert steps["translate@fr"].scope == {"greeting": "hello", "item": "fr"}


def test_content_is_kept_as_source_for_run_time_and_lists_splice_into_inputs() -> None:
    summary = load(FULL, environ={}).steps["summary"]
    assert summary.inputs == ("build/en.txt", "build/fr.txt", "build/lint/")
    assert summary.definition["prompt"] == 'Summarise: {{ read("build/en.txt") }}\n'
    assert summary.provider == "offline"


def test_stdout_capture_is_an_output() -> None:
    report = load(FULL, environ={}).steps["report"]
    assert report.outputs == ("build/report.txt", "build/report.log")


def test_prompt_file_is_an_implicit_input_parsed_for_what_it_reaches(
    write_pipeline: Callable[..., Path],
) -> None:
    file = write_pipeline(
        """
        version: 1
        vars: { topic: cats }
        providers: { fake: { kind: fake } }
        steps:
          ask:
            prompt_file: prompts/ask.j2
            output: out.md
        """,
        {"prompts/ask.j2": "Tell me about {{ topic }}."},
    )
    step = load(file, environ={}).steps["ask"]
    assert step.inputs == ("prompts/ask.j2",)
    assert step.definition["prompt_file"] == "prompts/ask.j2"
    assert step.scope == {"topic": "cats"}


def test_foreach_mapping_of_non_scalars_uses_keys_and_list_of_mappings_uses_indexes(
    write_pipeline: Callable[..., Path],
) -> None:
    file = write_pipeline(
        """
        version: 1
        steps:
          by_key:
            foreach: { a: { n: 1 }, b: { n: 2 } }
            run: echo {{ key }} {{ item.n }}
          by_index:
            foreach: [{ n: 1 }, { n: 2 }]
            run: echo {{ item.n }}
        """
    )
    steps = load(file, environ={}).steps
    assert list(steps) == ["by_key@a", "by_key@b", "by_index@0", "by_index@1"]
    assert rendered(steps["by_index@1"], "run") == "echo 2"


def test_steps_may_refer_to_outputs_of_steps_declared_later(
    write_pipeline: Callable[..., Path],
) -> None:
    file = write_pipeline(
        """
        version: 1
        steps:
          use:
            inputs: ["{{ steps.make.output }}"]
            run: cat {{ inputs[0] }}
          make:
            run: echo > made.txt
            output: made.txt
        """
    )
    assert load(file, environ={}).steps["use"].inputs == ("made.txt",)


def test_output_references_that_loop_are_an_error(write_pipeline: Callable[..., Path]) -> None:
    file = write_pipeline(
        """
        version: 1
        steps:
          a:
            run: x
            output: "{{ steps.b.output }}.a"
          b:
            run: x
            output: "{{ steps.a.output }}.b"
        """
    )
    with pytest.raises(PipelineError, match=r"a -> b -> a"):
        load(file, environ={})


def test_provider_option_replaces_the_default_provider(
    write_pipeline: Callable[..., Path],
) -> None:
    text = """
        version: 1
        providers: { one: { kind: fake }, two: { kind: fake, echo: true } }
        default_provider: "{{ env.ORCH_PROVIDER | default('one') }}"
        steps:
          ask: { prompt: hi, output: a.md }
          pinned: { prompt: hi, output: b.md, provider: one }
        """
    file = write_pipeline(text)
    assert load(file, environ={}).steps["ask"].provider == "one"
    assert load(file, environ={"ORCH_PROVIDER": "two"}).steps["ask"].provider == "two"
    steps = load(file, environ={}, provider="two").steps
    assert (steps["ask"].provider, steps["pinned"].provider) == ("two", "one")


def test_foreach_over_a_glob_matching_nothing_is_an_empty_group_others_may_need(
    write_pipeline: Callable[..., Path],
) -> None:
    file = write_pipeline(
        """
        version: 1
        steps:
          each: { foreach: "none/*.txt", run: "cat {{ item }}" }
          after: { run: "true", needs: [each] }
        """
    )
    pipeline = load(file, environ={})
    assert list(pipeline.steps) == ["after"]
    assert pipeline.members("each") == ()
    assert set(graph.build(pipeline).edges) == set()


def test_provider_fields_render_and_stay_typed(write_pipeline: Callable[..., Path]) -> None:
    file = write_pipeline(
        """
        version: 1
        vars: { model: small }
        providers:
          p: { kind: openai, model: "{{ model }}-v2", price: { input: 0.5, output: 1.5 } }
        steps:
          ask: { prompt: hi, output: a.md }
        """
    )
    provider = load(file, environ={}).providers["p"]
    assert provider.model == "small-v2"
    assert provider.price is not None and provider.price.output == 1.5


def test_template_file_inside_a_declared_folder_is_a_file_template(
    write_pipeline: Callable[..., Path],
) -> None:
    file = write_pipeline(
        """
        version: 1
        vars: { who: you }
        steps:
          page: { inputs: [tpl/], template_file: tpl/page.j2, output: page.txt }
        """,
        {"tpl/page.j2": "hi {{ who }}"},
    )
    step = load(file, environ={}).steps["page"]
    assert step.definition["template_file"] == "tpl/page.j2"
    assert step.scope == {"who": "you"}


def test_read_at_run_time_returns_content_but_refuses_symlinks_leading_out(
    tmp_path: Path,
) -> None:
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    (work / "notes.txt").write_text("real")
    (outside / "secret.txt").write_text("secret")
    (work / "link.txt").symlink_to(outside / "secret.txt")
    read = Reader(["*.txt"], work)
    assert read("notes.txt") == "real"
    with pytest.raises(TemplateError, match="leads outside the workdir"):
        read("link.txt")


BLOCK_LIBYAML = (
    "import runpy, sys; sys.modules['_ruamel_yaml'] = sys.modules['_ruamel_yaml_clibz'] = None;"
    " sys.argv = ['orch', *sys.argv[1:]]; runpy.run_module('orchestrator', run_name='__main__')"
)


@pytest.mark.parametrize("libyaml", [True, False], ids=["libyaml", "pure-python"])
def test_a_pipeline_reads_as_yaml_1_2_whichever_parser_and_directive(
    tmp_path: Path, libyaml: bool
) -> None:
    """`%YAML 1.1` does not turn `yes` into true nor make `0o17` text: the pipeline means the
    same on a machine without libyaml."""
    (tmp_path / "orch.yaml").write_text(
        "%YAML 1.1\n---\nversion: 1\nvars:\n  answer: yes\n  mode: 0o17\nsteps:\n  s:\n"
        "    run: echo '{{ vars.answer }} {{ vars.mode }}' > out.txt\n    output: out.txt\n"
    )
    launch = ["-m", "orchestrator"] if libyaml else ["-c", BLOCK_LIBYAML]
    done = subprocess.run(
        [sys.executable, *launch, "build"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.txt").read_text() == "yes 15\n"
