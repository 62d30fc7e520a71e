"""`orch build --sandbox`: shell steps write their declared outputs, their private TMPDIR and
their log; a write anywhere else (another step's output folder, a source file, a file outside
the workdir) is refused by the kernel (Landlock), and the step fails saying it was sandboxed."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.steps.sandbox import SandboxUnavailable, abi_version

from .buildkit import Build, Project


def landlock() -> str | None:
    """Why Landlock cannot be used here, or None when it can."""
    try:
        abi_version()
    except SandboxUnavailable as exc:
        return str(exc)
    return None


UNAVAILABLE = landlock()
needs_landlock = pytest.mark.skipif(UNAVAILABLE is not None, reason=UNAVAILABLE or "")

WRITERS = """\
version: 1
steps:
  file:
    inputs: [src/in.txt]
    run: "mkdir -p out && tr a-z A-Z < src/in.txt > out/file.txt"
    output: out/file.txt
  folder:
    run: "mkdir -p gen/sub && echo one > gen/sub/one.txt && ln -s one.txt gen/sub/link"
    output: gen/
  scratch:
    run: >-
      mkdir -p part && t=$(mktemp) && echo temp > "$t" && mv "$t" part/p.txt
      && echo quiet > /dev/null && echo to-the-log > /dev/stderr
    output: part/p.txt
  captured:
    run: "echo captured"
    stdout: cap/c.txt
"""


def ok(build: Build) -> Build:
    assert build.exit_code == 0, build.stdout + build.stderr
    return build


def one_step(project: Project, command: str, output: str = "mine/a.txt") -> None:
    project.pipeline(
        f"""\
        version: 1
        steps:
          other:
            run: "mkdir -p theirs && echo theirs > theirs/b.txt"
            output: theirs/b.txt
          a:
            inputs: [src/in.txt]
            run: "{command}"
            output: {output}
            needs: [other]
        """
    )
    project.write("src/in.txt", "source\n")


def refused(build: Build) -> str:
    """The failure message of step `a`, which the sandbox refused."""
    assert build.exit_code == 1, build.stdout + build.stderr
    assert build.statuses()["a"] == "failed"
    [failed] = build.events("step.failed", "a")
    assert failed["data"]["kind"] == "exit"
    message: str = failed["data"]["message"]
    assert message.endswith("(sandboxed: writes outside the declared outputs are refused)")
    return message


@needs_landlock
def test_declared_outputs_scratch_files_and_the_log_are_writable(project: Project) -> None:
    project.pipeline(WRITERS)
    project.write("src/in.txt", "source\n")

    build = ok(project.orch("build", "--sandbox", "-j", "1"))

    assert set(build.statuses().values()) == {"ran"}
    assert project.read("out/file.txt") == "SOURCE\n"
    assert project.read("gen/sub/one.txt") == "one\n"
    assert project.read("part/p.txt") == "temp\n"
    assert project.read("cap/c.txt") == "captured\n"
    log = next((build.run or Path()).glob("logs/scratch*.log")).read_text()
    assert "to-the-log" in log
    assert not list((build.run or Path()).glob("scratch/*/tmp"))  # the private TMPDIR is gone


@needs_landlock
def test_the_sandbox_is_not_part_of_the_key(project: Project) -> None:
    project.pipeline(WRITERS)
    project.write("src/in.txt", "source\n")
    ok(project.orch("build"))

    again = ok(project.orch("build", "--sandbox"))

    assert again.unchanged


@needs_landlock
def test_a_write_to_another_steps_output_fails_the_step(project: Project) -> None:
    one_step(project, "echo mine > theirs/b.txt; mkdir -p mine && echo a > mine/a.txt")

    build = project.orch("build", "--sandbox")

    assert "exited with code 2" in refused(build)
    assert project.read("theirs/b.txt") == "theirs\n"
    assert not project.exists("mine/a.txt")
    assert "FAILED    a  (exited with code 2 (log: " in "\n".join(build.lines)


@needs_landlock
def test_a_write_outside_the_workdir_fails_and_leaves_the_file_alone(
    project: Project, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("untouched\n")
    one_step(project, f"echo spoilt > {outside} && echo a > mine/a.txt")

    refused(project.orch("build", "--sandbox"))

    assert outside.read_text() == "untouched\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside.txt", "work"]


@needs_landlock
def test_a_write_to_a_source_file_fails_and_leaves_it_alone(project: Project) -> None:
    one_step(project, "echo spoilt >> src/in.txt && echo a > mine/a.txt")

    refused(project.orch("build", "--sandbox"))

    assert project.read("src/in.txt") == "source\n"


@needs_landlock
def test_removing_or_renaming_a_file_outside_the_outputs_fails(project: Project) -> None:
    one_step(project, "mv src/in.txt mine/a.txt || rm -f src/in.txt theirs/b.txt")

    refused(project.orch("build", "--sandbox"))

    assert project.read("src/in.txt") == "source\n"
    assert project.read("theirs/b.txt") == "theirs\n"


@needs_landlock
def test_orch_sandbox_in_the_environment_turns_it_on(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_step(project, "echo spoilt > src/in.txt; echo a > mine/a.txt")
    monkeypatch.setenv("ORCH_SANDBOX", "1")

    refused(project.orch("build"))

    assert project.read("src/in.txt") == "source\n"


@needs_landlock
def test_without_the_sandbox_the_same_write_goes_through(project: Project) -> None:
    one_step(project, "echo spoilt > src/in.txt; mkdir -p mine && echo a > mine/a.txt")

    build = ok(project.orch("build"))

    assert project.read("src/in.txt") == "spoilt\n"
    assert build.events("step.failed") == []


@pytest.mark.skipif(UNAVAILABLE is None, reason="Landlock is available here")
def test_without_landlock_the_build_is_refused_up_front(project: Project) -> None:
    one_step(project, "echo a > mine/a.txt")

    build = project.orch("build", "--sandbox")

    assert build.exit_code == 2
    assert build.run is None
    assert build.stderr.strip().startswith("--sandbox")
    assert len(build.stderr.strip().splitlines()) == 1
    assert not project.exists("mine/a.txt")
