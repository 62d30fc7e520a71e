"""`foreach: {rows: ...}` and `foreach: {matrix: ...}` end to end: one step per row of a data file
or per combination of a matrix, each rerun only when its own row or values change."""

from __future__ import annotations

import json

import pytest

from .buildkit import Project

ROWS = """\
version: 1
steps:
  case:
    foreach: {rows: data/cases.jsonl, key: id}
    run: >-
      mkdir -p out; echo "{{ item.id }}" >> runs.log;
      echo "{{ item.text }}" > "out/{{ item.id }}.txt"
    output: "out/{{ item.id }}.txt"
"""


def jsonl(*rows: dict[str, object]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def build(project: Project) -> list[str]:
    """Build, and say which step commands ran."""
    result = project.orch("build", "-j", "1")
    assert result.exit_code == 0, result.stdout + result.stderr
    return project.new_runs()


@pytest.fixture
def rows(project: Project) -> Project:
    project.pipeline(ROWS)
    project.write("data/cases.jsonl", jsonl({"id": "a", "text": "A"}, {"id": "b", "text": "B"}))
    assert sorted(build(project)) == ["a", "b"]
    return project


def test_each_row_is_a_step_named_by_its_key(rows: Project) -> None:
    assert rows.read("out/a.txt") == "A\n"
    assert sorted(rows.lock()) == ["case@a", "case@b"]
    assert rows.orch("build").stdout == "all 2 steps up to date\n"


def test_appending_a_row_runs_only_its_step(rows: Project) -> None:
    rows.write("data/cases.jsonl", rows.read("data/cases.jsonl") + jsonl({"id": "c", "text": "C"}))
    assert build(rows) == ["c"]
    assert rows.read("out/c.txt") == "C\n"


def test_changing_one_row_reruns_only_its_step(rows: Project) -> None:
    rows.write("data/cases.jsonl", jsonl({"id": "a", "text": "A"}, {"id": "b", "text": "B2"}))
    assert build(rows) == ["b"]
    assert rows.read("out/b.txt") == "B2\n"


def test_editing_the_rows_file_invalidates_the_saved_plan(rows: Project) -> None:
    assert rows.orch("build").stdout == "all 2 steps up to date\n"
    (plan,) = (rows.root / ".orch" / "plans").glob("*.json")
    saved = plan.read_bytes()  # saved under this test's environment (see test_plancache)
    assert rows.orch("build").stdout == "all 2 steps up to date\n"
    assert plan.read_bytes() == saved, "an unchanged pipeline reuses its saved plan"
    rows.write("data/cases.jsonl", jsonl({"id": "a", "text": "A"}))
    status = rows.orch("status")
    assert "case@b" not in status.stdout, "the plan was compiled again from the new rows"
    assert rows.orch("build").stdout == "all 1 step up to date\n"
    assert plan.read_bytes() != saved


def test_rows_without_a_key_are_named_by_index_and_appending_keeps_the_names(
    project: Project,
) -> None:
    project.pipeline(ROWS.replace(", key: id", "").replace('"out/{{ item.id }}', '"out/{{ key }}'))
    project.write("data/cases.jsonl", jsonl({"id": "a", "text": "A"}, {"id": "b", "text": "B"}))
    assert sorted(build(project)) == ["a", "b"]
    assert sorted(project.lock()) == ["case@0", "case@1"]
    appended = project.read("data/cases.jsonl") + jsonl({"id": "c", "text": "C"})
    project.write("data/cases.jsonl", appended)
    assert build(project) == ["c"]
    assert project.read("out/2.txt") == "C\n"


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("cases.json", '[{"id": "a", "text": "A"}, {"id": "b", "text": "B"}]'),
        ("cases.ndjson", jsonl({"id": "a", "text": "A"}, {"id": "b", "text": "B"})),
        ("cases.yaml", "- {id: a, text: A}\n- id: b\n  text: B\n"),
        ("cases.yml", "[{id: a, text: A}, {id: b, text: B}]\n"),
        ("cases.csv", "id,text\na,A\nb,B\n"),
    ],
)
def test_every_format_gives_the_same_rows(project: Project, name: str, text: str) -> None:
    project.pipeline(ROWS.replace("cases.jsonl", name))
    project.write(f"data/{name}", text)
    assert sorted(build(project)) == ["a", "b"]
    assert [project.read("out/a.txt"), project.read("out/b.txt")] == ["A\n", "B\n"]


def test_the_rows_path_is_a_template(project: Project) -> None:
    project.pipeline(
        ROWS.replace("version: 1\n", "version: 1\nvars:\n  set: cases\n").replace(
            "data/cases.jsonl", "'data/{{ set }}.jsonl'"
        )
    )
    project.write("data/cases.jsonl", jsonl({"id": "a", "text": "A"}))
    assert build(project) == ["a"]


def test_a_mapping_with_other_keys_than_the_forms_is_a_plain_mapping(project: Project) -> None:
    project.pipeline(
        """\
        version: 1
        steps:
          size:
            foreach: {rows: 3, cols: 4}
            run: echo "{{ key }}={{ item }}" >> runs.log
          also:
            foreach: "{{ {'rows': 5} }}"
            run: echo "{{ key }}={{ item }}" >> runs.log
        """
    )
    assert sorted(build(project)) == ["cols=4", "rows=3", "rows=5"]
    assert sorted(project.lock()) == ["also@rows", "size@cols", "size@rows"]
    assert "warning" not in project.orch("validate").stderr


def test_a_mistyped_rows_form_is_read_as_a_mapping_with_a_warning(project: Project) -> None:
    project.write("cases.json", '[{"id": "a"}]')
    project.pipeline(
        """\
        version: 1
        steps:
          s:
            foreach: {rows: cases.json, kye: id}
            run: echo "{{ key }}" >> runs.log
        """
    )
    checked = project.orch("validate")
    assert checked.exit_code == 0
    assert (
        "orch.yaml:4:14: warning: step 's': foreach has 'rows' and 'kye', so it is read as a"
        " plain mapping (one step per key); the 'rows' form takes only 'rows' and 'key'"
    ) in checked.stderr


# --------------------------------------------------------------------------- matrix

MATRIX = """\
version: 1
steps:
  tr:
    foreach:
      matrix: {locale: [fr, de], doc: "docs/*.md"}
    run: echo "{{ item.locale }} {{ item.doc }}" >> runs.log
"""


@pytest.fixture
def matrix(project: Project) -> Project:
    project.write("docs/a.md", "a\n")
    project.write("docs/b.md", "b\n")
    project.pipeline(MATRIX)
    assert build(project) == ["fr docs/a.md", "fr docs/b.md", "de docs/a.md", "de docs/b.md"]
    return project


def test_a_matrix_step_per_combination_in_declared_order(matrix: Project) -> None:
    assert list(matrix.lock()) == sorted(
        ["tr@fr,docs/a.md", "tr@fr,docs/b.md", "tr@de,docs/a.md", "tr@de,docs/b.md"]
    )
    assert matrix.orch("build").stdout == "all 4 steps up to date\n"


def test_adding_a_matrix_value_runs_only_the_new_combinations(matrix: Project) -> None:
    matrix.pipeline(MATRIX.replace("[fr, de]", "[fr, de, it]"))
    assert build(matrix) == ["it docs/a.md", "it docs/b.md"]
    matrix.write("docs/c.md", "c\n")
    assert build(matrix) == ["fr docs/c.md", "de docs/c.md", "it docs/c.md"]


def test_exclude_drops_combinations_and_include_adds_them(matrix: Project) -> None:
    axes = '{locale: [fr, de], doc: "docs/*.md"}\n'
    matrix.pipeline(
        MATRIX.replace(
            axes,
            axes
            + "      exclude: [{locale: de, doc: docs/b.md}, {doc: docs/a.md, locale: fr}]\n"
            + "      include: [{locale: en, doc: docs/a.md}]\n",
        )
    )
    assert build(matrix) == ["en docs/a.md"]
    assert sorted(matrix.lock()) == ["tr@de,docs/a.md", "tr@en,docs/a.md", "tr@fr,docs/b.md"]


def test_an_axis_may_be_an_expression_and_values_that_are_not_plain_go_by_index(
    project: Project,
) -> None:
    project.pipeline(
        """\
        version: 1
        vars:
          sizes: [1, 2]
        steps:
          grid:
            foreach:
              matrix: {size: "{{ sizes }}", opts: [{fast: true}, {fast: false}]}
            run: echo "{{ item.size }} {{ item.opts.fast }}" >> runs.log
        """
    )
    assert build(project) == ["1 True", "1 False", "2 True", "2 False"]
    assert sorted(project.lock()) == ["grid@1,0", "grid@1,1", "grid@2,0", "grid@2,1"]
