"""Shell steps run from the saved plan: a command that needs no rendering is kept in the plan,
and a build that reruns its step runs it from there, loading nothing else. It must behave
exactly as the same command rendered from the loaded pipeline."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.language.templating import Renderer
from orchestrator.steps.commands import needs_rendering
from tests.buildkit import Build, Project
from tests.test_imports import HEAVY, assert_none_of
from tests.test_imports import orch as orch_importing

SHAPES = """\
version: 1
env:
  GREETING: hello
steps:
  plain:
    inputs: [src/a.txt]
    run: mkdir -p out && cp src/a.txt out/plain.txt{mark}
    output: out/plain.txt
  environment:
    inputs: [src/a.txt]
    env:
      COUNT: "3"
      WHO: world
    run: mkdir -p out && echo "$GREETING $WHO $COUNT" > out/environment.txt{mark}
    output: out/environment.txt
  captured:
    inputs: [src/a.txt]
    run: echo "to stdout"; echo "to stderr" >&2; cat src/a.txt{mark}
    stdout: out/captured.txt
  elsewhere:
    inputs: [src/a.txt]
    cwd: sub
    run: pwd | sed 's|.*/||' > ../out/elsewhere.txt{mark}
    output: out/elsewhere.txt
  failing:
    inputs: [src/a.txt]
    run: for i in 1 2 3; do echo "line $i"; done; cat src/a.txt; exit 3{mark}
    output: out/never.txt
"""
"""Shell steps of every shape; `{mark}` is empty, or an expression that renders to nothing,
which makes the same command a template rendered when the step runs."""

RENDERED = "{{ '' }}"
TIMES = re.compile(r"\d\d:\d\d:\d\d|\d+\.\d+ s")
VARYING = ("ts", "seq", "job_id", "key", "duration_s", "size", "run")


def build_shapes(project: Project, mark: str) -> Build:
    project.write("src/a.txt", "a\n")
    (project.root / "sub").mkdir(exist_ok=True)
    project.pipeline(SHAPES.replace("{mark}", mark))
    return project.orch("build", "-k", "-j", "1")


def seen(project: Project, build: Build) -> dict[str, Any]:
    """What a user sees of a build: outputs, the log of each step, its events and its output,
    without times, keys, the project's folder and the run's name."""
    assert build.run is not None
    outputs = {p.name: p.read_text() for p in sorted((project.root / "out").iterdir())}
    logs = {p.name: p.read_text() for p in sorted((build.run / "logs").iterdir())}
    events = [
        without(event, VARYING)
        for event in build.events()
        if event["type"].startswith(("step.", "file."))
    ]
    text = json.dumps({"logs": logs, "events": events, "lines": build.lines})
    for varying, constant in ((str(build.run), "RUN"), (str(project.root), "ROOT")):
        text = text.replace(varying, constant)
    text = TIMES.sub("", text).replace(RENDERED.replace("'", "\\'"), "")
    return {"exit": build.exit_code, "outputs": outputs, **json.loads(text.replace(RENDERED, ""))}


def without(value: Any, names: tuple[str, ...]) -> Any:
    """`value` with the keys `names` left out of every mapping inside it."""
    if isinstance(value, dict):
        return {k: without(v, names) for k, v in value.items() if k not in names}
    if isinstance(value, list):
        return [without(v, names) for v in value]
    return value


def test_a_command_from_the_plan_behaves_as_the_rendered_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results: list[dict[str, Any]] = []
    for mark in ("", RENDERED):
        project = Project(tmp_path / f"project{len(results)}")
        project.root.mkdir()
        monkeypatch.chdir(project.root)
        build_shapes(project, mark)  # a first build, then a rebuild after an edit
        project.write("src/a.txt", "b\n")
        results.append(seen(project, project.orch("build", "-k", "-j", "1")))
    assert results[0] == results[1]
    assert results[0]["exit"] == 1
    assert results[0]["outputs"] == {
        "captured.txt": "to stdout\nb\n",
        "elsewhere.txt": "sub\n",
        "environment.txt": "hello world 3\n",
        "plain.txt": "b\n",
    }


def test_rerunning_a_shell_step_loads_nothing_but_the_plan(project: Project) -> None:
    project.write("src/a.txt", "a\n")
    project.pipeline(
        """\
        version: 1
        steps:
          copy:
            inputs: [src/a.txt]
            run: mkdir -p out && cp src/a.txt out/a.txt
            output: out/a.txt
          page:
            inputs: [src/b.txt]
            template: "{{ read('src/b.txt') | upper }}"
            output: out/page.txt
        """
    )
    project.write("src/b.txt", "b\n")
    out, _ = orch_importing(project, "build")
    assert "2 ran" in out
    project.write("src/a.txt", "edited\n")
    out, imported = orch_importing(project, "build")
    assert "1 ran, 1 up to date" in out
    assert project.read("out/a.txt") == "edited\n"
    assert_none_of(tuple(m for m in HEAVY if m != "asyncio"), imported)


def test_a_templated_command_is_rendered_when_it_runs(project: Project) -> None:
    project.write("src/n.txt", "4\n")
    project.pipeline(
        """\
        version: 1
        steps:
          twice:
            inputs: [src/n.txt]
            run: echo {{ read('src/n.txt') | trim | int * 2 }} > twice.txt
            output: twice.txt
        """
    )
    assert project.orch("build").exit_code == 0
    project.write("src/n.txt", "5\n")
    assert project.orch("build").exit_code == 0
    assert project.read("twice.txt") == "10\n"


@given(st.text(alphabet="ab {}%#\r\n\t'\"$\\", max_size=30))
def test_a_text_without_template_marks_renders_to_itself(text: str) -> None:
    if not needs_rendering(text):
        assert Renderer().render(text, {}) == text
