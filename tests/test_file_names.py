"""Any file name the file system allows works as an input, a foreach item and an output.

Real builds over hostile names: quotes, whitespace, newlines, glob characters, Jinja markers,
a leading dash, unicode and names of 254 and 255 bytes. A name that a foreach glob matched, or
that one step writes and another reads, is one file and never a glob again; text written in
the pipeline follows glob syntax, where ``[*]``, ``[?]`` and ``[[]`` stand for the characters.
``ORCH_NAMES_EXAMPLES=200`` runs more examples of the property test than the default 8.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.core.paths import NAME_MAX, escape, glob_matches, is_glob, unescape
from orchestrator.engine.leftovers import TEMP_NAME
from orchestrator.language.templating import is_template
from orchestrator.store.filestore import atomic_write, safe_write, temp_stem
from tests.buildkit import Build, Project
from tests.conftest import SETTINGS_PREFIXES

NAMES = {
    "space": "a b.txt",
    "single quote": "it's.txt",
    "double quote": 'say "hi".txt',
    "newline": "new\nline.txt",
    "trailing newline": "end\n",
    "tab": "tab\there.txt",
    "star": "star*.txt",
    "question mark": "a?.txt",
    "brackets": "[x].txt",
    "brackets and star": "[x]*.txt",
    "braces": "{a,b}.txt",
    "leading dash": "-n.txt",
    "unicode": "ünïcødé ✓ 名前.txt",
    "jinja expression": "{{x}}.txt",
    "jinja block": "{% if %}.txt",
    "backslash": "back\\slash.txt",
    "shell": "$HOME `id`; &|.txt",
    "colon": "C:.txt",
    "254 bytes": "m" * 250 + ".txt",
    "255 bytes": "n" * 251 + ".txt",
}
DECOYS = ["x.txt", "ab.txt", "starry.txt", "xa.txt", "n.txt"]
"""Files that a name read as a glob would match instead of (or besides) itself."""

FOREACH = """\
version: 1
steps:
  copy:
    foreach: data/*
    inputs: ["{{ item }}"]
    output: "out/{{ item | basename }}"
    run: mkdir -p out && cp -- {{ inputs[0] | quote }} {{ outputs[0] | quote }}
  capture:
    foreach: data/*
    inputs: ["{{ item }}"]
    stdout: "captured/{{ item | basename }}"
    run: cat -- {{ inputs[0] | quote }}
  render:
    foreach: data/*
    inputs: ["{{ item }}"]
    output: "rendered/{{ item | basename }}"
    template: "{{ read(item) }}"
  gather:
    inputs: ["{{ steps.copy.outputs }}"]
    output: all.txt
    run: cat -- {% for path in inputs %}{{ path | quote }} {% endfor %} > all.txt
"""


GROUPS = ("copy", "capture", "render")


def _fill(project: Project, names: list[str], folder: str = "data/") -> None:
    for name in names:
        project.write(f"{folder}{name}", f"the file {name!r}\n")


def _ids(names: list[str]) -> set[str]:
    return {f"{group}@data/{name}" for name in names for group in GROUPS}


@contextlib.contextmanager
def _clean_environment() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for variable in [v for v in os.environ if v.startswith(SETTINGS_PREFIXES)]:
            patch.delenv(variable)
        patch.setenv("NO_COLOR", "1")
        yield


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Project, Build]]:
    """The foreach pipeline over every hostile name and the decoys, and its first build."""
    project = Project(tmp_path_factory.mktemp("names"))
    _fill(project, [*NAMES.values(), *DECOYS])
    project.pipeline(FOREACH)
    with _clean_environment(), contextlib.chdir(project.root):
        yield project, project.orch("build")


@pytest.fixture
def names_project(
    built: tuple[Project, Build], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Project]:
    """The built project as the current folder."""
    with _clean_environment():
        monkeypatch.chdir(built[0].root)
        yield built[0]


def test_every_name_is_one_foreach_item_copied_to_its_output(
    names_project: Project, built: tuple[Project, Build]
) -> None:
    first = built[1]
    assert first.exit_code == 0, first.stdout + first.stderr
    names = [*NAMES.values(), *DECOYS]
    assert set(first.started()) == _ids(names) | {"gather"}
    for name in names:
        expected = names_project.read(f"data/{name}")
        assert names_project.read(f"out/{name}") == expected, name
        assert names_project.read(f"captured/{name}") == expected, name
        assert names_project.read(f"rendered/{name}") == expected, name
    assert len(names_project.read("all.txt").splitlines()) == len(names)


def test_a_second_build_of_every_name_runs_nothing(names_project: Project) -> None:
    again = names_project.orch("build")
    assert again.exit_code == 0, again.stdout + again.stderr
    assert again.started() == []
    steps = len(_ids([*NAMES.values(), *DECOYS])) + 1
    assert f"all {steps} steps up to date" in again.lines


@pytest.mark.parametrize("name", list(NAMES.values()), ids=list(NAMES))
def test_editing_one_file_reruns_only_its_steps(names_project: Project, name: str) -> None:
    names_project.write(f"data/{name}", f"edited {name!r}\n")
    edited = names_project.orch("build")
    assert edited.exit_code == 0, edited.stdout + edited.stderr
    assert set(edited.started()) == _ids([name]) | {"gather"}
    assert names_project.read(f"out/{name}") == f"edited {name!r}\n"
    assert names_project.read(f"captured/{name}") == f"edited {name!r}\n"
    assert names_project.read(f"rendered/{name}") == f"edited {name!r}\n"


@pytest.mark.parametrize("name", [NAMES["254 bytes"], NAMES["255 bytes"], NAMES["brackets"]])
def test_a_deleted_output_with_a_hostile_name_is_restored(
    names_project: Project, name: str
) -> None:
    (names_project.root / "captured" / name).unlink()
    restored = names_project.orch("build")
    assert restored.exit_code == 0, restored.stdout + restored.stderr
    assert restored.started() == []
    assert [e["step"] for e in restored.events("step.restored")] == [f"capture@data/{name}"]
    assert names_project.read(f"captured/{name}") == names_project.read(f"data/{name}")
    assert not [p for p in (names_project.root / "captured").iterdir() if p.suffix == ".tmp"]


# --------------------------------------------------------------------------- names in the file


def _written(name: str) -> str:
    """`name` as a pipeline declares that one file: glob characters escaped, Jinja kept raw,
    the whole a YAML (JSON) string."""
    escaped = glob.escape(name)
    if is_template(escaped):
        escaped = "{% raw %}" + escaped + "{% endraw %}"
    return json.dumps(escaped)


def test_every_name_works_as_an_input_written_in_the_pipeline(project: Project) -> None:
    names = list(NAMES.values())
    _fill(project, [*names, *DECOYS], folder="")
    steps = "".join(
        f"""
  s{index}:
    inputs: [{_written(name)}]
    output: {_written(f"out/{name}")}
    run: mkdir -p out && cp -- {{{{ inputs[0] | quote }}}} {{{{ outputs[0] | quote }}}}"""
        for index, name in enumerate(names)
    )
    project.write("orch.yaml", "version: 1\nsteps:" + steps + "\n")
    first = project.orch("build")
    assert first.exit_code == 0, first.stdout + first.stderr
    assert len(first.started()) == len(names)
    for name in names:
        assert project.read(f"out/{name}") == project.read(name)
    assert project.orch("build").started() == []
    project.write(NAMES["brackets"], "edited\n")
    assert project.orch("build").started() == [f"s{names.index(NAMES['brackets'])}"]


def test_the_literal_filter_makes_any_text_one_file(project: Project) -> None:
    _fill(project, ["[x].txt", "x.txt", "a?.txt", "ab.txt"])
    project.pipeline(
        """\
        version: 1
        vars:
          picked: ["[x].txt", "a?.txt"]
        steps:
          copy:
            foreach: "{{ picked }}"
            inputs: ["data/{{ item | literal }}"]
            output: "out/{{ item | literal }}"
            run: mkdir -p out && cp -- {{ inputs[0] | quote }} {{ outputs[0] | quote }}
        """
    )
    first = project.orch("build")
    assert first.exit_code == 0, first.stdout + first.stderr
    assert project.read("out/[x].txt") == project.read("data/[x].txt")
    assert project.read("out/a?.txt") == project.read("data/a?.txt")


def test_text_with_glob_characters_is_a_glob_that_catches_new_files(project: Project) -> None:
    _fill(project, ["[x].txt", "x.txt", "y.txt"])
    project.pipeline(
        """\
        version: 1
        vars:
          sources: "data/[xz].txt"
        steps:
          join:
            inputs: ["{{ sources }}"]
            output: joined.txt
            run: ls data > joined.txt
        """
    )
    assert project.orch("build").exit_code == 0
    assert project.lock()["join"].inputs.keys() == {"data/x.txt"}
    project.write("data/z.txt", "new\n")
    assert project.orch("build").started() == ["join"]
    assert project.lock()["join"].inputs.keys() == {"data/x.txt", "data/z.txt"}


def test_an_output_name_longer_than_the_file_system_allows_is_an_error_at_its_line(
    project: Project,
) -> None:
    project.pipeline(
        f"""\
        version: 1
        steps:
          long:
            output: "out/{"z" * (NAME_MAX + 1)}"
            run: "true"
        """
    )
    for command in ("validate", "build"):
        result = project.orch(command)
        assert result.exit_code == 2
        assert result.stderr.startswith(
            f"orch.yaml:4:13: step 'long': path 'out/{'z' * (NAME_MAX + 1)}' has a name of"
            f" {NAME_MAX + 1} bytes; file systems allow at most {NAME_MAX}\n"
        )
        assert "Traceback" not in result.stderr
    assert not project.exists("out")


@pytest.mark.parametrize("size", [1, 200, 241, 242, NAME_MAX])
def test_the_temp_file_of_any_valid_name_is_a_valid_name_orch_recognises(
    tmp_path: Path, size: int
) -> None:
    name = ("é" * NAME_MAX)[: size // 2] + "x" * (size % 2)
    temp = f".{temp_stem(name)}.ab12cd34.tmp"
    assert len(temp.encode()) <= NAME_MAX
    assert TEMP_NAME.match(temp)
    safe_write(tmp_path, f"out/{name}", "written\n")
    atomic_write(tmp_path / name, b"replaced\n")
    assert (tmp_path / "out" / name).read_text() == "written\n"
    assert (tmp_path / name).read_bytes() == b"replaced\n"
    assert sorted(p.name for p in tmp_path.rglob("*.tmp")) == []


# --------------------------------------------------------------------------- property


EXAMPLES = int(os.environ.get("ORCH_NAMES_EXAMPLES", "8"))

file_names = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="/\x00"), min_size=1
).filter(lambda name: not name.startswith(".") and len(name.encode()) <= NAME_MAX)


@settings(max_examples=300, deadline=None)
@given(file_names, file_names)
def test_an_escaped_name_is_one_file_alone_and_inside_a_glob(folder: str, name: str) -> None:
    assert not is_glob(escape(name))
    assert unescape(escape(name)) == name
    assert is_glob(name) == any(c in name for c in "*?[")
    assert glob_matches(f"{escape(folder)}/{escape(name)}", f"{folder}/{name}")
    assert glob_matches(f"{escape(folder)}/*", f"{folder}/{name}")
    assert not glob_matches(f"{escape(folder)}/{escape(name)}", f"{folder}/{name}x")


@pytest.mark.slow
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(file_names, min_size=1, max_size=4, unique=True))
def test_any_valid_names_build_and_then_build_nothing(names: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder, _clean_environment():
        project = Project(Path(folder))
        _fill(project, names)
        project.write("orch.yaml", textwrap.dedent(FOREACH))
        with contextlib.chdir(project.root):
            first = project.orch("build")
            assert first.exit_code == 0, first.stdout + first.stderr
            assert set(first.started()) == _ids(names) | {"gather"}
            for name in names:
                assert project.read(f"out/{name}") == project.read(f"data/{name}")
                assert project.read(f"captured/{name}") == project.read(f"data/{name}")
                assert project.read(f"rendered/{name}") == project.read(f"data/{name}")
            assert project.orch("build").started() == []
