"""Edges come from paths and needs; targets select what they need; drawings parse."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pydot
import pytest
from click.testing import CliRunner

from orchestrator.cli.commands import cli
from orchestrator.core.errors import UsageError
from orchestrator.plan import graph
from orchestrator.plan.compiled import compile_plan
from orchestrator.plan.loading import load

from .conftest import FIXTURES, ROOT

FULL = FIXTURES / "full" / "pipeline.yaml"
FULL_EDGES = {
    ("lint@src/a.py", "summary"),
    ("lint@src/b.py", "summary"),
    ("translate@en", "summary"),
    ("translate@fr", "summary"),
    ("summary", "report"),
    ("sizes@small", "report"),
    ("sizes@large", "report"),
}


def parse_dot(text: str) -> pydot.Dot:
    """The one graph that `text` describes, in the Graphviz DOT grammar."""
    graphs = pydot.graph_from_dot_data(text)
    assert graphs is not None, "not a DOT graph"
    (parsed,) = graphs
    return parsed


def unquoted(name: object) -> str:
    """A DOT identifier without its double quotes."""
    assert isinstance(name, str), name
    return name.strip('"')


def edges_of(file: Path) -> set[tuple[str, str]]:
    pipeline = load(file, environ={})
    return set(graph.build(pipeline).edges)


def test_full_pipeline_edges_come_from_paths_globs_folders_and_needs() -> None:
    assert edges_of(FULL) == FULL_EDGES


NOTES_FILES = (
    "pyproject.toml",
    "conftest.py",
    "notes_api/__init__.py",
    "notes_api/database.py",
    "notes_api/models.py",
    "notes_api/schemas.py",
    "notes_api/main.py",
    "tests/test_notes.py",
)
"""The files the flagship's architect lists, one builder step each."""


def test_notes_app_edges() -> None:
    builders = [f"builder@{path}" for path in NOTES_FILES]
    assert edges_of(ROOT / "pipelines" / "notes_app.yaml") == {
        ("architect", "docs"),
        ("docs", "qa"),
        *(("architect", builder) for builder in builders),
        *((builder, "qa") for builder in builders),
    }


@pytest.mark.parametrize(
    ("input_path", "output", "linked"),
    [
        ("gen/a.txt", "gen/a.txt", True),
        ("gen/a.txt", "gen/", True),
        ("gen/", "gen/sub/a.txt", True),
        ("gen/*.txt", "gen/a.txt", True),
        ("gen/**/*.py", "gen/", True),
        ("*.txt", "gen/", False),
        ("gen/*.md", "gen/a.txt", False),
        ("gen/a.txt", "gen/ab.txt", False),
        ("gen/", "generated/a.txt", False),
    ],
)
def test_an_edge_exists_exactly_when_the_input_may_read_the_output(
    write_pipeline: Callable[..., Path], input_path: str, output: str, linked: bool
) -> None:
    file = write_pipeline(
        f"""
        version: 1
        steps:
          make: {{ run: x, output: "{output}" }}
          use: {{ run: x, inputs: ["{input_path}"] }}
        """,
        {"gen/a.txt": "", "gen/b.py": "", "gen/c.md": "", "top.txt": "", "gen/ab.txt": ""},
    )
    assert edges_of(file) == ({("make", "use")} if linked else set())


def test_a_step_may_write_into_a_folder_another_step_declares(
    write_pipeline: Callable[..., Path],
) -> None:
    file = write_pipeline(
        """
        version: 1
        steps:
          app: { run: x, output: out/ }
          readme: { run: x, output: out/README.md }
          check: { run: x, inputs: [out/] }
        """
    )
    assert edges_of(file) == {("app", "check"), ("readme", "check")}


def test_targets_select_the_step_and_what_it_needs() -> None:
    pipeline = load(FULL, environ={})
    plan = compile_plan(pipeline)
    assert set(plan.select(["summary"])) == {
        "summary",
        "lint@src/a.py",
        "lint@src/b.py",
        "translate@en",
        "translate@fr",
    }
    assert set(plan.select(["sizes"])) == {"sizes@small", "sizes@large"}
    assert plan.select([]) == list(plan.steps)
    with pytest.raises(UsageError, match="did you mean 'summary'"):
        plan.select(["sumary"])


def run_graph(fmt: str) -> str:
    result = CliRunner().invoke(cli, ["graph", str(FULL), "--format", fmt])
    assert result.exit_code == 0, result.output
    return result.output


def test_text_format_lists_each_step_with_what_it_needs() -> None:
    lines = run_graph("text").splitlines()
    assert lines[:6] == [
        "lint@src/a.py",
        "lint@src/b.py",
        "translate@en",
        "translate@fr",
        "sizes@small",
        "sizes@large",
    ]
    assert re.fullmatch(
        r"summary +<- lint@src/a.py, lint@src/b.py, translate@en, translate@fr", lines[6]
    )
    assert re.fullmatch(r"report +<- sizes@small, sizes@large, summary", lines[7])


def test_dot_format_parses_with_graphviz_grammar_and_has_the_edges() -> None:
    parsed = parse_dot(run_graph("dot"))
    edges = {(unquoted(e.get_source()), unquoted(e.get_destination())) for e in parsed.get_edges()}
    assert edges == FULL_EDGES
    assert unquoted(parsed.get_name()) == "full"


MERMAID_NODE = re.compile(r'^    (s\d+)\["([^"<>&]*)"\]$')
MERMAID_EDGE = re.compile(r"^    (s\d+) --> (s\d+)$")


def test_mermaid_format_is_a_valid_flowchart_with_the_edges() -> None:
    header, *body = run_graph("mermaid").splitlines()
    assert header == "flowchart LR"
    labels: dict[str, str] = {}
    edges = set()
    for line in body:
        if node := MERMAID_NODE.match(line):
            labels[node[1]] = node[2]
        elif edge := MERMAID_EDGE.match(line):
            edges.add((labels[edge[1]], labels[edge[2]]))
        else:
            pytest.fail(f"not a mermaid flowchart line: {line!r}")
    assert edges == FULL_EDGES


def test_mermaid_and_dot_escape_awkward_step_names(write_pipeline: Callable[..., Path]) -> None:
    file = write_pipeline(
        """
        version: 1
        steps:
          quote: { foreach: ['say "hi"', "a<b>&c"], run: x }
        """
    )
    runner = CliRunner()
    mermaid = runner.invoke(cli, ["graph", str(file), "--format", "mermaid"]).output
    assert all(MERMAID_NODE.match(line) for line in mermaid.splitlines()[1:])
    dot = runner.invoke(cli, ["graph", str(file), "--format", "dot"]).output
    parsed = parse_dot(dot)
    names = {n.get_name() for n in parsed.get_nodes()} - {"node"}
    assert names == {'"quote@say \\"hi\\""', '"quote@a<b>&c"'}
