"""After `kill -9` of orch, the next build clears what the killed one left: it stops the step
process groups still running, and removes orch's own temp files, never a user's file.

Builds run as real processes and are killed for real; tests wait on files, never sleep.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from orchestrator.engine.leftovers import TEMP_NAME
from orchestrator.steps.processes import TOKEN_VARIABLE

from .buildkit import Build, Project, live_members, wait_for

HOLD = "if [ -e hold ]; then echo $$ > {pid}; sleep 300 & wait; echo stale > {out}; fi\n"


def killed_while_running(project: Project, pid_file: str) -> int:
    """Spawn a build, kill -9 it while the step writing `pid_file` runs; the step's group."""
    project.write("hold", "")
    process = project.spawn("build", "-j", "1")
    group = project.step_group(pid_file)
    records = project.root / ".orch" / "processes"
    assert len(list(records.iterdir())) == 1, "recorded before it started"
    wait_for(lambda: len(live_members(group)) == 2, what="the step's child")
    process.send_signal(signal.SIGKILL)
    process.wait()
    (project.root / "hold").unlink()
    return group


def said(build: Build) -> str:
    return build.stdout + build.stderr


def test_the_next_build_stops_the_step_processes_a_killed_build_left(project: Project) -> None:
    project.pipeline(
        f"""\
        version: 1
        steps:
          slow:
            run: |
              echo slow >> runs.log
              {HOLD.format(pid="slow.pid", out="slow.txt")}
              echo done > slow.txt
            output: slow.txt
        """
    )
    group = killed_while_running(project, "slow.pid")
    assert live_members(group), "kill -9 of orch leaves its step running"
    assert project.new_runs() == ["slow"]

    build = project.orch("build")

    assert build.exit_code == 0, said(build)
    assert live_members(group) == []
    assert "stopped 1 leftover step process group" in said(build)
    assert project.new_runs() == ["slow"]
    assert project.read("slow.txt") == "done\n"
    assert not any((project.root / ".orch" / "processes").iterdir())
    again = project.orch("build")
    assert again.exit_code == 0
    assert project.new_runs() == []
    assert "leftover" not in said(again)


def test_a_record_no_live_process_carries_is_dropped_touching_nothing(
    project: Project,
) -> None:
    project.pipeline(
        """\
        version: 1
        steps:
          a:
            run: echo a >> runs.log; echo a > a.txt
            output: a.txt
        """
    )
    other_token, gone_token = "0123456789abcdef", "fedcba9876543210"
    environment = {**os.environ, TOKEN_VARIABLE: other_token}
    other = subprocess.Popen(["sleep", "300"], start_new_session=True, env=environment)
    try:
        records = project.root / ".orch" / "processes"
        project.write(f".orch/processes/{gone_token}", "1\n")
        project.write(f".orch/processes/{other.pid}", f"{other.pid} 1\n")  # not a token
        build = project.orch("build")
        assert build.exit_code == 0, said(build)
        assert other.poll() is None, "a process of another build's token is not this one's"
        assert list(records.iterdir()) == []
        assert "leftover" not in said(build)
    finally:
        other.kill()
        other.wait()


def test_a_step_process_that_left_its_group_is_stopped_too(project: Project) -> None:
    project.pipeline(
        """\
        version: 1
        steps:
          daemon:
            run: |
              if [ -e hold ]; then
                setsid sh -c 'echo $$ > daemon.tmp; mv daemon.tmp daemon.pid; sleep 300' \\
                  > /dev/null 2>&1 &
                sleep 300 & wait
              fi
              echo done > daemon.txt
            output: daemon.txt
        """
    )
    project.write("hold", "")
    process = project.spawn("build", "-j", "1")
    wait_for(lambda: project.exists("daemon.pid"), what="the daemon")
    daemon = int(project.read("daemon.pid"))
    process.send_signal(signal.SIGKILL)
    process.wait()
    (project.root / "hold").unlink()
    assert live_members(daemon), "it runs in a session of its own"

    build = project.orch("build")

    assert build.exit_code == 0, said(build)
    assert live_members(daemon) == []
    assert "stopped 2 leftover step process group" in said(build)


PLANTED = (
    "out/.x.txt.ab12cd34.tmp",
    "out/.x.txt.k3j_9zq1.tmp",
    "gen/sub/.y.txt.0123abcd.tmp",
    ".orch.lock.a1b2c3d4.tmp",
    ".orch/.manifest.json.zz99yy88.tmp",
)
KEPT = (
    "out/.x.txt.abc.tmp",
    "out/.notes.ABCDEFGH.tmp",
    "out/x.12345678.tmp",
    "out/.x.txt.12345678.tmp.bak",
    ".x.txt.123456789.tmp",
    "elsewhere/.x.txt.ab12cd34.tmp",
)


def temp_pipeline(project: Project) -> None:
    project.pipeline(
        f"""\
        version: 1
        steps:
          gen:
            run: mkdir -p gen/sub && echo y > gen/sub/y.txt
            output: gen/
          x:
            run: |
              echo x >> runs.log
              mkdir -p out
              {HOLD.format(pid="x.pid", out="out/x.txt")}
              echo x > out/x.txt
            output: out/x.txt
        """
    )


def test_the_next_build_removes_the_temp_files_a_killed_build_left(project: Project) -> None:
    assert all(TEMP_NAME.match(Path(p).name) for p in PLANTED)
    temp_pipeline(project)
    killed_while_running(project, "x.pid")
    for path in PLANTED + KEPT:
        project.write(path, "partial")

    build = project.orch("build")

    assert build.exit_code == 0, said(build)
    assert [p for p in PLANTED if project.exists(p)] == []
    assert [p for p in KEPT if not project.exists(p)] == []
    assert f"removed {len(PLANTED)} temp file(s)" in said(build)
    assert project.read("out/x.txt") == "x\n"
    assert not project.exists(".orch/building")
    project.new_runs()
    assert project.orch("build").exit_code == 0
    assert project.new_runs() == []


def test_after_a_build_that_ended_normally_nothing_is_scanned(project: Project) -> None:
    temp_pipeline(project)
    assert project.orch("build").exit_code == 0
    project.write(PLANTED[0], "a file in the making, not a leftover")

    build = project.orch("build")

    assert build.exit_code == 0
    assert project.exists(PLANTED[0])
    assert not project.exists(".orch/building")
