"""`orch migrate`: a unified_orchestrator v2 job spec becomes a pipeline that validates."""

from __future__ import annotations

import re
import shlex
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import example, given, settings
from hypothesis import strategies as st

from orchestrator.cli.commands import cli
from orchestrator.language.loader import validate
from orchestrator.language.migrate import migrate
from orchestrator.language.source import SourceDocument, parse
from orchestrator.language.templating import Renderer
from orchestrator.plan.loading import load
from orchestrator.steps import language

from .buildkit import rendered
from .conftest import ROOT

PIPELINE = "pipelines/tiny_notes_api.yaml"
SPEC = """\
# A unified_orchestrator v2 job spec. (Not a fixture file: tests/fixtures/*.yaml are pipelines.)
project: tiny_notes_api
task_description: |
  Build a tiny notes API with FastAPI: create, list, read and delete notes.
  Each note has a title and a body; templates such as {{ braces }} stay as written.
  Storage: an in-memory dict, with pytest tests for every endpoint.
provider: ollama
concurrency: 4
timeout_s: 900
output_dir: src/generated
"""
TASK = (
    "Build a tiny notes API with FastAPI: create, list, read and delete notes.\n"
    "Each note has a title and a body; templates such as {{ braces }} stay as written.\n"
    "Storage: an in-memory dict, with pytest tests for every endpoint.\n"
)


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder holding the example job spec, as the current folder."""
    (tmp_path / "job.yaml").write_text(SPEC, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ORCH_PROVIDER", raising=False)
    return tmp_path


def write_spec(folder: Path, text: str, name: str = "job.yaml") -> Path:
    spec = folder / name
    spec.write_text(textwrap.dedent(text), encoding="utf-8")
    return spec


# --------------------------------------------------------------------------- the example


def test_the_example_spec_holds_the_task() -> None:
    assert parse(Path("job.yaml"), SPEC).data["task_description"] == TASK


def test_example_spec_converts_to_a_pipeline_that_validates(project: Path) -> None:
    result = run("migrate", "job.yaml", "-o", PIPELINE)
    assert (result.exit_code, result.stdout, result.stderr) == (0, f"wrote {PIPELINE}\n", "")

    checked = run("validate", PIPELINE)
    assert (checked.exit_code, checked.output) == (0, f"{PIPELINE}: ok (4 steps)\n")


def test_example_pipeline_has_the_architect_builder_docs_qa_graph(project: Path) -> None:
    run("migrate", "job.yaml", "-o", PIPELINE)
    drawn = run("graph", PIPELINE)
    assert drawn.exit_code == 0, drawn.output
    assert drawn.output.splitlines() == [
        "architect",
        "builder    <- architect",
        "docs       <- architect",
        "qa         <- builder, docs",
    ]


def test_example_pipeline_maps_provider_timeout_and_concurrency(project: Path) -> None:
    run("migrate", "job.yaml", "-o", PIPELINE)
    loaded = load(Path(PIPELINE), environ={})

    assert loaded.workdir == project.resolve()
    assert set(loaded.providers) == {"offline", "openai", "anthropic", "ollama"}
    for name in ("openai", "anthropic", "ollama"):
        provider = loaded.providers[name]
        assert (provider.timeout_s, provider.max_concurrency) == (900, 4)
        assert provider.total_timeout_s == 900
    offline = loaded.providers["offline"]
    assert offline.kind == "fake"
    assert getattr(offline, "responses", None) == "pipelines/tiny_notes_api/responses"
    assert {step.provider for step in loaded.steps.values() if step.kind == "llm"} == {"ollama"}
    chosen = load(Path(PIPELINE), environ={"ORCH_PROVIDER": "offline"})
    assert chosen.steps["architect"].provider == "offline"


def test_example_pipeline_steps_have_the_notes_app_shape(project: Path) -> None:
    run("migrate", "job.yaml", "-o", PIPELINE)
    loaded = load(Path(PIPELINE), environ={})
    steps = loaded.steps

    assert loaded.name == "tiny_notes_api"
    assert loaded.vars["app"] == "tiny_notes_api"
    assert loaded.vars["out"] == "src/generated"
    assert steps["architect"].outputs == ("build/tiny_notes_api/design.md",)
    assert steps["builder"].outputs == ("src/generated/",)
    assert steps["builder"].definition["extract"] == "files"
    assert steps["docs"].outputs == ("src/generated/README.md",)
    assert steps["qa"].needs == ("docs",)
    assert steps["qa"].outputs == ("build/tiny_notes_api/qa.txt",)
    assert rendered(steps["qa"], "run", project).endswith("src/generated/tests")
    assert rendered(steps["qa"], "env", project)["PYTHONDONTWRITEBYTECODE"] == "1"
    for name in ("architect", "builder", "docs"):
        assert steps[name].definition["system"]
        assert steps[name].definition["prompt"]


def test_task_text_reaches_the_architect_prompt_verbatim(project: Path) -> None:
    run("migrate", "job.yaml", "-o", PIPELINE)
    loaded = load(Path(PIPELINE), environ={})
    assert loaded.vars["task"] == TASK
    assert TASK in rendered(loaded.steps["architect"], "prompt", project)


def test_tricky_task_text_survives_yaml_and_jinja(project: Path) -> None:
    task = (
        "Keep {{ braces }}, {% if x %}tags{% endif %}, {# comments #} and {% endraw %}.\n"
        "  indented: 'single' and \"double\" quotes, a # hash and key: value\n"
        "- a list item\n"
    )
    write_spec(project, f"project: tricky\ntask_description: {_dq(task)}\n")

    assert run("migrate", "job.yaml", "-o", "tricky.yaml").exit_code == 0
    loaded = load(Path("tricky.yaml"), environ={})
    assert task in rendered(loaded.steps["architect"], "prompt", project)


def _dq(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


@settings(max_examples=150, deadline=None)
@given(st.text(min_size=1).filter(str.strip))
@example("{% endraw %}{{ x }}")
@example("{{%")
@example("ends {% raw")
@example("\n\nleading and trailing blank lines\n\n")
@example("  indented first line\nsecond\n")
@example("\ttab first")
@example("no newline at the end: {{")
@example("carriage\r\nreturns\r")
@example("\x85 next line, \u2028 separators, \ufeff and \x7f")
def test_any_task_text_round_trips(task: str) -> None:
    source = SourceDocument(Path("job.yaml"), "", {"project": "p", "task_description": task})
    text, warnings = migrate(source)
    assert warnings == []
    spec = validate(parse(Path("pipeline.yaml"), text), language())
    assert isinstance(spec.vars, dict)
    assert Renderer().render(spec.vars["task"], {}) == task


# --------------------------------------------------------------------------- unknown keys


def test_unknown_keys_are_reported_with_their_place_and_listed(project: Path) -> None:
    write_spec(
        project,
        """\
        project: tiny_notes_api
        task_description: Build it.
        retries: 3
        circuit_breaker:
          threshold: 5
          cooldown_s: 30
        provider: openai
        """,
    )
    result = run("migrate", "job.yaml", "-o", PIPELINE)

    assert result.exit_code == 0
    assert result.stdout == f"wrote {PIPELINE}\n"
    assert "job.yaml:3:1: warning: unknown key 'retries' is not converted" in result.stderr
    assert "job.yaml:4:1: warning: unknown key 'circuit_breaker' is not converted" in result.stderr
    comment = Path(PIPELINE).read_text(encoding="utf-8").split("version: 1")[0]
    assert "#   'retries' (line 3): set 'max_retries' under each provider instead" in comment
    assert "#   'circuit_breaker' (line 4)" in comment
    assert run("validate", PIPELINE).exit_code == 0


def test_a_misspelt_key_gets_a_suggestion(project: Path) -> None:
    write_spec(project, "project: p\ntask_description: t\nconcurency: 4\n")
    result = run("migrate", "job.yaml")
    assert result.exit_code == 0
    assert "job.yaml:3:1: warning: unknown key 'concurency'" in result.stderr
    assert "did you mean 'concurrency'?" in result.stderr


# --------------------------------------------------------------------------- invalid specs


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("task_description: t\n", "1:1", "missing 'project'"),
        ("project: p\n", "1:1", "missing 'task_description'"),
        ("project: [p]\ntask_description: t\n", "1:10", "'project': expected a project name"),
        ("project: my app\ntask_description: t\n", "1:10", "invalid project name"),
        ("project: p\ntask_description: {a: 1}\n", "2:19", "expected the text of the task"),
        ("project: p\ntask_description: '  '\n", "2:19", "not an empty string"),
        ("project: p\ntask_description: t\nprovider: gemini\n", "3:11", "unknown provider"),
        ("project: p\ntask_description: t\nprovider: 3\n", "3:11", "'provider': expected"),
        ("project: p\ntask_description: t\nconcurrency: 0\n", "3:14", "1 or more"),
        ("project: p\ntask_description: t\nconcurrency: '4'\n", "3:14", "not a string"),
        ("project: p\ntask_description: t\nconcurrency: 2.5\n", "3:14", "whole number"),
        ("project: p\ntask_description: t\nconcurrency: true\n", "3:14", "not a boolean"),
        ("project: p\ntask_description: t\ntimeout_s: 0\n", "3:12", "positive number"),
        ("project: p\ntask_description: t\ntimeout_s: -5\n", "3:12", "positive number"),
        ("project: p\ntask_description: t\ntimeout_s: .inf\n", "3:12", "positive number"),
        ("project: p\ntask_description: t\ntimeout_s: 900s\n", "3:12", "number of seconds"),
        ("project: p\ntask_description: t\noutput_dir: /srv/gen\n", "3:13", "is absolute"),
        ("project: p\ntask_description: t\noutput_dir: ../gen\n", "3:13", "outside the project"),
        ("project: p\ntask_description: t\noutput_dir: a/../../b\n", "3:13", "outside"),
        ("project: p\ntask_description: t\noutput_dir: .\n", "3:13", "project folder itself"),
        ("project: p\ntask_description: t\noutput_dir: 7\n", "3:13", "expected a folder"),
        ("project: p\ntask_description: t\noutput_dir: build\n", "3:13", "overlaps 'build/p/'"),
        ("project: p\ntask_description: t\noutput_dir: 'gen/*'\n", "3:13", "is a pattern"),
        ("", "1:1", "empty job spec"),
        ("- project\n", "1:1", "a job spec is a mapping"),
        ("project: p\n  bad: [\n", "2:6", "invalid YAML"),
        ("project: p\nproject: q\ntask_description: t\n", "2:1", "duplicate key"),
    ],
)
def test_invalid_specs_exit_2_at_their_place_and_write_nothing(
    project: Path, text: str, where: str, message: str
) -> None:
    write_spec(project, text)
    before = sorted(project.rglob("*"))

    result = run("migrate", "job.yaml", "-o", "out/pipeline.yaml")

    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith(f"job.yaml:{where}: "), result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(project.rglob("*")) == before


def test_every_invalid_value_is_reported_at_once(project: Path) -> None:
    write_spec(project, "project: p\ntask_description: 1\nconcurrency: 0\ntimeout_s: x\n")
    result = run("migrate", "job.yaml")
    assert result.exit_code == 2
    located = [line.split(": ")[0] for line in result.stderr.splitlines() if line[:1] != " "]
    assert located == ["job.yaml:2:19", "job.yaml:3:14", "job.yaml:4:12"]


def test_a_missing_spec_file_exits_2_naming_it(project: Path) -> None:
    result = run("migrate", "nope.yaml")
    assert (result.exit_code, result.stderr) == (2, "nope.yaml: no such job spec file\n")


# --------------------------------------------------------------------------- output


def test_output_file_is_not_overwritten_without_force(project: Path) -> None:
    target = project / PIPELINE
    target.parent.mkdir()
    target.write_text("mine\n")

    refused = run("migrate", "job.yaml", "-o", PIPELINE)
    assert refused.exit_code == 2
    assert f"{PIPELINE} exists; pass --force to overwrite it" in refused.stderr
    assert target.read_text() == "mine\n"

    forced = run("migrate", "job.yaml", "-o", PIPELINE, "--force")
    assert forced.exit_code == 0
    assert target.read_text().startswith("# Generated by `orch migrate`")
    assert [p.name for p in target.parent.iterdir()] == ["tiny_notes_api.yaml"]


def test_the_spec_itself_is_never_overwritten(project: Path) -> None:
    result = run("migrate", "job.yaml", "-o", "job.yaml", "--force")
    assert result.exit_code == 2
    assert "is the job spec itself" in result.stderr
    assert (project / "job.yaml").read_text() == SPEC


def test_without_output_the_pipeline_goes_to_stdout(project: Path) -> None:
    result = run("migrate", "job.yaml")
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout.startswith("# Generated by `orch migrate`")
    assert "workdir:" not in result.stdout.replace("`workdir:", "")
    assert list(project.iterdir()) == [project / "job.yaml"]

    (project / "orch.yaml").write_text(result.stdout, encoding="utf-8")
    assert run("validate").exit_code == 0


def test_a_pipeline_written_beside_the_project_needs_no_workdir(project: Path) -> None:
    assert run("migrate", "job.yaml", "-o", "orch.yaml").exit_code == 0
    assert load(Path("orch.yaml"), environ={}).workdir == project.resolve()
    assert "\nworkdir:" not in (project / "orch.yaml").read_text()


@pytest.mark.parametrize(
    ("given", "default"),
    [("provider: fake\n", "offline"), ("provider: OpenAI\n", "openai"), ("", "offline")],
)
def test_provider_mapping(project: Path, given: str, default: str) -> None:
    write_spec(project, f"project: p\ntask_description: t\n{given}")
    assert run("migrate", "job.yaml", "-o", "orch.yaml").exit_code == 0
    loaded = load(Path("orch.yaml"), environ={})
    assert loaded.steps["architect"].provider == default
    assert loaded.vars["out"] == "generated/p"
    assert loaded.providers["ollama"].max_concurrency is None


def test_an_invalid_spec_is_reported_before_a_refused_output(project: Path) -> None:
    write_spec(project, "project: p\n")
    (project / "orch.yaml").write_text("mine\n")
    result = run("migrate", "job.yaml", "-o", "orch.yaml")
    assert result.exit_code == 2
    assert result.stderr.startswith("job.yaml:1:1: missing 'task_description'")
    assert (project / "orch.yaml").read_text() == "mine\n"


# --------------------------------------------------------------------------- the docs


def test_the_docs_example_replays(project: Path) -> None:
    text = (ROOT / "docs" / "migrate.md").read_text(encoding="utf-8")
    example = text[text.index("## Example\n") :]
    (spec,) = re.findall(r"```yaml\n(.*?)```", example, re.DOTALL)
    (session,) = re.findall(r"```console\n(.*?)```", example, re.DOTALL)
    write_spec(project, spec)
    output = []
    for line in session.splitlines():
        if line.startswith("$ "):
            result = run(*shlex.split(line[2:])[1:])
            assert result.exit_code == 0, result.output
            output.append(result.output)
    expected = "".join(f"{line}\n" for line in session.splitlines() if not line.startswith("$ "))
    assert "".join(output) == expected
