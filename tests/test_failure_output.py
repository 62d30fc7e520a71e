"""What `orch build` shows of a command's output: the end of a failed command's log under its
`FAILED` line, and with `-v` each command and its output as it runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from . import buildkit
from .buildkit import Project

FAILING = """\
version: 1
steps:
  compile:
    run: |
      for i in $(seq 1 {count}); do echo "checking $i"; done
      echo "error: no such file" >&2
      exit 1
"""
ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TIMED = re.compile(r"^\d\d:\d\d:\d\d ")
UNDER_STEP = " " * 19  # under the step's id: `HH:MM:SS ` and the label's 10 columns
SECRET = "s3cr3t-value-42"


def _log(run: Path | None, step: str = "compile") -> str:
    """The path of a step's log in a run folder."""
    assert run is not None
    return str(run / "logs" / f"{step}.log")


def _after_failed(lines: list[str], count: int) -> list[str]:
    """The `count` lines after the FAILED line."""
    (at,) = [i for i, line in enumerate(lines) if line.startswith("FAILED")]
    return lines[at + 1 : at + 1 + count]


def test_a_failed_command_shows_its_last_lines_then_its_log(project: Project) -> None:
    project.pipeline(FAILING.format(count=2))
    build = project.orch("build")
    assert build.exit_code == 1
    log = _log(build.run)
    failed = f"FAILED    compile  (exited with code 1 (log: {log}))"
    assert build.lines[1:6] == [
        failed,
        f"{UNDER_STEP}  checking 1",
        f"{UNDER_STEP}  checking 2",
        f"{UNDER_STEP}  error: no such file",
        f"{UNDER_STEP}log: {log}",
    ]
    assert build.lines[6] == "failed in " + build.lines[6].split("failed in ")[1]


def test_a_long_output_is_cut_to_its_last_20_lines_and_says_so(project: Project) -> None:
    project.pipeline(FAILING.format(count=25))
    build = project.orch("build")
    log = _log(build.run)
    shown = _after_failed(build.lines, 22)
    assert shown == [
        f"{UNDER_STEP}… 6 earlier lines in {log}",
        *(f"{UNDER_STEP}  checking {i}" for i in range(7, 26)),
        f"{UNDER_STEP}  error: no such file",
        f"{UNDER_STEP}log: {log}",
    ]
    (event,) = build.events("step.failed")
    assert event["data"]["excerpt"] == {
        "lines": [*(f"checking {i}" for i in range(7, 26)), "error: no such file"],
        "earlier": 6,
        "log": log,
    }


def test_a_failure_with_no_output_shows_only_its_line(project: Project) -> None:
    project.pipeline(
        """\
        version: 1
        steps:
          quiet:
            run: exit 4
        """
    )
    build = project.orch("build")
    assert build.lines[1].startswith("FAILED    quiet  (exited with code 4 (log: ")
    assert build.lines[2].startswith("failed in ")
    assert "excerpt" not in build.events("step.failed")[0]["data"]


def test_a_timed_out_command_shows_what_it_wrote(project: Project) -> None:
    project.pipeline(
        """\
        version: 1
        steps:
          hang:
            run: echo "waiting for the server"; exec sleep 30
            timeout_s: 0.5
        """
    )
    build = project.orch("build")
    log = _log(build.run, "hang")
    assert build.lines[1] == "FAILED    hang  (timed out after 0.5 s)"
    assert build.lines[2:4] == [f"{UNDER_STEP}  waiting for the server", f"{UNDER_STEP}log: {log}"]


def in_terminal(folder: Path, *args: str) -> tuple[int, str]:
    """`orch ARGS` in a pseudo-terminal: its exit code and the lines it left, escapes removed
    (of a line redrawn after a carriage return, what was drawn last)."""
    code, shown = buildkit.in_terminal(folder, *args)
    lines = ESCAPE.sub("", shown).split("\n")
    return code, "\n".join(line.rsplit("\r", 1)[-1] for line in lines)


def test_the_live_view_shows_the_excerpt_too(project: Project) -> None:
    project.pipeline(FAILING.format(count=2))
    code, text = in_terminal(project.root, "build")
    assert code == 1
    (run,) = project.run_folders()
    log = _log(run)
    under = " " * 10
    expected = (
        f"FAILED    compile  (exited with code 1 (log: {log}))\n"
        f"{under}  checking 1\n"
        f"{under}  checking 2\n"
        f"{under}  error: no such file\n"
        f"{under}log: {log}\n"
    )
    assert expected in text


def test_verbose_echoes_each_command_and_its_output(project: Project) -> None:
    project.pipeline(
        """\
        version: 1
        steps:
          greet:
            run: echo hello; echo "to stderr" >&2
          shout:
            needs: [greet]
            run: |
              echo HELLO
        """
    )
    build = project.orch("build", "-v", "-j", "1")
    assert build.exit_code == 0
    assert [line for line in build.lines if not line.startswith(("ok ", "succeeded"))] == [
        "run       greet  (never built)",
        '$ echo hello; echo "to stderr" >&2',
        "hello",
        "to stderr",
        "run       shout  (never built)",
        "$ echo HELLO",
        "HELLO",
    ]


def test_orch_verbose_in_the_environment_turns_it_on(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCH_VERBOSE", "1")
    project.pipeline('version: 1\nsteps:\n  greet:\n    run: "echo hello"\n')
    build = project.orch("build", "-j", "1")
    assert build.lines[1:3] == ["$ echo hello", "hello"]


def test_without_verbose_nothing_of_a_command_that_succeeds_is_shown(project: Project) -> None:
    project.pipeline('version: 1\nsteps:\n  greet:\n    run: "echo hello"\n')
    build = project.orch("build", "-j", "1")
    assert [line.split()[0] for line in build.lines] == ["run", "ok", "succeeded"]


TWO_AT_ONCE = """\
version: 1
steps:
  left:
    run: |
      echo "left 1"; touch left.started
      until [ -e right.started ]; do sleep 0.01; done
      echo "left 2"; echo "left 3" >&2
    timeout_s: 30
  right:
    run: |
      echo "right 1"; touch right.started
      until [ -e left.started ]; do sleep 0.01; done
      echo "right 2"; echo "right 3" >&2
    timeout_s: 30
"""


def test_with_several_jobs_each_streamed_line_names_its_step(project: Project) -> None:
    project.pipeline(TWO_AT_ONCE)
    build = project.orch("build", "-v", "-j", "2")
    assert build.exit_code == 0
    streamed = [
        line
        for line in build.stdout.splitlines()
        if not TIMED.match(line) and not line.startswith("succeeded")
    ]
    assert all(line.startswith(("[left] ", "[right] ")) for line in streamed), streamed
    for step in ("left", "right"):
        assert [line for line in streamed if line.startswith(f"[{step}] ")] == [
            f'[{step}] $ echo "{step} 1"; touch {step}.started',
            f"[{step}] until [ -e {'right' if step == 'left' else 'left'}.started ];"
            " do sleep 0.01; done",
            f'[{step}] echo "{step} 2"; echo "{step} 3" >&2',
            f"[{step}] {step} 1",
            f"[{step}] {step} 2",
            f"[{step}] {step} 3",
        ]


def test_a_secret_is_masked_in_echoed_commands_and_streamed_output(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPLOY_TOKEN", SECRET)
    project.pipeline(
        """\
        version: 1
        steps:
          deploy:
            run: echo "deploying with {{ env.DEPLOY_TOKEN }}"; echo "$DEPLOY_TOKEN" >&2; exit 3
        """
    )
    build = project.orch("build", "-v", "-j", "1")
    assert build.exit_code == 1
    assert build.lines[1:4] == [
        '$ echo "deploying with ***"; echo "$DEPLOY_TOKEN" >&2; exit 3',
        "deploying with ***",
        "***",
    ]
    assert _after_failed(build.lines, 2) == [
        f"{UNDER_STEP}  deploying with ***",
        f"{UNDER_STEP}  ***",
    ]
    assert SECRET not in build.stdout + build.stderr


def test_the_live_view_prints_streamed_lines_above_it(project: Project) -> None:
    project.pipeline('version: 1\nsteps:\n  greet:\n    run: "echo hello; echo there >&2"\n')
    code, text = in_terminal(project.root, "build", "-v", "-j", "1")
    assert code == 0
    assert "$ echo hello; echo there >&2\nhello\nthere\n" in text


def test_a_last_line_without_a_newline_is_shown_whole(project: Project) -> None:
    project.pipeline(
        """\
        version: 1
        steps:
          partial:
            run: printf 'first\\r\\nno newline'; exit 1
        """
    )
    build = project.orch("build", "-v", "-j", "1")
    assert build.lines[2:4] == ["first", "no newline"]
    assert _after_failed(build.lines, 2) == [f"{UNDER_STEP}  first", f"{UNDER_STEP}  no newline"]


def test_a_log_of_several_megabytes_counts_all_its_earlier_lines(project: Project) -> None:
    project.pipeline(
        """\
        version: 1
        steps:
          big:
            run: seq 1 300000; head -c 1500 /dev/zero | tr '\\0' x; echo; exit 1
        """
    )
    build = project.orch("build")
    log = _log(build.run, "big")
    shown = _after_failed(build.lines, 3)
    assert shown[0] == f"{UNDER_STEP}… 299981 earlier lines in {log}"
    assert shown[1] == f"{UNDER_STEP}  299982"
    (event,) = build.events("step.failed")
    assert event["data"]["excerpt"]["lines"][-1] == "x" * 1000 + "…", "a long line is cut"
