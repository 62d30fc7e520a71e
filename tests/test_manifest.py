"""The manifest as a fold over a run's events: a build's manifest and the one `orch show`
replays from its events agree (conftest checks it for every run of the suite)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestrator.record import history
from orchestrator.record.manifest import Manifest, replay
from orchestrator.record.status import JobStatus, Status

from .buildkit import Build, Project, sha256

PIPELINE = """\
version: 1
steps:
  a:
    inputs: [src.txt]
    run: "tr a-z A-Z < src.txt > a.txt"
    output: a.txt
  b:
    needs: [a]
    inputs: [a.txt]
    template: "b: {{ read('a.txt') }}"
    output: b.txt
"""


def replayed(build: Build) -> dict[str, Any]:
    """The manifest that replaying a finished build's events gives."""
    assert build.run is not None
    return replay(Manifest(build.run.name), history.read_events(_run(build.run))).to_json()


def _run(folder: Path) -> history.Run:
    return history.Run(folder.name, folder)


def built(project: Project) -> Build:
    project.pipeline(PIPELINE)
    project.write("src.txt", "hello\n")
    build = project.orch("build")
    assert build.exit_code == 0, build.stdout + build.stderr
    return build


def test_a_replayed_manifest_has_the_files_a_shell_step_wrote(project: Project) -> None:
    build = built(project)
    files = replayed(build)["files"]
    assert files == {"a.txt": sha256("HELLO\n"), "b.txt": sha256("b: HELLO\n")}
    assert files == build.manifest()["files"]


def test_restored_steps_keep_their_reasons_when_replayed(project: Project) -> None:
    built(project)
    project.write("src.txt", "changed\n")
    assert project.orch("build").exit_code == 0
    project.write("src.txt", "hello\n")
    restored = project.orch("build")
    assert [e["step"] for e in restored.events("step.restored")] == ["a", "b"]
    steps = replayed(restored)["steps"]
    assert steps["a"]["status"] == Status.RESTORED
    assert steps["a"]["reasons"] == ["input modified: src.txt"]
    assert steps["b"]["reasons"] == ["input modified: a.txt"]
    assert steps == restored.manifest()["steps"]
    assert replayed(restored)["files"]["a.txt"] == sha256("HELLO\n")


def test_an_up_to_date_build_leaves_one_history_line_and_no_run_folder(project: Project) -> None:
    built(project)
    again = project.orch("build")
    assert again.unchanged
    assert again.manifest()["counts"] == {Status.UP_TO_DATE: 2}
    assert set(again.manifest()) == {
        "job_id",
        "pipeline",
        "status",
        "started",
        "finished",
        "duration_s",
        "counts",
    }


def events(*lines: tuple[str, str | None, dict[str, Any]]) -> list[dict[str, Any]]:
    """Events of a run `job`, one a millisecond from midnight."""
    return [
        {"ts": f"2026-01-01T00:00:00.{i:03d}Z", "level": "info", "job_id": "job", "type": t}
        | {"step": step, "data": data}
        for i, (t, step, data) in enumerate(lines)
    ]


STARTED = (
    "job.started",
    None,
    {"pipeline": "p.yaml", "name": "p", "steps": 3, "workdir": "/w", "targets": ["c"]}
    | {"selected": ["a", "b", "c"]},
)


def test_a_killed_runs_replay_shows_the_running_step_and_the_ones_never_started() -> None:
    killed = events(
        STARTED,
        ("step.started", "a", {"reasons": ["never built"]}),
        ("step.succeeded", "a", {"duration_s": 0.5, "outputs": {"a.txt": "0" * 64}}),
        ("step.started", "b", {"reasons": ["never built"]}),
    )
    manifest = replay(Manifest("job"), killed).to_json()
    assert manifest["status"] == JobStatus.RUNNING
    assert (manifest["started"], manifest["finished"]) == ("2026-01-01T00:00:00.000Z", None)
    assert (manifest["workdir"], manifest["targets"]) == ("/w", ["c"])
    assert {s: r["status"] for s, r in manifest["steps"].items()} == {
        "a": Status.RAN,
        "b": Status.RUNNING,
        "c": Status.PENDING,
    }
    assert manifest["steps"]["b"]["reasons"] == ["never built"]
    assert (manifest["completed_steps"], manifest["pending_steps"]) == (["a"], ["b", "c"])
    assert manifest["files"] == {"a.txt": "0" * 64}


def test_show_on_a_killed_run_replays_its_events_over_the_opening_manifest(tmp_path: Path) -> None:
    opening = replay(Manifest("job"), events(STARTED)).to_json()
    (tmp_path / "manifest.json").write_text(json.dumps(opening))
    failed = {"kind": "exit", "message": "exit 1", "duration_s": 0.25}
    lines = events(
        STARTED,
        ("step.started", "a", {"reasons": ["forced (--force)"]}),
        ("step.failed", "a", failed),
        ("step.skipped", "b", {"reason": "blocked", "upstream": "a"}),
    )
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    manifest = history.read_manifest(history.Run("job", tmp_path))
    assert manifest["status"] == JobStatus.RUNNING
    assert manifest["steps"]["a"] | {"meta": None} == {
        "status": Status.FAILED,
        "reasons": ["forced (--force)"],
        "duration_s": 0.25,
        "failure": {"kind": "exit", "message": "exit 1"},
        "meta": None,
    }
    assert manifest["steps"]["b"]["reasons"] == ["upstream step 'a' failed"]
    assert manifest["counts"] == {Status.BLOCKED: 1, Status.FAILED: 1, Status.PENDING: 1}


def test_a_failed_llm_call_keeps_what_it_used_and_a_cancelled_step_its_duration() -> None:
    used = {"provider": "p", "model": "m", "calls": 3}
    lines = events(
        STARTED,
        ("step.failed", "a", {"kind": "server", "message": "HTTP 500", "meta": used}),
        ("step.failed", "b", {"kind": "cancelled", "message": "cancelled", "duration_s": 2.0}),
        ("job.cancelled", None, {"duration_s": 3.0, "counts": {}, "pending_steps": []}),
    )
    manifest = replay(Manifest("job"), lines).to_json()
    assert manifest["steps"]["a"]["meta"] == used
    assert manifest["usage"]["calls"] == 3
    assert manifest["steps"]["b"] | {"reasons": None} == {
        "status": Status.CANCELLED,
        "reasons": None,
        "duration_s": 2.0,
        "failure": None,
        "meta": {},
    }
    assert (manifest["status"], manifest["duration_s"]) == (JobStatus.CANCELLED, 3.0)
    assert manifest["finished"] == "2026-01-01T00:00:00.003Z"
