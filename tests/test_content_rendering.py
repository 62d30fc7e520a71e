"""Content is rendered when its step runs, with the real contents of its inputs, and a step's
key covers everything that rendering can reach: each case here once built a wrong or stale
output while the build said it succeeded."""

from __future__ import annotations

import json

import pytest

from .buildkit import Project

STOCK = "name,qty\napple,30\npear,10\nfig,25\n"

BIG = (
    "{% for line in read('stock.csv').splitlines()[1:] %}{% set f = line.split(',') %}"
    "{% if f[1] | int > threshold %}{{ f[0] }};{% endif %}{% endfor %}"
)


def stock_pipeline(project: Project, threshold: int = 20) -> None:
    project.write("stock.csv", STOCK)
    project.pipeline(
        f"""\
        version: 1
        vars: {{threshold: {threshold}}}
        steps:
          upper:
            inputs: [stock.csv]
            template: "{{{{ read('stock.csv') | upper }}}}"
            output: out/upper.txt
          big:
            inputs: [stock.csv]
            template: "{BIG}"
            output: out/big.txt
          publish:
            needs: [big]
            run: cat out/big.txt > out/pub.txt
            outputs: [out/pub.txt]
        """
    )


def test_a_filter_over_read_renders_the_content_not_a_placeholder(project: Project) -> None:
    stock_pipeline(project)
    assert project.orch("build").exit_code == 0
    assert project.read("out/upper.txt") == STOCK.upper()


def test_a_loop_over_read_content_sees_the_rows(project: Project) -> None:
    stock_pipeline(project)
    assert project.orch("build").exit_code == 0
    assert project.read("out/big.txt") == "apple;fig;"


def test_a_var_used_only_inside_a_loop_over_read_content_is_in_the_key(
    project: Project,
) -> None:
    stock_pipeline(project, threshold=20)
    project.orch("build")
    stock_pipeline(project, threshold=26)
    rebuilt = project.orch("build")
    assert rebuilt.started() == ["big", "publish"]
    assert project.read("out/big.txt") == "apple;"
    stock_pipeline(project, threshold=20)
    back = project.orch("build")
    assert back.statuses()["big"] == "restored"
    assert project.read("out/big.txt") == project.read("out/pub.txt") == "apple;fig;"


def test_a_step_reruns_when_what_it_needs_changes(project: Project) -> None:
    stock_pipeline(project)
    project.orch("build")
    project.write("stock.csv", STOCK + "kiwi,99\n")
    rebuilt = project.orch("build")
    assert set(rebuilt.started()) == {"upper", "big", "publish"}
    assert project.read("out/pub.txt") == "apple;fig;kiwi;"
    status = project.orch("status")
    assert status.stdout.endswith("all 3 steps up to date\n")


def test_needs_reasons_name_the_needed_output(project: Project) -> None:
    stock_pipeline(project)
    project.orch("build")
    project.write("stock.csv", "name,qty\nplum,50\n")
    project.orch("build", "big")
    status = project.orch("status", "publish")
    assert "run         publish  (input modified: out/big.txt)" in status.lines


def test_a_shell_command_that_loops_over_read_content_runs_the_real_command(
    project: Project,
) -> None:
    project.write("files.txt", "a\nb\n")
    project.pipeline(
        """\
        version: 1
        steps:
          touch:
            inputs: [files.txt]
            run: |
              {% for name in read('files.txt').split() %}printf {{ name | upper }} > out/{{ name }}
              {% endfor %}
            outputs: [out/a, out/b]
        """
    )
    project.write("out/.keep", "")
    assert project.orch("build").exit_code == 0
    assert (project.read("out/a"), project.read("out/b")) == ("A", "B")


def test_a_prompt_that_tests_read_content_sends_the_real_text(project: Project) -> None:
    project.write("notes.md", "urgent: call back\n")
    project.pipeline(
        """\
        version: 1
        providers: { echo: { kind: fake, echo: true } }
        steps:
          ask:
            inputs: [notes.md]
            prompt: >-
              {% if 'urgent' in read('notes.md') %}Reply today{% else %}Reply later{% endif %}
            output: reply.txt
        """
    )
    assert project.orch("build").exit_code == 0
    assert project.read("reply.txt") == "Reply today"


def test_a_mistyped_template_path_is_an_error_with_a_hint(project: Project) -> None:
    project.write("templates/page.html.j2", "hi")
    project.pipeline(
        """\
        version: 1
        steps:
          page:
            template: templates/pgae.html.j2
            output: out/page.html
        """
    )
    result = project.orch("build")
    assert result.exit_code == 2
    assert "orch.yaml:4:15:" in result.stderr
    assert "write 'template_file:' instead" in result.stderr
    assert "Traceback" not in result.stderr
    assert not project.exists("out")


def test_template_file_renders_the_file_and_reruns_when_it_changes(project: Project) -> None:
    project.write("templates/page.html.j2", "<h1>{{ title }}</h1>")
    project.pipeline(
        """\
        version: 1
        vars: { title: Notes }
        steps:
          page:
            template_file: templates/page.html.j2
            output: out/page.html
        """
    )
    assert project.orch("build").exit_code == 0
    assert project.read("out/page.html") == "<h1>Notes</h1>"
    project.write("templates/page.html.j2", "<h2>{{ title }}</h2>")
    assert project.orch("build").started() == ["page"]
    assert project.read("out/page.html") == "<h2>Notes</h2>"


def test_a_long_one_line_inline_template_is_text(project: Project) -> None:
    text = "x" * 300 + " {{ n }}"
    project.pipeline(
        f"""\
        version: 1
        vars: {{ n: 7 }}
        steps:
          long:
            template: "{text}"
            output: long.txt
        """
    )
    result = project.orch("build")
    assert result.exit_code == 0, result.stderr
    assert project.read("long.txt") == "x" * 300 + " 7"


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("inputs", "[\"{{ read('a.txt') }}\"]"),
        ("foreach", "\"{{ read('a.txt').split() }}\""),
        ("needs", "[\"{{ read('a.txt') }}\"]"),
    ],
)
def test_structure_may_not_read_files(project: Project, field: str, text: str) -> None:
    project.write("a.txt", "x")
    project.pipeline(
        f"""\
        version: 1
        steps:
          s:
            {field}: {text}
            run: "true"
        """
    )
    result = project.orch("validate")
    assert result.exit_code == 2
    assert "orch.yaml:4:" in result.stderr
    assert "read()" in result.stderr


def test_an_undefined_name_in_content_is_found_before_anything_runs(project: Project) -> None:
    project.pipeline(
        """\
        version: 1
        vars: { name: x }
        steps:
          first:
            run: echo first > first.txt
            output: first.txt
          s:
            run: "{% if false %}echo {{ nmae }}{% endif %}"
        """
    )
    result = project.orch("build")
    assert result.exit_code == 2
    assert "orch.yaml:8:10: step 's', field 'run': undefined variable 'nmae'" in result.stderr
    assert "did you mean 'name'?" in result.stderr
    assert not project.exists("first.txt")


def test_reading_an_undeclared_file_is_found_before_anything_runs(project: Project) -> None:
    project.write("a.txt", "x")
    project.pipeline(
        """\
        version: 1
        steps:
          s:
            run: "{% if false %}cat {{ read('a.txt') }}{% endif %}"
        """
    )
    result = project.orch("validate")
    assert result.exit_code == 2
    assert "read('a.txt'): not a declared input of this step" in result.stderr


def test_a_var_guarded_by_default_may_be_missing(project: Project) -> None:
    project.pipeline(
        """\
        version: 1
        steps:
          s:
            run: printf '{{ suffix | default("none") }}' > out.txt
            output: out.txt
        """
    )
    assert project.orch("build").exit_code == 0
    assert project.read("out.txt") == "none"
    assert project.orch("build", "--set", "suffix=yes").started() == ["s"]
    assert project.read("out.txt") == "yes"


def test_an_environment_variable_a_command_names_is_in_its_key(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGION", "eu")
    project.pipeline(
        """\
        version: 1
        steps:
          s:
            run: printf '{{ env.REGION }}' > region.txt
            output: region.txt
          other:
            run: printf same > other.txt
            output: other.txt
        """
    )
    project.orch("build")
    monkeypatch.setenv("REGION", "us")
    monkeypatch.setenv("UNRELATED", "1")
    assert project.orch("build").started() == ["s"]
    assert project.read("region.txt") == "us"


def test_a_foreach_that_gives_no_step_is_a_warning_naming_it(project: Project) -> None:
    project.pipeline(
        """\
        version: 1
        steps:
          each:
            foreach: data/*.csv
            run: cat {{ item }}
        """
    )
    result = project.orch("build")
    assert result.exit_code == 0
    assert (
        "orch.yaml:4:14: warning: step 'each': foreach ('data/*.csv') matched no files"
        in result.stderr
    )


def test_a_template_file_another_step_writes_is_rendered_with_every_var(
    project: Project,
) -> None:
    project.pipeline(
        """\
        version: 1
        vars: { who: Ada, unused: 1 }
        steps:
          gen:
            run: printf '{{ "{{" }} who {{ "}}" }}' > t.j2
            output: t.j2
          page:
            template_file: t.j2
            output: page.txt
        """
    )
    assert project.orch("build").exit_code == 0
    assert project.read("page.txt") == "Ada"
    rebuilt = project.orch("build", "--set", "unused=2")
    assert rebuilt.started() == ["page"]  # the file was not known when the key was made
    project.pipeline(project.read("orch.yaml").replace(" who ", " env.HOME "))
    failed = project.orch("build")
    assert failed.exit_code == 1
    assert "cannot use env" in failed.stdout


def test_foreach_items_that_are_odd_file_names_build_and_stay_up_to_date(
    project: Project,
) -> None:
    names = ["a b.txt", "a_b.txt", "quote'and\"double.txt", "x" * 251 + ".txt"]
    for name in names:
        project.write(f"in/{name}", name)
    project.pipeline(
        """\
        version: 1
        steps:
          copy:
            foreach: "{{ files }}"
            inputs: ["in/{{ item }}"]
            run: mkdir -p out && cat {{ ('in/' ~ item) | quote }} > {{ outputs[0] | quote }}
            output: "out/{{ item }}"
        """
    )
    listing = "[" + ", ".join(json.dumps(name) for name in names) + "]"
    first = project.orch("build", "--set", f"files={listing}")
    assert first.exit_code == 0, first.stdout + first.stderr
    assert first.run is not None
    for name in names:
        assert project.read(f"out/{name}") == name
    logs = {path.name for path in (first.run / "logs").iterdir()}
    assert len(logs) == len(names)
    again = project.orch("build", "--set", f"files={listing}")
    assert again.started() == []
