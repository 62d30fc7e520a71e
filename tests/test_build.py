"""`orch build` and `orch status` end to end: real folders, real shell steps, real signals.

Each step command appends its name to `runs.log`, so a test knows exactly which commands ran.
Builds run in-process through click's CliRunner, except where signals or a second concurrent
build are involved: there `python -m orchestrator` runs as a child process.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path

import pytest

from orchestrator.core import memory
from orchestrator.engine.build import Request, build
from orchestrator.record.status import JobStatus
from orchestrator.store.lockfile import read_lock

from .buildkit import (
    Project,
    kill_group,
    live_members,
    read_events,
    sha256,
    snapshot,
    wait_for,
)

# --------------------------------------------------------------------------- pipelines

# a -> b -> c -> e, and d -> e. `a` drops comment lines, so a comment edit changes nothing
# downstream; only `e` uses the var `sep` (through its env); `c` captures its stdout.
FIVE_STEPS = """\
version: 1
vars:
  sep: "--"
steps:
  a:
    inputs: [src.txt]
    run: echo a >> runs.log; grep -v '^#' src.txt > a.txt
    output: a.txt
  b:
    inputs: [a.txt]
    run: echo b >> runs.log; tr a-z A-Z < a.txt > b.txt
    output: b.txt
  c:
    inputs: [b.txt]
    run: echo c >> runs.log; cat b.txt b.txt
    stdout: c.txt
  d:
    inputs: [other.txt]
    run: echo d >> runs.log; cat other.txt > d.txt
    output: d.txt
  e:
    inputs: [c.txt, d.txt]
    env: { SEP: "{{ sep }}" }
    run: echo e >> runs.log; (cat c.txt; echo "$SEP"; cat d.txt) > e.txt
    output: e.txt
"""
ALL = ["a", "b", "c", "d", "e"]


def five_steps(project: Project) -> None:
    project.write("src.txt", "# notes\nhello\n")
    project.write("other.txt", "world\n")
    project.pipeline(FIVE_STEPS)


def built_five_steps(project: Project) -> None:
    five_steps(project)
    result = project.orch("build", "-j", "1")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert project.new_runs() == ALL


CHAIN = ["one", "two", "three", "four", "five"]
WAIT_FOR_GO = "echo $$ > three.pid; while [ ! -e go ]; do sleep 0.01; done"
FAIL_UNLESS_FIXED = "[ -e fixed ] || exit 1"


def chain(project: Project, third: str) -> None:
    """one -> two -> three -> four -> five; `three` prints two.txt (captured), then `third`."""
    project.write("src.txt", "seed\n")
    three = f"echo three >> runs.log; cat two.txt; {third}"
    project.pipeline(
        f"""\
        version: 1
        steps:
          one:
            inputs: [src.txt]
            run: echo one >> runs.log; cat src.txt > one.txt
            output: one.txt
          two:
            inputs: [one.txt]
            run: echo two >> runs.log; cat one.txt one.txt > two.txt
            output: two.txt
          three:
            inputs: [two.txt]
            run: {json.dumps(three)}
            stdout: three.txt
          four:
            inputs: [three.txt]
            run: echo four >> runs.log; cat three.txt > four.txt
            output: four.txt
          five:
            inputs: [four.txt]
            run: echo five >> runs.log; cat four.txt > five.txt
            output: five.txt
        """
    )


# --------------------------------------------------------------------------- up to date


def test_first_build_runs_every_step_then_everything_is_up_to_date(project: Project) -> None:
    five_steps(project)
    first = project.orch("build", "-j", "1")
    assert first.exit_code == 0, first.stderr
    assert project.new_runs() == ALL
    assert first.statuses() == dict.fromkeys(ALL, "ran")
    assert first.lines[-1].startswith("succeeded in ")
    assert first.lines[-1].endswith(": 5 ran")
    assert project.read("e.txt") == "HELLO\nHELLO\n--\nworld\n"
    assert project.read("c.txt") == "HELLO\nHELLO\n"
    assert sorted(project.lock()) == ALL

    second = project.orch("build")
    assert second.exit_code == 0
    assert project.new_runs() == []
    assert second.stdout == "all 5 steps up to date\n"
    assert second.unchanged, "a line in the run history instead of a run folder"


def test_editing_an_input_reruns_that_step_and_its_dependents_only(project: Project) -> None:
    built_five_steps(project)
    project.write("other.txt", "there\n")
    status = project.orch("status")
    assert status.lines == [
        "up-to-date  a",
        "up-to-date  b",
        "up-to-date  c",
        "run         d  (input modified: other.txt)",
        "run         e  (upstream will change)",
    ]

    result = project.orch("build", "-j", "1")
    assert result.exit_code == 0
    assert project.new_runs() == ["d", "e"]
    assert result.statuses() == {
        "a": "up-to-date",
        "b": "up-to-date",
        "c": "up-to-date",
        "d": "ran",
        "e": "ran",
    }
    assert result.manifest()["steps"]["e"]["reasons"] == ["input modified: d.txt"]
    assert project.read("e.txt") == "HELLO\nHELLO\n--\nthere\n"

    project.write("src.txt", "# notes\nbye\n")
    assert project.orch("build", "-j", "1").exit_code == 0
    assert project.new_runs() == ["a", "b", "c", "e"]
    assert project.read("e.txt") == "BYE\nBYE\n--\nthere\n"


def test_editing_a_command_reruns_that_step(project: Project) -> None:
    built_five_steps(project)
    edited = "tr a-z A-Z < a.txt | sed 's/$/!/' > b.txt"
    project.pipeline(FIVE_STEPS.replace("tr a-z A-Z < a.txt > b.txt", edited))
    status = project.orch("status")
    assert "run         b  (definition changed)" in status.lines
    assert project.orch("build", "-j", "1").exit_code == 0
    assert project.new_runs() == ["b", "c", "e"]
    assert project.read("c.txt") == "HELLO!\nHELLO!\n"
    assert project.read("e.txt") == "HELLO!\nHELLO!\n--\nworld\n"


def test_a_rerun_with_identical_output_does_not_rerun_dependents(project: Project) -> None:
    built_five_steps(project)

    # An input edit that `a` filters out: `a` reruns, writes the same bytes, nothing follows.
    project.write("src.txt", "# other notes\nhello\n")
    result = project.orch("build", "-j", "1")
    assert result.exit_code == 0
    assert project.new_runs() == ["a"]
    assert result.statuses() == {"a": "ran", **dict.fromkeys(["b", "c", "d", "e"], "up-to-date")}

    # A captured stdout with the same bytes is not rewritten: its mtime stays put.
    project.pipeline(FIVE_STEPS.replace("cat b.txt b.txt", "cat b.txt; cat b.txt"))
    before = (project.root / "c.txt").stat()
    result = project.orch("build", "-j", "1")
    assert result.exit_code == 0
    assert project.new_runs() == ["c"]
    (written,) = result.events("file.written", "c")
    assert (written["data"]["wrote"], written["data"]["reason"]) == (False, "nochange")
    after = (project.root / "c.txt").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert result.statuses()["e"] == "up-to-date"

    # A command edit with the same output: only that step reruns.
    text = FIVE_STEPS.replace("cat b.txt b.txt", "cat b.txt; cat b.txt")
    project.pipeline(text.replace("cat other.txt > d.txt", "cat < other.txt > d.txt"))
    result = project.orch("build", "-j", "1")
    assert result.exit_code == 0
    assert project.new_runs() == ["d"]
    assert result.manifest()["steps"]["d"]["reasons"] == ["definition changed"]
    assert result.statuses()["e"] == "up-to-date"


def test_changing_a_var_only_one_step_uses_reruns_only_that_step(project: Project) -> None:
    built_five_steps(project)
    status = project.orch("status", "--set", "sep===")
    assert [line for line in status.lines if not line.startswith("up-to-date")] == [
        "run         e  (definition changed)"
    ]
    result = project.orch("build", "--set", "sep===")
    assert result.exit_code == 0
    assert project.new_runs() == ["e"]
    assert project.read("e.txt") == "HELLO\nHELLO\n==\nworld\n"

    # Back to the pipeline's value: the earlier result comes back from the cache.
    result = project.orch("build")
    assert result.exit_code == 0
    assert project.new_runs() == []
    assert result.statuses()["e"] == "restored"
    assert project.read("e.txt") == "HELLO\nHELLO\n--\nworld\n"

    # Editing the var in the pipeline file.
    project.pipeline(FIVE_STEPS.replace('sep: "--"', 'sep: "**"'))
    assert project.orch("build").exit_code == 0
    assert project.new_runs() == ["e"]
    assert project.read("e.txt") == "HELLO\nHELLO\n**\nworld\n"


def test_template_step_renders_vars_and_inputs_and_rerenders_when_they_change(
    project: Project,
) -> None:
    project.write("name.txt", "Ada")
    project.pipeline(
        """\
        version: 1
        vars: { greeting: Hello }
        steps:
          hello:
            inputs: [name.txt]
            template: "{{ greeting }}, {{ read('name.txt') }}!\\n"
            output: hello.txt
        """
    )
    assert project.orch("build").exit_code == 0
    assert project.read("hello.txt") == "Hello, Ada!\n"
    assert project.orch("build").stdout == "all 1 step up to date\n"

    result = project.orch("build", "--set", "greeting=Hi")
    assert result.started() == ["hello"]
    assert project.read("hello.txt") == "Hi, Ada!\n"

    project.write("name.txt", "Grace")
    result = project.orch("build", "--set", "greeting=Hi")
    assert result.started() == ["hello"]
    assert project.read("hello.txt") == "Hi, Grace!\n"


# --------------------------------------------------------------------------- the cache


def test_a_deleted_output_is_restored_from_the_cache_without_running(project: Project) -> None:
    built_five_steps(project)
    (project.root / "b.txt").unlink()
    project.write("c.txt", "edited by hand\n")
    status = project.orch("status")
    assert status.lines == [
        "up-to-date  a",
        "restore     b  (output missing: b.txt)",
        "restore     c  (output modified: c.txt)",
        "up-to-date  d",
        "up-to-date  e",
    ]

    result = project.orch("build")
    assert result.exit_code == 0
    assert project.new_runs() == []
    assert [e["step"] for e in result.events("step.restored")] == ["b", "c"]
    assert result.started() == []
    assert project.read("b.txt") == "HELLO\n"
    assert project.read("c.txt") == "HELLO\nHELLO\n"
    assert result.statuses() == {
        "a": "up-to-date",
        "b": "restored",
        "c": "restored",
        "d": "up-to-date",
        "e": "up-to-date",
    }
    assert project.orch("status", "--check").exit_code == 0


def test_reverting_an_input_restores_earlier_outputs_without_running(project: Project) -> None:
    built_five_steps(project)
    project.write("src.txt", "# notes\nchanged\n")
    assert project.orch("build").exit_code == 0
    assert project.new_runs() == ["a", "b", "c", "e"]
    assert project.read("e.txt") == "CHANGED\nCHANGED\n--\nworld\n"

    project.write("src.txt", "# notes\nhello\n")
    status = project.orch("status")
    assert status.lines == [
        "restore     a  (input modified: src.txt)",
        "restore     b  (input modified: a.txt)",
        "restore     c  (input modified: b.txt)",
        "up-to-date  d",
        "restore     e  (input modified: c.txt)",
    ]
    result = project.orch("build")
    assert result.exit_code == 0
    assert project.new_runs() == []
    assert [e["step"] for e in result.events("step.restored")] == ["a", "b", "c", "e"]
    assert project.read("a.txt") == "hello\n"
    assert project.read("e.txt") == "HELLO\nHELLO\n--\nworld\n"
    written = {e["data"]["path"]: e["data"]["sha256"] for e in result.events("file.written")}
    assert written["e.txt"] == sha256("HELLO\nHELLO\n--\nworld\n")
    assert project.orch("status", "--check").exit_code == 0


def test_no_cache_neither_restores_nor_stores(project: Project) -> None:
    five_steps(project)
    assert project.orch("build", "--no-cache", "-j", "1").exit_code == 0
    assert project.new_runs() == ALL

    # Nothing was stored, so a lost output has to be made again.
    (project.root / "a.txt").unlink()
    result = project.orch("build")
    assert result.exit_code == 0
    assert project.new_runs() == ["a"]
    assert result.statuses()["b"] == "up-to-date"

    # Now the cache holds it, but --no-cache does not restore it.
    (project.root / "a.txt").unlink()
    result = project.orch("build", "--no-cache")
    assert project.new_runs() == ["a"]
    assert result.events("step.restored") == []
    assert project.read("a.txt") == "hello\n"


def test_force_reruns_every_step(project: Project) -> None:
    built_five_steps(project)
    result = project.orch("build", "-B", "-j", "1")
    assert result.exit_code == 0
    assert project.new_runs() == ALL
    assert result.manifest()["steps"]["a"]["reasons"] == ["forced (--force)"]
    assert result.events("step.restored") == []


# --------------------------------------------------------------------------- failures


def test_resume_after_a_failure_skips_the_steps_that_succeeded(project: Project) -> None:
    chain(project, FAIL_UNLESS_FIXED)
    failed = project.orch("build", "-j", "1")
    assert failed.exit_code == 1
    assert project.new_runs() == ["one", "two", "three"]
    assert failed.statuses() == {
        "one": "ran",
        "two": "ran",
        "three": "failed",
        "four": "blocked",
        "five": "blocked",
    }
    assert failed.manifest()["failures"][0]["kind"] == "exit"
    assert any(line.startswith("FAILED    three  (exited with code 1") for line in failed.lines)
    assert "run details: " in failed.stderr
    assert not project.exists("three.txt")
    assert sorted(project.lock()) == ["one", "two"]

    project.write("fixed", "")
    resumed = project.orch("build", "-j", "1")
    assert resumed.exit_code == 0
    assert project.new_runs() == ["three", "four", "five"]
    assert resumed.statuses() == {
        "one": "up-to-date",
        "two": "up-to-date",
        "three": "ran",
        "four": "ran",
        "five": "ran",
    }
    assert project.read("five.txt") == "seed\nseed\n"


TWO_BRANCHES = """\
version: 1
steps:
  bad:
    run: echo bad >> runs.log; exit 3
    output: bad.txt
  after_bad:
    inputs: [bad.txt]
    run: echo after_bad >> runs.log; cat bad.txt > after_bad.txt
    output: after_bad.txt
  last_bad:
    inputs: [after_bad.txt]
    run: echo last_bad >> runs.log; cat after_bad.txt > last_bad.txt
    output: last_bad.txt
  good:
    run: echo good >> runs.log; echo ok > good.txt
    output: good.txt
  after_good:
    inputs: [good.txt]
    run: echo after_good >> runs.log; cat good.txt > after_good.txt
    output: after_good.txt
"""


def test_keep_going_finishes_the_other_branch_and_blocks_dependents(project: Project) -> None:
    project.pipeline(TWO_BRANCHES)
    result = project.orch("build", "-k", "-j", "1")
    assert result.exit_code == 1
    assert project.new_runs() == ["bad", "good", "after_good"]
    assert project.read("after_good.txt") == "ok\n"
    assert result.statuses() == {
        "bad": "failed",
        "after_bad": "blocked",
        "last_bad": "blocked",
        "good": "ran",
        "after_good": "ran",
    }
    assert "blocked   after_bad  (upstream step 'bad' failed)" in result.lines
    assert "blocked   last_bad  (upstream step 'bad' failed)" in result.lines
    manifest = result.manifest()
    assert manifest["status"] == "failed"
    assert manifest["completed_steps"] == ["good", "after_good"]
    (failure,) = manifest["failures"]
    assert (failure["step"], failure["kind"]) == ("bad", "exit")
    assert "exited with code 3" in failure["message"]
    assert sorted(project.lock()) == ["after_good", "good"]


def test_without_keep_going_no_new_step_starts_after_a_failure(project: Project) -> None:
    project.pipeline(TWO_BRANCHES)
    result = project.orch("build", "-j", "1")
    assert result.exit_code == 1
    assert project.new_runs() == ["bad"]
    assert result.started() == ["bad"]
    assert result.statuses() == {
        "bad": "failed",
        "after_bad": "blocked",
        "last_bad": "blocked",
        "good": "pending",
        "after_good": "pending",
    }
    assert result.manifest()["pending_steps"] == [
        "bad",
        "after_bad",
        "last_bad",
        "good",
        "after_good",
    ]
    assert not project.exists("good.txt")
    assert project.lock() == {}


def test_a_missing_declared_output_fails_the_step(project: Project) -> None:
    project.pipeline(
        """\
        version: 1
        steps:
          lazy:
            run: echo lazy >> runs.log
            output: never.txt
        """
    )
    result = project.orch("build")
    assert result.exit_code == 1
    assert project.new_runs() == ["lazy"]
    (failure,) = result.events("step.failed", "lazy")
    assert failure["data"]["kind"] == "missing_output"
    assert "never.txt" in failure["data"]["message"]
    assert result.manifest()["failures"][0]["kind"] == "missing_output"
    assert project.lock() == {}
    assert project.orch("status", "--check").exit_code == 1


def test_a_command_that_cannot_be_started_fails_its_step(project: Project) -> None:
    project.pipeline(
        """\
        version: 1
        steps:
          nul:
            run: "echo a\\u0000b"
          equals:
            run: "true"
            env: { "A=B": x }
        """
    )
    result = project.orch("build", "-k")
    assert result.exit_code == 1
    failed = {e["step"]: e["data"]["message"] for e in result.events("step.failed")}
    assert failed == {
        "nul": "cannot start the command: embedded null byte",
        "equals": "cannot start the command: illegal environment variable name",
    }


def test_a_failed_command_keeps_its_captured_stdout_in_the_log(project: Project) -> None:
    project.pipeline(
        """\
        version: 1
        steps:
          report:
            run: "echo 3 tests failed; echo oops >&2; exit 3"
            stdout: report.txt
        """
    )
    result = project.orch("build")
    assert result.exit_code == 1
    assert result.run is not None
    log = (result.run / "logs" / "report.log").read_text()
    assert "oops" in log
    assert "# stdout (not written to report.txt, as the command failed):\n3 tests failed" in log
    assert not (project.root / "report.txt").exists()


def test_a_lock_file_that_cannot_be_written_fails_the_build_once(project: Project) -> None:
    project.pipeline(
        """\
        version: 1
        steps:
          a:
            run: "mkdir orch.lock && echo a > a.txt"
            output: a.txt
        """
    )
    result = project.orch("build")
    assert result.exit_code == 1
    (failure,) = result.events("lock.failed")
    assert "cannot write the lock file" in failure["data"]["message"]
    assert result.manifest()["status"] == "failed"
    assert [line for line in result.lines if line.startswith("ERROR")] == [
        f"ERROR     {failure['data']['message']}"
    ]
    assert not [p for p in project.root.iterdir() if p.name.endswith(".tmp")]


def test_a_step_timeout_fails_it_and_kills_its_process_group(project: Project) -> None:
    project.pipeline(
        """\
        version: 1
        steps:
          slow:
            run: echo $$ > slow.pid; sleep 60 & while :; do sleep 0.05; done
            output: slow.txt
            timeout_s: 0.5
        """
    )
    started = time.monotonic()
    result = project.orch("build")
    assert time.monotonic() - started < 5
    assert result.exit_code == 1
    (failure,) = result.events("step.failed", "slow")
    assert failure["data"]["kind"] == "timeout"
    assert "timed out after 0.5 s" in failure["data"]["message"]
    assert result.manifest()["failures"][0]["kind"] == "timeout"
    group = project.step_group("slow.pid")
    wait_for(lambda: not live_members(group), timeout=5, what="the step's processes to end")


# --------------------------------------------------------------------------- targets, -j


def test_targets_build_only_what_they_need(project: Project) -> None:
    five_steps(project)
    result = project.orch("build", "orch.yaml", "c", "-j", "1")
    assert result.exit_code == 0
    assert project.new_runs() == ["a", "b", "c"]
    assert set(result.statuses()) == {"a", "b", "c"}
    assert not project.exists("d.txt")
    assert not project.exists("e.txt")
    assert project.orch("status", "orch.yaml", "c", "--check").exit_code == 0
    assert project.orch("status", "--check").exit_code == 1

    assert project.orch("build", "d").exit_code == 0
    assert project.new_runs() == ["d"]

    unknown = project.orch("build", "orch.yaml", "nope")
    assert unknown.exit_code == 2
    assert "no step named 'nope'" in unknown.stderr
    assert unknown.run is None


def test_jobs_run_independent_steps_at_the_same_time(project: Project) -> None:
    # Each step waits for the other's marker: they can only finish if they run together.
    project.pipeline(
        """\
        version: 1
        steps:
          left:
            run: touch left.ready; while [ ! -e right.ready ]; do sleep 0.01; done; echo l > l.txt
            output: l.txt
            timeout_s: 5
          right:
            run: touch right.ready; while [ ! -e left.ready ]; do sleep 0.01; done; echo r > r.txt
            output: r.txt
            timeout_s: 5
        """
    )
    result = project.orch("build", "-j", "2")
    assert result.exit_code == 0, result.stdout
    assert result.statuses() == {"left": "ran", "right": "ran"}
    types = [(e["type"], e["step"]) for e in result.events() if e["type"].startswith("step.")]
    assert types[:2] == [("step.started", "left"), ("step.started", "right")]


def test_a_step_that_must_run_starts_before_every_ready_step_is_checked(
    project: Project,
) -> None:
    """Among many independent steps, the one that must run starts while the others are still
    being found up to date, instead of after all of them."""
    count = 300
    steps = "".join(
        f"  s{i}:\n    inputs: [src/{i}.txt]\n    output: out/{i}.txt\n"
        f"    run: mkdir -p out && cp src/{i}.txt out/{i}.txt\n"
        for i in range(count)
    )
    for i in range(count):
        project.write(f"src/{i}.txt", f"{i}\n")
    project.write("orch.yaml", "version: 1\nsteps:\n" + steps)
    assert project.orch("build").exit_code == 0
    project.write("src/0.txt", "edited\n")
    result = project.orch("build", "-j", "1")
    assert result.exit_code == 0, result.stdout
    assert f"1 ran, {count - 1} up to date" in result.stdout
    order = [(e["type"], e["step"]) for e in result.events()]
    assert order.index(("step.started", "s0")) < order.index(("step.skipped", f"s{count - 1}"))


def test_a_build_hands_everything_back_to_the_garbage_collector(project: Project) -> None:
    """What a build keeps out of the cyclic collector's sight is handed back when it ends, so
    that `orch watch`, building again and again in one process, frees each build's objects."""
    project.pipeline(
        """\
        version: 1
        steps:
          a:
            run: echo a > a.txt
            output: a.txt
        """
    )
    for _ in range(2):
        assert project.orch("build").exit_code == 0
        assert gc.isenabled()
        assert gc.get_freeze_count() == 0


def test_the_collector_pauses_while_steps_are_assessed_and_runs_while_steps_run(
    project: Project,
) -> None:
    """A build that only finds its steps up to date keeps the collector paused (its full
    collections would walk every event held so far, again and again); once a step runs, the
    collector runs too, and after the build it is as before."""
    project.pipeline(
        """\
        version: 1
        steps:
          a:
            run: echo a > a.txt
            output: a.txt
          b:
            run: echo b > b.txt
            output: b.txt
        """
    )
    seen: list[tuple[str, bool]] = []

    def note(event: dict[str, object]) -> None:
        seen.append((str(event["type"]), gc.isenabled()))

    request = Request(project.root / "orch.yaml", jobs=1)
    assert build(request, (note,)).status == JobStatus.SUCCEEDED
    assert ("step.started", True) in seen
    seen.clear()
    assert build(request, (note,)).status == JobStatus.SUCCEEDED
    assert {s for s in seen if s[0] == "step.skipped"} == {("step.skipped", False)}
    assert gc.isenabled()


def test_a_collector_turned_off_before_the_build_stays_off_when_steps_run() -> None:
    """`resume` gives the collector back as the build found it: on during a build that found
    it on, and never on for a program that turned it off (embedding orch), during a build or
    after one."""
    with memory.kept_for_the_build() as settle:
        settle(False)
        assert not gc.isenabled()
        memory.resume()
        assert gc.isenabled()
    gc.disable()
    try:
        memory.resume()  # after a build that found it on
        assert not gc.isenabled()
        with memory.kept_for_the_build() as settle:
            settle(False)
            memory.resume()
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


class _Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.mark.parametrize("compiled", [True, False])
def test_a_pipeline_compiled_afresh_leaves_no_garbage_for_the_build_to_keep(
    compiled: bool,
) -> None:
    """Garbage in cycles made while a build loads (a compiled pipeline's graphs) is freed
    before the rest is frozen for the build when the pipeline was compiled; from a saved plan,
    nothing is collected then (a collection would walk every loaded object for nothing), and
    whatever was frozen is freed once the build ends."""
    with memory.kept_for_the_build() as settle:
        garbage = weakref.ref(_Cycle())
        settle(compiled)
        assert (garbage() is None) == compiled
    gc.collect()
    assert garbage() is None


# --------------------------------------------------------------------------- status, dry run


def test_status_check_names_the_changed_file_and_passes_when_up_to_date(
    project: Project,
) -> None:
    five_steps(project)
    never = project.orch("status", "--check")
    assert never.exit_code == 1
    assert never.lines[0] == "run         a  (never built)"

    built_five_steps(project)
    clean = project.orch("status", "--check")
    assert clean.exit_code == 0
    assert clean.lines[-1] == "all 5 steps up to date"
    data = json.loads(project.orch("status", "--json").stdout)
    assert data["up_to_date"] is True
    assert {s["step"]: s["action"] for s in data["steps"]} == dict.fromkeys(ALL, "up-to-date")

    project.write("other.txt", "changed\n")
    stale = project.orch("status", "--check")
    assert stale.exit_code == 1
    assert "run         d  (input modified: other.txt)" in stale.lines
    data = json.loads(project.orch("status", "--check", "--json").stdout)
    assert data["up_to_date"] is False
    assert data["pipeline"] == "orch.yaml"
    assert data["steps"][3] == {
        "step": "d",
        "action": "run",
        "reasons": ["input modified: other.txt"],
        "stale": True,
    }
    assert data["steps"][4] == {
        "step": "e",
        "action": "run",
        "reasons": ["upstream will change"],
        "stale": True,
    }


def test_dry_run_writes_nothing(project: Project) -> None:
    five_steps(project)
    before = snapshot(project.root)
    fresh = project.orch("build", "-n")
    assert fresh.exit_code == 0
    assert fresh.lines[-1] == "dry run: 5 of 5 steps would change"
    assert snapshot(project.root) == before
    assert not project.exists(".orch")
    assert not project.exists("orch.lock")

    built_five_steps(project)
    project.write("src.txt", "# notes\nchanged\n")
    (project.root / "d.txt").unlink()
    before = snapshot(project.root)
    result = project.orch("build", "--dry-run")
    assert result.exit_code == 0
    assert result.lines == [
        "run         a  (input modified: src.txt)",
        "run         b  (upstream will change)",
        "run         c  (upstream will change)",
        "restore     d  (output missing: d.txt)",
        "run         e  (upstream will change)",
        "dry run: 5 of 5 steps would change",
    ]
    assert result.run is None
    assert project.new_runs() == []
    assert snapshot(project.root) == before


# --------------------------------------------------------------------------- safety


@pytest.mark.parametrize(
    "declared",
    ["output: out/x.txt", "outputs: [out/]", "stdout: out/x.txt"],
    ids=["output", "outputs-folder", "stdout"],
)
def test_an_output_through_a_symlink_outside_the_workdir_is_refused(
    project: Project, tmp_path: Path, declared: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (project.root / "out").symlink_to(outside, target_is_directory=True)
    project.pipeline(
        f"""\
        version: 1
        steps:
          leak:
            run: echo leak >> runs.log; mkdir -p out; echo hi > out/x.txt
            {declared}
        """
    )
    result = project.orch("build")
    assert result.exit_code == 2
    assert "leads outside the workdir" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert list(outside.iterdir()) == []
    assert project.new_runs() == []
    assert not project.exists(".orch")
    assert not project.exists("orch.lock")


@pytest.mark.parametrize(
    ("declared", "replace"),
    [
        ("outputs: [out/]", 'mkdir -p "$AWAY"; echo x > "$AWAY/f.txt"; ln -s "$AWAY" out'),
        ("output: out/f.txt", 'mkdir -p "$AWAY"; ln -s "$AWAY" out; echo x > out/f.txt'),
    ],
    ids=["output-folder", "folder-of-output-file"],
)
def test_a_step_that_swaps_its_output_folder_for_a_symlink_fails_unrecorded(
    project: Project, tmp_path: Path, declared: str, replace: str
) -> None:
    away = tmp_path / "away"
    project.pipeline(
        f"""\
        version: 1
        steps:
          swap:
            env: {{ AWAY: {json.dumps(str(away))} }}
            run: echo swap >> runs.log; rm -rf out; {replace}
            {declared}
          reader:
            needs: [swap]
            run: echo reader >> runs.log; ls out > listing.txt
            output: listing.txt
        """
    )
    result = project.orch("build", "-k")
    assert result.exit_code == 1
    assert project.new_runs() == ["swap"]
    (failure,) = result.events("step.failed", "swap")
    assert failure["data"]["kind"] == "refused"
    assert "outside the workdir" in failure["data"]["message"]
    assert result.statuses() == {"swap": "failed", "reader": "blocked"}
    assert project.lock() == {}
    assert result.manifest()["files"] == {}
    actions = project.root / ".orch" / "cache" / "actions"
    assert not actions.exists() or list(actions.iterdir()) == []


def test_an_output_folder_replaced_by_a_symlink_after_a_build_is_refused(
    project: Project, tmp_path: Path
) -> None:
    project.pipeline(
        """\
        version: 1
        steps:
          gen:
            run: echo gen >> runs.log; mkdir -p out; echo x > out/x.txt
            output: out/x.txt
        """
    )
    assert project.orch("build").exit_code == 0
    assert project.new_runs() == ["gen"]
    outside = tmp_path / "outside"
    outside.mkdir()
    (project.root / "out" / "x.txt").unlink()
    (project.root / "out").rmdir()
    (project.root / "out").symlink_to(outside, target_is_directory=True)
    runs = project.run_folders()

    for args in [("build",), ("build", "-B")]:
        result = project.orch(*args)
        assert list(outside.iterdir()) == []
        assert project.new_runs() == []
        assert (result.exit_code, result.run) == (2, None), "the pipeline must be refused"
        assert "leads outside the workdir" in result.stderr
    assert project.run_folders() == runs
    status = project.orch("status")
    assert status.exit_code == 2


@pytest.mark.parametrize(
    "link",
    [
        'ln -s "$AWAY" out/sub; echo x > out/sub/f.txt',
        'ln -s "$AWAY/secret.txt" out/s.txt',
    ],
    ids=["folder-link", "file-link"],
)
def test_a_symlink_leading_outside_inside_an_output_folder_fails_the_step(
    project: Project, tmp_path: Path, link: str
) -> None:
    away = tmp_path / "away"
    away.mkdir()
    (away / "secret.txt").write_text("secret\n")
    project.pipeline(
        f"""\
        version: 1
        steps:
          gen:
            env: {{ AWAY: {json.dumps(str(away))} }}
            run: echo gen >> runs.log; mkdir -p out; echo y > out/g.txt; {link}
            outputs: [out/]
        """
    )
    result = project.orch("build")
    assert project.new_runs() == ["gen"]
    assert result.exit_code == 1, "a step whose output folder leads outside must fail"
    (failure,) = result.events("step.failed", "gen")
    assert failure["data"]["kind"] == "refused"
    assert project.lock() == {}
    objects = project.root / ".orch" / "cache" / "objects"
    cached = [p.read_text() for p in objects.rglob("*") if p.is_file()] if objects.exists() else []
    assert "secret\n" not in cached


def test_a_refused_restore_fails_that_step_and_the_build_goes_on(
    project: Project, tmp_path: Path
) -> None:
    project.pipeline(
        """\
        version: 1
        steps:
          gen:
            run: echo gen >> runs.log; mkdir -p out/sub; echo x > out/sub/f.txt
            outputs: [out/]
          other:
            run: echo other >> runs.log; echo o > o.txt
            output: o.txt
        """
    )
    assert project.orch("build", "-j", "1").exit_code == 0
    assert project.new_runs() == ["gen", "other"]

    # The output folder's subfolder now leads outside; both outputs are gone.
    away = tmp_path / "away"
    away.mkdir()
    (project.root / "out" / "sub" / "f.txt").unlink()
    (project.root / "out" / "sub").rmdir()
    (project.root / "out" / "sub").symlink_to(away, target_is_directory=True)
    (project.root / "o.txt").unlink()

    result = project.orch("build", "-k", "-j", "1")
    assert list(away.iterdir()) == []
    assert result.exit_code == 1
    assert project.new_runs() == []
    assert result.statuses() == {"gen": "failed", "other": "restored"}
    assert project.read("o.txt") == "o\n"
    (failure,) = result.manifest()["failures"]
    assert (failure["step"], failure["kind"]) == ("gen", "refused")
    assert result.manifest()["status"] == "failed"
    assert result.events()[-1]["type"] == "job.failed"


# --------------------------------------------------------------------------- signals


def test_sigkill_loses_only_the_step_in_flight(project: Project) -> None:
    chain(project, WAIT_FOR_GO)
    process = project.spawn("build", "-j", "1")
    run = project.wait_for_run(set(), process)
    project.wait_for_event(run, "step.started", "three", process)
    group = project.step_group("three.pid")
    # Both finished steps are in the lock (that they are before `three` starts is pinned by
    # test_a_finished_step_is_in_the_lock_before_the_next_step_starts).
    wait_for(lambda: sorted(project.lock()) == ["one", "two"], what="the lock entries")

    process.kill()
    assert process.wait(timeout=10) == -signal.SIGKILL
    assert not project.exists("three.txt")
    assert [p.name for p in project.root.glob(".three.txt*")] == []
    assert sorted(project.lock()) == ["one", "two"]
    assert project.new_runs() == ["one", "two", "three"]
    # The lock file is written when a build ends: the entries are in the lock journal, which
    # `orch status` reads too.
    assert not project.exists("orch.lock")
    assert project.exists(".orch.lock.journal")
    status = json.loads(project.orch("status", "--json").stdout)
    actions = {step["step"]: step["action"] for step in status["steps"]}
    assert actions == {"one": "up-to-date", "two": "up-to-date"} | dict.fromkeys(
        ("three", "four", "five"), "run"
    )

    # The step runs in its own session, so it outlives a kill -9 of orch; it must not keep
    # the workdir locked, though.
    assert live_members(group)
    upstream = project.orch("build", "orch.yaml", "two")
    assert (upstream.exit_code, upstream.stdout) == (0, "all 2 steps up to date\n")
    kill_group(group)
    wait_for(lambda: not live_members(group), what="the orphaned step to end")

    project.write("go", "")
    result = project.orch("build", "-j", "1")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert project.new_runs() == ["three", "four", "five"]
    assert result.statuses() == {
        "one": "up-to-date",
        "two": "up-to-date",
        "three": "ran",
        "four": "ran",
        "five": "ran",
    }
    assert project.read("three.txt") == "seed\nseed\n"
    assert not project.exists(".orch.lock.journal"), "the build folded it into the lock file"
    assert sorted(project.lock()) == ["five", "four", "one", "three", "two"]


def test_a_finished_step_is_in_the_lock_before_the_next_step_starts(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No step is cached, so a lost lock entry means running the step again.
    project.write("src.txt", "seed\n")
    snapshot_lock = (
        "for f in orch.lock .orch.lock.journal; do"
        ' cp "$f" "at-three$f" 2>/dev/null || rm -f "at-three$f"; done'
    )
    project.pipeline(
        f"""\
        version: 1
        steps:
          one:
            inputs: [src.txt]
            cache: false
            run: echo one >> runs.log; cat src.txt > one.txt
            output: one.txt
          two:
            inputs: [one.txt]
            cache: false
            run: echo two >> runs.log; cat one.txt > two.txt
            output: two.txt
          three:
            inputs: [two.txt]
            cache: false
            run: echo three >> runs.log; {snapshot_lock}; touch three.started; cat two.txt
            stdout: three.txt
        """
    )
    # A slow disk: getting an entry to disk (the fdatasync of the lock journal, or of a file)
    # takes until `three` has started (at most half a second). Were the entries written in
    # the background, `three` would start before those of `one` and `two` are on disk.
    fdatasync = os.fdatasync

    def slow_fdatasync(fd: int) -> None:
        deadline = time.monotonic() + 0.5
        while not project.exists("three.started") and time.monotonic() < deadline:
            time.sleep(0.005)
        fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", slow_fdatasync)
    assert project.orch("build", "-j", "1").exit_code == 0
    assert project.new_runs() == ["one", "two", "three"]

    # A kill -9 while `three` ran would have left the lock and its journal as `three` saw
    # them, and no three.txt.
    for name in ("orch.lock", ".orch.lock.journal"):
        if project.exists(f"at-three{name}"):
            (project.root / name).write_text(project.read(f"at-three{name}"))
        else:
            (project.root / name).unlink(missing_ok=True)
    (project.root / "three.txt").unlink()
    result = project.orch("build", "-j", "1")
    assert result.exit_code == 0
    assert project.new_runs() == ["three"], "steps that finished before the kill ran again"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupt_cancels_the_build_and_ends_the_running_step(
    project: Project, sig: signal.Signals
) -> None:
    chain(project, WAIT_FOR_GO)
    process = project.spawn("build", "-j", "1")
    run = project.wait_for_run(set(), process)
    project.wait_for_event(run, "step.started", "three", process)
    group = project.step_group("three.pid")

    process.send_signal(sig)
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    events = read_events(run)
    assert events[-1]["type"] == "job.cancelled"
    assert [e["data"]["kind"] for e in events if e["type"] == "step.failed"] == ["cancelled"]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "cancelled"
    assert manifest["completed_steps"] == ["one", "two"]
    assert "three" in manifest["pending_steps"]
    assert manifest["steps"]["three"]["status"] == "cancelled"
    wait_for(lambda: not live_members(group), timeout=5, what="the step's processes to end")
    assert not project.exists("three.txt")
    assert sorted(project.lock()) == ["one", "two"]

    assert project.new_runs() == ["one", "two", "three"]
    project.write("go", "")
    result = project.orch("build", "-j", "1")
    assert result.exit_code == 0
    assert project.new_runs() == ["three", "four", "five"]


def build_beside(project: Project) -> subprocess.CompletedProcess[str]:
    """A second `orch build` started while another one runs; how it ended."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", "build", "-j", "1"],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def test_a_second_concurrent_build_fails_fast_naming_the_holder(project: Project) -> None:
    chain(project, WAIT_FOR_GO)
    first = project.spawn("build", "-j", "1")
    run = project.wait_for_run(set(), first)
    project.wait_for_event(run, "step.started", "three", first)

    started = time.monotonic()
    second = build_beside(project)
    assert time.monotonic() - started < 10
    assert second.returncode == 1
    assert "another build is running" in second.stderr
    assert f"(pid {first.pid})" in second.stderr
    assert project.run_folders() == {run}

    project.write("go", "")
    stdout, stderr = first.communicate(timeout=20)
    assert first.returncode == 0, stderr
    assert project.new_runs() == CHAIN
    assert json.loads((run / "manifest.json").read_text())["status"] == "succeeded"
    assert sorted(project.lock()) == sorted(CHAIN)
    assert project.read("five.txt") == "seed\nseed\n"
    assert stdout.splitlines()[-1].endswith(": 5 ran")


def test_deleting_orch_state_mid_build_lets_no_second_build_in(project: Project) -> None:
    chain(project, WAIT_FOR_GO)
    first = project.spawn("build", "-j", "1")
    run = project.wait_for_run(set(), first)
    project.wait_for_event(run, "step.started", "three", first)
    wait_for(lambda: project.exists("three.pid"), what="step three running")
    shutil.rmtree(project.root / ".orch")  # as `git clean -fdx` would

    second = build_beside(project)
    assert second.returncode == 1, second.stderr
    assert "another build is running" in second.stderr

    project.write("go", "")
    _, stderr = first.communicate(timeout=20)
    assert "Traceback" not in stderr
    assert first.returncode in (0, 1), stderr
    again = project.orch("build")
    assert again.exit_code == 0, again.stderr
    assert project.read("five.txt") == "seed\nseed\n"
    assert project.orch("build").stdout.splitlines()[-1] == "all 5 steps up to date"


# --------------------------------------------------------------------------- the lock file


@pytest.mark.parametrize("text", ["steps: [\n", "version: 9\nsteps: {}\n"])
def test_an_unusable_lock_file_stops_the_build_until_forced(project: Project, text: str) -> None:
    built_five_steps(project)
    lock = project.root / "orch.lock"
    lock.write_text(text)
    before = snapshot(project.root)
    refused = project.orch("build")
    assert refused.exit_code == 2
    assert "orch.lock" in refused.stderr and "--force" in refused.stderr
    assert "Traceback" not in refused.stdout + refused.stderr
    after = snapshot(project.root)
    # The lock file is read while holding the workdir; holding it only touches .orch/build.lock.
    assert after.pop(".orch/build.lock")[2] == 0
    before.pop(".orch/build.lock")
    assert after == before, "a refused build writes nothing else"

    forced = project.orch("build", "-B", "-j", "1")
    assert forced.exit_code == 0, forced.stderr
    assert project.new_runs() == ALL
    assert sorted(read_lock(lock)) == ALL
