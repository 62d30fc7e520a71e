"""What a new user meets first: the flagship pipeline built with the README's command in a fresh
virtual environment, checked the way CI checks it, edited, and pointed at a real HTTP provider."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest

from .buildkit import RUNS, ran, read_events
from .conftest import ROOT
from .llm_server import LlmServer
from .notes_kit import (
    FILES_LIST,
    GOLDEN,
    PIPELINE,
    builders,
    copy_inputs,
    environment,
    generated,
    orch,
)

RESPONSES = ROOT / "pipelines" / "notes_app" / "responses"


@pytest.fixture
def project(notes_built: Path, tmp_path: Path) -> Path:
    """A built copy of the pipeline, its own for each test."""
    return Path(shutil.copytree(notes_built, tmp_path / "project", symlinks=True))


def readme_main_job() -> str:
    """The README's command that installs orch and builds the flagship pipeline."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands: list[str] = re.findall(r"```sh\n(.*?)```", text, re.DOTALL)
    return next(c.strip() for c in commands if c.startswith("pip install") and PIPELINE in c)


@pytest.mark.slow
def test_the_readme_main_job_builds_the_app_in_a_fresh_virtual_environment(
    tmp_path: Path,
) -> None:
    project = copy_inputs(tmp_path / "repo")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(ROOT / "orchestrator", project / "orchestrator", ignore=_caches)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    _see_installed_packages(venv)
    _pip_from_outside(venv)
    script = f". {venv / 'bin' / 'activate'} && {readme_main_job()}"
    env = environment(PIP_QUIET="1", PIP_DISABLE_PIP_VERSION_CHECK="1")

    first = subprocess.run(
        ["bash", "-c", script], cwd=project, env=env, capture_output=True, text=True, check=False
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert sorted(ran(first.stdout)) == sorted(["architect", *builders(GOLDEN), "docs", "qa"])
    assert generated(project) == generated(GOLDEN)

    again = subprocess.run(
        ["bash", "-c", script], cwd=project, env=env, capture_output=True, text=True, check=False
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.strip().endswith("all 11 steps up to date")


def _see_installed_packages(venv: Path) -> None:
    """Let a new virtual environment import what this one has installed, so that pip finds
    the dependencies satisfied and fetches nothing but its build backend."""
    (site,) = venv.glob("lib/python*/site-packages")
    paths = {sysconfig.get_paths()[name] for name in ("purelib", "platlib")}
    (site / "outer.pth").write_text("\n".join(sorted(paths)) + "\n", encoding="utf-8")


def _pip_from_outside(venv: Path) -> None:
    """A `pip` command in the new environment that runs this environment's pip (importable
    there through `outer.pth`) with the new interpreter, so it installs into the new one:
    installing pip afresh into every new environment takes seconds and tests nothing of orch."""
    python = venv / "bin" / "python"
    pip = venv / "bin" / "pip"
    pip.write_text(
        f"#!{python}\nimport sys\nfrom pip._internal.cli.main import main\nsys.exit(main())\n",
        encoding="utf-8",
    )
    pip.chmod(0o755)


def _caches(folder: str, names: list[str]) -> list[str]:
    return [name for name in names if name in ("__pycache__",) or name.endswith(".egg-info")]


def test_status_check_passes_when_up_to_date_and_names_an_edited_spec(project: Path) -> None:
    assert orch(project, "status", "--check", PIPELINE).returncode == 0
    with (project / "specs" / "notes_app.md").open("a", encoding="utf-8") as spec:
        spec.write("- `GET /notes?q=` searches titles.\n")
    checked = orch(project, "status", "--check", PIPELINE)
    assert checked.returncode == 1
    assert "input modified: specs/notes_app.md" in checked.stdout


def test_editing_only_the_docs_prompt_reruns_docs_alone(project: Path) -> None:
    prompt = project / "pipelines" / "notes_app" / "prompts" / "docs.md.j2"
    prompt.write_text(prompt.read_text(encoding="utf-8") + "Keep it short.\n", encoding="utf-8")
    done = orch(project, "build", PIPELINE)
    assert done.returncode == 0, done.stdout + done.stderr
    assert ran(done.stdout) == ["docs"]


def _recorded_reply(fmt: str, body: dict[str, Any]) -> str:
    """The sample reply of the step whose system prompt this request carries."""
    system, prompt = body["messages"][0]["content"], body["messages"][1]["content"]
    step = {
        "You are a software architect.": "architect",
        "You are a senior Python engineer.": "builder",
        "You are a technical writer.": "docs",
    }[system]
    if step == "builder":
        written = re.match(r"Write the file `([^`]+)`", prompt)
        assert written is not None, prompt
        step = f"builder@{written[1]}"
    return (RESPONSES / f"{step}.md").read_text(encoding="utf-8")


def test_the_openai_provider_builds_the_pipeline_over_http(
    project: Path, llm_server: LlmServer
) -> None:
    llm_server.reply = _recorded_reply
    done = orch(
        project,
        "build",
        PIPELINE,
        ORCH_PROVIDER="openai",
        OPENAI_BASE_URL=llm_server.openai_url,
        OPENAI_API_KEY="sk-notes-test",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    steps = ["architect", *builders(GOLDEN), "docs"]  # qa: same files
    assert sorted(ran(done.stdout)) == sorted(steps)
    assert [r.path for r in llm_server.requests] == ["/v1/chat/completions"] * len(steps)
    assert {r.headers["authorization"] for r in llm_server.requests} == {"Bearer sk-notes-test"}
    assert generated(project) == generated(GOLDEN)


def _build_started(project: Path) -> tuple[list[str], list[str]]:
    """Build the pipeline: the steps started (from the run's events) and the events' types."""
    runs = project / RUNS
    before = set(runs.iterdir())
    done = orch(project, "build", PIPELINE)
    assert done.returncode == 0, done.stdout + done.stderr
    new = [run for run in set(runs.iterdir()) - before if run.is_dir()]
    if not new:  # it changed nothing: a line in the run history, no run folder
        assert done.stdout.endswith("up to date\n")
        return [], []
    (run,) = new
    events = read_events(run)
    return [e["step"] for e in events if e["type"] == "step.started"], [e["type"] for e in events]


def _edit_design_reply(project: Path, old: str, new: str) -> None:
    reply = project / "pipelines" / "notes_app" / "responses" / "architect.md"
    text = reply.read_text(encoding="utf-8")
    assert text.count(old) == 1
    reply.write_text(text.replace(old, new), encoding="utf-8")


def test_a_changed_purpose_reruns_the_architect_and_that_file_s_builder_alone(
    project: Path,
) -> None:
    _edit_design_reply(
        project,
        '"purpose": "The pydantic models `NoteCreate` and `NoteRead`."',
        '"purpose": "The pydantic models `NoteCreate` and `NoteRead`, validated."',
    )
    started, types = _build_started(project)
    # The builder's reply, and so the file qa reads, is the same: qa stays up to date.
    assert started == ["architect", "builder@notes_api/schemas.py"]
    assert "job.replanned" in types
    assert "validated" in (project / FILES_LIST).read_text(encoding="utf-8")
    assert _app(project) == _app(GOLDEN)
    assert _build_started(project)[0] == []


def test_a_file_added_to_the_design_runs_one_new_builder_and_qa(project: Path) -> None:
    _edit_design_reply(
        project,
        '  {"path": "tests/test_notes.py"',
        '  {"path": "notes_api/version.py", "purpose": "The version string."},\n'
        '  {"path": "tests/test_notes.py"',
    )
    reply = RESPONSES.relative_to(ROOT) / "builder@notes_api" / "version.py.md"
    (project / reply).write_text('```python\nVERSION = "0.1.0"\n```\n', encoding="utf-8")

    started, _ = _build_started(project)
    assert started == ["architect", "builder@notes_api/version.py", "qa"]
    version = project / "generated" / "notes_api" / "notes_api" / "version.py"
    assert version.read_text(encoding="utf-8") == 'VERSION = "0.1.0"\n'
    assert "\nPASSED " in (project / "build" / "notes_api" / "qa.txt").read_text(encoding="utf-8")


def _app(root: Path) -> dict[str, bytes]:
    """The generated app's files (the build's other outputs left out)."""
    return {path: data for path, data in generated(root).items() if path.startswith("generated/")}
