"""`include:`: a pipeline made of fragment files builds as one, and every problem in a fragment
is reported at the fragment's own `file:line:col`."""

from __future__ import annotations

import textwrap

from .buildkit import Build, Project

PIPELINE = """\
    version: 1
    include: [parts/fetch.yaml, parts/report.yaml]
    vars:
      greeting: hello
    steps:
      publish:
        inputs: [out/report.txt]
        run: echo publish >> runs.log && cp out/report.txt published.txt
        output: published.txt
"""

FETCH = """\
vars:
  greeting: fragment default
  source: data.txt
steps:
  fetch:
    inputs: ["{{ source }}"]
    run: echo fetch >> runs.log && mkdir -p out && cat {{ source }} > out/data.txt
    output: out/data.txt
"""

REPORT = """\
include: [shared/words.yaml]
steps:
  report:
    inputs: [out/data.txt]
    run: >-
      echo report >> runs.log &&
      echo "{{ greeting }} {{ word }}: $(cat out/data.txt)" > out/report.txt
    output: out/report.txt
"""

WORDS = """\
vars:
  word: world
"""


def _project(project: Project) -> Project:
    project.write("data.txt", "42\n")
    project.write("parts/fetch.yaml", FETCH)
    project.write("parts/report.yaml", REPORT)
    project.write("parts/shared/words.yaml", WORDS)
    project.pipeline(PIPELINE)
    return project


def _refused(project: Project, *args: str) -> Build:
    """`orch validate` refusing the pipeline: exit 2, no traceback, nothing written."""
    result = project.orch("validate", *args)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not project.exists(".orch")
    return result


def _line(text: str, marker: str) -> int:
    """The 1-based number of the only line of `text` holding `marker`."""
    hits = [n for n, line in enumerate(text.splitlines(), 1) if marker in line]
    assert len(hits) == 1, hits
    return hits[0]


def test_a_pipeline_with_fragments_builds_as_one(project: Project) -> None:
    _project(project)
    first = project.orch("build")
    assert first.exit_code == 0, first.stderr
    assert sorted(project.new_runs()) == ["fetch", "publish", "report"]
    # The pipeline's var replaces the fragment's; a nested include is relative to its file,
    # while the steps' paths stay relative to the workdir.
    assert project.read("published.txt") == "hello world: 42\n"
    assert project.orch("build").stdout == "all 3 steps up to date\n"


def test_editing_a_fragment_reruns_only_the_steps_it_changes(project: Project) -> None:
    _project(project)
    assert project.orch("build").exit_code == 0
    project.new_runs()
    project.write("parts/shared/words.yaml", WORDS.replace("world", "there"))
    second = project.orch("build")
    assert second.exit_code == 0, second.stderr
    assert project.new_runs() == ["report", "publish"]
    assert project.read("published.txt") == "hello there: 42\n"
    assert project.orch("build").stdout == "all 3 steps up to date\n"


def test_a_fragment_edit_that_changes_nothing_runs_nothing(project: Project) -> None:
    _project(project)
    assert project.orch("build").exit_code == 0
    project.new_runs()
    project.write("parts/fetch.yaml", FETCH + "# a comment\n")
    assert project.orch("build").stdout == "all 3 steps up to date\n"
    assert project.new_runs() == []


def test_an_unknown_key_in_a_fragment_step_is_located_in_the_fragment(project: Project) -> None:
    _project(project)
    text = REPORT.replace("    output: out/report.txt", "    ouput: out/report.txt")
    project.write("parts/report.yaml", text)
    result = _refused(project)
    assert result.stderr.startswith(
        f"parts/report.yaml:{_line(text, 'ouput')}:5: unknown key 'ouput' in step 'report';"
        " did you mean 'output'?\n"
    )
    assert "\n      ouput: out/report.txt\n      ^\n" in result.stderr


def test_a_bad_template_in_a_fragment_is_located_in_the_fragment(project: Project) -> None:
    _project(project)
    text = FETCH.replace('"{{ source }}"', '"{{ sauce }}"')
    project.write("parts/fetch.yaml", text)
    result = _refused(project)
    assert result.stderr.startswith(f"parts/fetch.yaml:{_line(text, 'sauce')}:")
    assert "step 'fetch', field 'inputs[0]': undefined variable 'sauce'" in result.stderr


def test_a_dependency_cycle_across_files_is_located_in_the_fragment(project: Project) -> None:
    _project(project)
    text = FETCH.replace('["{{ source }}"]', '["{{ source }}", published.txt]')
    project.write("parts/fetch.yaml", text)
    result = _refused(project)
    assert result.stderr.startswith(
        f"parts/fetch.yaml:{_line(text, 'fetch:')}:3: dependency cycle:"
        " fetch -> report -> publish -> fetch\n"
    )


def test_an_empty_foreach_in_a_fragment_warns_at_the_fragment(project: Project) -> None:
    _project(project)
    project.write("parts/fetch.yaml", FETCH + "  each:\n    foreach: x/*\n    run: 'true'\n")
    result = project.orch("validate")
    assert result.exit_code == 0
    assert result.stderr.startswith(
        "parts/fetch.yaml:10:14: warning: step 'each': foreach ('x/*') matched no files"
    )


def test_an_include_cycle_names_the_chain_at_the_include_entry(project: Project) -> None:
    _project(project)
    project.write("parts/shared/words.yaml", "include: [../report.yaml]\n" + WORDS)
    result = _refused(project)
    assert result.stderr.startswith(
        "parts/shared/words.yaml:1:11: include cycle: orch.yaml -> parts/report.yaml"
        " -> parts/shared/words.yaml -> parts/shared/../report.yaml\n"
    )


def test_a_missing_include_is_reported_at_its_entry(project: Project) -> None:
    _project(project)
    project.pipeline(PIPELINE.replace("parts/report.yaml", "parts/reprot.yaml"))
    result = _refused(project)
    assert result.stderr.startswith(
        "orch.yaml:2:29: include 'parts/reprot.yaml': no such file (parts/reprot.yaml)\n"
    )


def test_a_step_declared_in_two_files_names_both_places(project: Project) -> None:
    _project(project)
    project.write("parts/report.yaml", REPORT.replace("  report:", "  fetch:"))
    result = _refused(project)
    assert result.stderr.startswith(
        "parts/report.yaml:3:3: step 'fetch' is declared twice: here and at parts/fetch.yaml:5:3\n"
    )


def test_a_var_in_two_included_files_names_both_places(project: Project) -> None:
    _project(project)
    project.write("parts/report.yaml", REPORT.replace("steps:", "vars:\n  source: x\nsteps:"))
    result = _refused(project)
    assert result.stderr.startswith(
        "parts/report.yaml:3:3: var 'source' is declared twice: here and at parts/fetch.yaml:3:3\n"
    )


def test_a_fragment_may_not_set_what_belongs_to_the_pipeline(project: Project) -> None:
    _project(project)
    project.write("parts/fetch.yaml", "workdir: elsewhere\n" + FETCH)
    result = _refused(project)
    assert result.stderr.startswith(
        "parts/fetch.yaml:1:1: 'workdir' belongs to the pipeline file, not to an included file\n"
    )


def test_a_malformed_include_list_is_refused(project: Project) -> None:
    project.pipeline(
        textwrap.dedent(
            """\
            version: 1
            include: parts/fetch.yaml
            steps:
              a: {run: "true"}
            """
        )
    )
    result = _refused(project)
    assert result.stderr.startswith("orch.yaml:2:10: 'include' must be a list of file paths\n")


def test_a_shared_fragment_is_merged_once_and_its_vars_replaced_in_place(
    project: Project,
) -> None:
    project.write("parts/base.yaml", 'vars:\n  n: 1\n  label: "n={{ n * 10 }}"\n')
    project.write("parts/a.yaml", "include: [base.yaml]\nsteps:\n  a: {run: 'true'}\n")
    project.write("parts/b.yaml", "include: [base.yaml]\nsteps:\n  b: {run: 'true'}\n")
    project.pipeline(
        """\
        version: 1
        include: [parts/a.yaml, parts/b.yaml]
        vars:
          n: 2
        steps:
          show:
            run: echo {{ label }} > label.txt
            output: label.txt
        """
    )
    result = project.orch("build")
    assert result.exit_code == 0, result.stderr
    assert project.read("label.txt") == "n=20\n"


def test_a_provider_problem_in_a_fragment_is_located_in_the_fragment(project: Project) -> None:
    project.write(
        "parts/llm.yaml", "providers:\n  local:\n    kind: fake\n    model: '{{ nope }}'\n"
    )
    project.pipeline(
        """\
        version: 1
        include: [parts/llm.yaml]
        steps:
          ask: {prompt: hi, output: reply.md}
        """
    )
    result = _refused(project)
    assert result.stderr.startswith("parts/llm.yaml:3:5: provider 'local': ")
    assert "undefined variable 'nope'" in result.stderr


VALUES_PIPELINE = """\
    version: 1
    include: [parts/train.yaml]
    vars:
      - params.yaml
      - {lr: "{{ train.lr }}"}
    steps:
      fit:
        run: echo "{{ lr }} {{ train.n }}" > fit.txt; echo fit >> runs.log
        output: fit.txt
"""

TRAIN = """\
vars:
  - defaults.json
  - {label: "n={{ train.n }}"}
steps:
  describe:
    run: echo "{{ label }} {{ train.lr }}" > describe.txt; echo describe >> runs.log
    output: describe.txt
"""


def _values_project(project: Project) -> Project:
    project.write("defaults.json", '{"train": {"n": 1, "lr": 0.5}}')
    project.write("params.yaml", "train:\n  n: 7\n")
    project.write("parts/train.yaml", TRAIN)
    project.pipeline(VALUES_PIPELINE)
    return project


def test_values_files_in_fragments_merge_in_include_order(project: Project) -> None:
    _values_project(project)
    assert project.orch("build").exit_code == 0
    assert project.read("describe.txt") == "n=1 0.5\n", "the fragment's vars come first"
    assert project.read("fit.txt") == "0.5 7\n", "the pipeline's own values file merges last"
    project.new_runs()
    project.write("defaults.json", '{"train": {"n": 1, "lr": 0.25}}')
    assert project.orch("build").exit_code == 0
    assert sorted(project.new_runs()) == ["describe", "fit"], "both read train.lr"
    project.write("params.yaml", "train:\n  n: 8\n")
    assert project.orch("build").exit_code == 0
    assert project.new_runs() == ["fit"], "describe's label saw n before params.yaml"


def test_a_missing_values_file_in_a_fragment_is_located_in_the_fragment(
    project: Project,
) -> None:
    _values_project(project)
    project.write("parts/train.yaml", TRAIN.replace("defaults.json", "missing.json"))
    result = _refused(project)
    assert result.stderr.startswith("parts/train.yaml:2:5: values file 'missing.json' not found\n")
