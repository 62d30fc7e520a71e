"""`orch runs`, `orch show` and `orch tail`: past runs, a failed run, a live one and a killed one.

Builds run in-process through click's CliRunner, except where a build must still be running while
another command reads it: there both run as `python -m orchestrator` child processes.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from orchestrator.cli.commands import cli
from orchestrator.record import history

from .buildkit import Build, Project, read_events

END = "job.succeeded"


# --------------------------------------------------------------------------- helpers

# `wait` blocks until the test creates `go`; `last` needs it.
WAITING = """\
version: 1
steps:
  first:
    run: echo first > first.txt
    output: first.txt
  wait:
    inputs: [first.txt]
    run: "echo $$ > wait.pid; while [ ! -e go ]; do sleep 0.05; done; echo done > out.txt"
    output: out.txt
  last:
    inputs: [out.txt]
    run: cat out.txt > last.txt
    output: last.txt
"""

# `broken` fails, `after` needs it, `solo` is independent of both.
FAILING = """\
version: 1
steps:
  broken:
    run: "echo oops >&2; exit 3"
  after:
    needs: [broken]
    run: echo after > after.txt
    output: after.txt
  solo:
    run: echo solo > solo.txt
    output: solo.txt
"""

# A shell step and an llm step on a priced fake provider that echoes its 5-word prompt.
PRICED = """\
version: 1
providers:
  fake: { kind: fake, echo: true, price: { input: 1.5, output: 2.0 } }
steps:
  src:
    run: echo hello > src.txt
    output: src.txt
  ask:
    inputs: [src.txt]
    prompt: Say hello to the world
    output: ask.md
"""


def ok(build: Build) -> Build:
    assert build.exit_code == 0, build.stdout + build.stderr
    return build


def failed_run(project: Project) -> Build:
    project.pipeline(FAILING)
    build = project.orch("build", "-k", "-j", "1")
    assert build.exit_code == 1, build.stdout + build.stderr
    return build


def table(output: str) -> list[dict[str, str]]:
    """The rows of a table printed under a header line, by column name.

    Columns are two or more spaces apart on every line, so a cell may be blank or hold single
    spaces ("UP TO DATE").
    """
    lines = output.splitlines()
    width = max(map(len, lines))
    padded = [line.ljust(width) for line in lines]
    blank = [all(line[i] == " " for line in padded) for i in range(width)] + [False]
    spans, start, i = [], 0, 0
    while i < width:
        if blank[i] and blank[i + 1]:
            end = i
            while blank[i]:
                i += 1
            spans.append((start, end))
            start = i
        else:
            i += 1
    spans.append((start, width))
    header, *rows = [[line[a:b].strip() for a, b in spans] for line in padded]
    return [dict(zip(header, row, strict=True)) for row in rows]


def line_reader(process: subprocess.Popen[str]) -> queue.Queue[str | None]:
    """The lines a process prints, as they come (None once its stdout closes)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def read_until(
    lines: queue.Queue[str | None], kind: str, step: str, timeout: float = 10.0
) -> list[str]:
    """`orch tail` lines up to and including the first event of `kind` for `step`."""
    marker = f"{kind} of {step}"
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no line with {marker!r} within {timeout} s: {seen}") from None
        if line is None:
            raise AssertionError(f"the output ended before a line with {marker!r}: {seen}")
        seen.append(line)
        if tail_fields(line)[1:] == (kind, step):
            return seen


def tail_fields(line: str) -> tuple[str, str, str]:
    """Level, type and step of an `orch tail` line."""
    _, level, kind, step = line.split()[:4]
    return level, kind, step


# --------------------------------------------------------------------------- tail --follow


def test_tail_follow_prints_a_live_builds_events_as_they_happen_and_exits_when_it_ends(
    project: Project,
) -> None:
    project.pipeline(WAITING)
    build = project.spawn("build", "-j", "1")
    run = project.wait_for_run(set(), build)
    tail = project.spawn("tail", "-f")
    lines = line_reader(tail)

    seen = read_until(lines, "step.started", "wait")
    assert build.poll() is None and tail.poll() is None
    assert all(e["type"] != END for e in read_events(run))
    assert tail_fields(seen[0])[1:] == ("job.started", "-")

    project.write("go", "")
    seen += read_until(lines, END, "-")
    assert tail.wait(timeout=10) == 0
    assert build.wait(timeout=10) == 0
    assert lines.get(timeout=10) is None  # nothing after the end event
    events = read_events(run)
    assert [tail_fields(line)[1] for line in seen] == [e["type"] for e in events]
    assert events[-1]["type"] == END


def test_tail_follow_started_before_a_build_waits_for_it_not_for_the_last_run(
    project: Project,
) -> None:
    before = failed_run(project).run
    project.pipeline(WAITING)
    tail = project.spawn("tail", "-f")
    lines = line_reader(tail)
    assert tail.stderr is not None
    assert tail.stderr.readline().startswith("waiting for a build in ")
    build = project.spawn("build", "-j", "1")
    run = project.wait_for_run({before} if before else set(), build)
    seen = read_until(lines, "step.started", "wait")
    assert tail_fields(seen[0])[1:] == ("job.started", "-")
    project.write("go", "")
    read_until(lines, END, "-")
    assert tail.wait(timeout=10) == 0 and build.wait(timeout=10) == 0
    assert read_events(run)[0]["job_id"] == run.name


def test_tail_follow_of_a_build_that_changes_nothing_says_so(project: Project) -> None:
    project.pipeline("version: 1\nsteps:\n  a:\n    run: echo a > a.txt\n    output: a.txt\n")
    ok(project.orch("build"))
    again = ok(project.orch("build"))
    assert again.unchanged
    job = again.manifest()["job_id"]
    followed = ok(project.orch("tail", "-f", job))
    assert followed.stdout == f"run {job} changed nothing: {again.stdout}"


# --------------------------------------------------------------------------- show


def test_show_names_the_failure_and_the_pending_steps_of_a_failed_run(project: Project) -> None:
    build = failed_run(project)
    manifest = build.manifest()
    assert set(manifest["pending_steps"]) == {"broken", "after"}

    shown = ok(project.orch("show"))
    assert f"job:       {manifest['job_id']}" in shown.lines
    assert "status:    failed" in shown.lines
    steps = {row["STEP"]: row for row in table(_section(shown.stdout, "STEP"))}
    assert steps["broken"]["STATUS"] == "failed"
    assert steps["broken"]["FAILURE"].startswith("exit: exited with code 3")
    assert steps["after"]["STATUS"] == "blocked"
    assert (steps["solo"]["STATUS"], steps["solo"]["CACHE"]) == ("ran", "miss")
    assert f"pending steps: {', '.join(manifest['pending_steps'])}" in shown.lines


def _section(output: str, first: str) -> str:
    """The lines from the one starting with `first` up to the next blank line."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first))
    end = lines.index("", start)
    return "\n".join(lines[start:end])


def test_show_json_prints_the_manifest_and_nothing_else(project: Project) -> None:
    build = failed_run(project)
    shown = ok(project.orch("show", "--json"))
    assert json.loads(shown.stdout) == build.manifest()


def test_show_selects_a_run_by_a_prefix_of_its_job_id(project: Project) -> None:
    first = failed_run(project)
    second = failed_run(project)
    job_id = first.manifest()["job_id"]
    shown = ok(project.orch("show", job_id[:-3]))
    assert f"job:       {job_id}" in shown.lines
    assert ok(project.orch("show")).lines[0] == f"job:       {second.manifest()['job_id']}"


def test_an_ambiguous_or_unknown_run_exits_2_naming_the_candidates(project: Project) -> None:
    ids = sorted(failed_run(project).manifest()["job_id"] for _ in range(2))
    ambiguous = project.orch("show", "20")
    assert ambiguous.exit_code == 2
    assert "run '20' is ambiguous" in ambiguous.stderr
    assert all(job_id in ambiguous.stderr for job_id in ids)

    unknown = project.orch("tail", "nope")
    assert unknown.exit_code == 2
    assert "no run 'nope'" in unknown.stderr and ids[-1] in unknown.stderr


def test_show_without_runs_exits_2_and_runs_says_none_yet(project: Project) -> None:
    assert (project.orch("runs").exit_code, project.orch("runs").stdout) == (0, "no runs yet\n")
    shown = project.orch("show")
    assert shown.exit_code == 2 and "no runs yet" in shown.stderr


# --------------------------------------------------------------------------- runs


def test_runs_lists_runs_newest_first_with_their_counts_tokens_and_cost(project: Project) -> None:
    project.pipeline(PRICED)
    first = ok(project.orch("build", "-j", "1")).manifest()
    second = ok(project.orch("build", "-j", "1")).manifest()
    assert second["counts"] == {"up-to-date": 2}

    rows = table(ok(project.orch("runs")).stdout)
    assert [row["JOB"] for row in rows] == [second["job_id"], first["job_id"]]
    newest, oldest = rows
    assert (newest["STATUS"], newest["RAN"], newest["UP TO DATE"]) == ("succeeded", "0", "2")
    assert (newest["RESTORED"], newest["FAILED"]) == ("0", "0")
    assert (newest["TOKENS"], newest["COST"]) == ("", "")  # nothing was called
    assert (oldest["PIPELINE"], oldest["RAN"], oldest["UP TO DATE"]) == ("orch.yaml", "2", "0")
    tokens = first["usage"]["tokens"]
    assert int(oldest["TOKENS"]) == tokens["input"] + tokens["output"] == 10
    assert float(oldest["COST"]) == pytest.approx(first["usage"]["cost"])
    assert oldest["COST"] == "0.0000175"  # (5 * 1.5 + 5 * 2.0) per million tokens

    limited = table(ok(project.orch("runs", "--limit", "1")).stdout)
    assert [row["JOB"] for row in limited] == [second["job_id"]]
    listed = json.loads(ok(project.orch("runs", "--json")).stdout)
    assert [entry["job_id"] for entry in listed] == [second["job_id"], first["job_id"]]
    assert listed[1]["usage"] == first["usage"] and listed[1]["live"] is False


def test_workdir_option_reads_another_folders_runs(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = failed_run(project).manifest()["job_id"]
    monkeypatch.chdir(project.root.parent)
    result = CliRunner().invoke(cli, ["runs", "-C", project.root.name])
    assert result.exit_code == 0, result.output
    assert [row["JOB"] for row in table(result.stdout)] == [job_id]


# --------------------------------------------------------------------------- tail filters


def test_tail_filters_by_type_step_and_level(project: Project) -> None:
    events = read_events(failed_run(project).run or Path())

    def tail(*args: str) -> list[tuple[str, str, str]]:
        return [tail_fields(line) for line in ok(project.orch("tail", *args)).lines]

    def expected(keep: Any) -> list[tuple[str, str, str]]:
        return [(e["level"].upper(), e["type"], e["step"] or "-") for e in events if keep(e)]

    assert tail() == expected(lambda e: True)
    assert tail("--type", "step.*") == expected(lambda e: e["type"].startswith("step."))
    assert tail("--step", "solo") == expected(lambda e: e["step"] == "solo")
    warnings = tail("--level", "warning")
    assert warnings == expected(lambda e: e["level"] in ("warning", "error"))
    assert {level for level, _, _ in warnings} == {"WARNING", "ERROR"}
    both = tail("--type", "step.*", "--level", "error")
    assert both == [("ERROR", "step.failed", "broken")]


def test_tail_json_prints_each_event_as_a_json_line(project: Project) -> None:
    events = read_events(failed_run(project).run or Path())
    lines = ok(project.orch("tail", "--json")).lines
    assert [json.loads(line) for line in lines] == events
    solo = ok(project.orch("tail", "--json", "--type", "step.*", "--step", "solo")).lines
    assert [json.loads(line)["type"] for line in solo] == ["step.started", "step.succeeded"]


def test_tail_shortens_long_values(project: Project) -> None:
    events = read_events(failed_run(project).run or Path())
    failure = next(e for e in events if e["type"] == "step.failed")["data"]
    miss = next(e for e in events if e["type"] == "cache.miss")["data"]
    assert len(failure["message"]) > 80 and len(miss["key"]) == 64
    lines = ok(project.orch("tail", "--type", "step.failed", "--type", "cache.miss")).lines
    missed = next(line for line in lines if "cache.miss" in line)
    failed = next(line for line in lines if "step.failed" in line)
    assert missed.endswith(f"  key={miss['key'][:12]}")
    shown = json.dumps(failure["message"])[:77]
    assert f" message={shown}... duration_s=" in failed


# --------------------------------------------------------------------------- unfinished runs


def test_show_on_a_killed_build_says_it_did_not_finish_and_what_the_events_say(
    project: Project,
) -> None:
    project.pipeline(WAITING)
    build = project.spawn("build", "-j", "1")
    run = project.wait_for_run(set(), build)
    project.wait_for_event(run, "step.started", "wait", build)
    project.step_group("wait.pid")  # the step outlives orch: the cleanup ends it
    build.kill()
    build.wait(timeout=10)
    assert json.loads((run / "manifest.json").read_text())["status"] == "running"

    shown = ok(project.orch("show"))
    status = next(line for line in shown.lines if line.startswith("status:"))
    assert "unfinished" in status and "killed" in status
    steps = {row["STEP"]: row["STATUS"] for row in table(_section(shown.stdout, "STEP"))}
    assert steps == {"first": "ran", "wait": "running", "last": "pending"}
    assert "pending steps: wait, last" in shown.lines

    manifest = json.loads(ok(project.orch("show", "--json")).stdout)
    assert manifest["status"] == "running"
    assert manifest["completed_steps"] == ["first"]
    assert table(ok(project.orch("runs")).stdout)[0]["STATUS"] == "unfinished"

    followed = project.orch("tail", "-f", run.name, "--type", "job.*")
    assert followed.exit_code == 1
    assert [tail_fields(line)[1] for line in followed.lines] == ["job.started"]
    assert "no end event and no build is writing it" in followed.stderr


# --------------------------------------------------------------------------- reading events


def _events_file(tmp_path: Path, text: str) -> history.Run:
    (tmp_path / "events.jsonl").write_text(text, encoding="utf-8")
    return history.Run("20260101T000000Z-000000", tmp_path)


def test_a_partial_last_line_is_not_an_event_yet(tmp_path: Path) -> None:
    whole = json.dumps({"type": "job.started", "step": None, "level": "info", "data": {}})
    run = _events_file(tmp_path, whole + "\n" + whole[:20])
    assert [e["type"] for e in history.read_events(run)] == ["job.started"]
    followed = list(history.follow(run, lambda: False, poll_s=0.001, quiet_s=0.0))
    assert [e["type"] for e in followed] == ["job.started"]


def test_follow_stops_at_the_end_event_even_while_a_build_holds_the_workdir(
    tmp_path: Path,
) -> None:
    lines = [json.dumps({"type": kind, "data": {}}) for kind in ("job.started", "job.failed")]
    run = _events_file(tmp_path, "\n".join(lines) + "\n")
    followed = list(history.follow(run, lambda: True, poll_s=0.001))
    assert [e["type"] for e in followed] == ["job.started", "job.failed"]


def test_run_folders_past_orch_keep_runs_are_removed_oldest_first(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCH_KEEP_RUNS", "2")
    project.pipeline(
        "version: 1\nsteps:\n  a:\n    inputs: [in.txt]\n    output: a.txt\n"
        "    run: cp in.txt a.txt\n"
    )
    jobs = []
    for n in range(4):
        project.write("in.txt", f"{n}\n")
        jobs.append(ok(project.orch("build")).manifest()["job_id"])
    assert {p.name for p in project.run_folders()} == set(jobs[-2:])


def test_runs_lists_builds_that_changed_nothing_and_skips_damaged_history_lines(
    project: Project,
) -> None:
    project.pipeline("version: 1\nsteps:\n  a:\n    output: a.txt\n    run: echo a > a.txt\n")
    first = ok(project.orch("build")).manifest()["job_id"]
    again = ok(project.orch("build"))
    assert again.unchanged
    history_file = project.root / ".orch" / "runs" / "history.jsonl"
    with history_file.open("a") as file:
        file.write('{"job_id": "../x", "status": "succeeded"}\nnot json\n[1]\n')
    rows = table(ok(project.orch("runs")).stdout)
    assert [row["JOB"] for row in rows] == [again.manifest()["job_id"], first]
    assert (rows[0]["STATUS"], rows[0]["RAN"], rows[0]["UP TO DATE"]) == ("succeeded", "0", "1")
