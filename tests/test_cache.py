"""The content-addressed cache: store, look up, restore atomically, and collect garbage."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from orchestrator.cli.commands import cli
from orchestrator.store.cache import Cache, CorruptObject

from .buildkit import Project


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def make(workdir: Path, files: dict[str, str]) -> dict[str, str]:
    for path, text in files.items():
        (workdir / path).parent.mkdir(parents=True, exist_ok=True)
        (workdir / path).write_text(text)
    return {path: sha(text) for path, text in files.items()}


def test_store_then_restore_brings_back_deleted_and_modified_outputs(tmp_path: Path) -> None:
    cache = Cache(tmp_path / ".orch" / "cache")
    outputs = make(tmp_path, {"out/a.txt": "alpha", "out/b.txt": "beta"})
    cache.store("k" * 64, tmp_path, outputs, {"duration_s": 1.5})
    (tmp_path / "out" / "a.txt").unlink()
    (tmp_path / "out" / "b.txt").write_text("edited")
    action = cache.find("k" * 64).result
    assert action is not None and action.meta == {"duration_s": 1.5}
    cache.check(action)
    results = cache.write(action, tmp_path)
    assert [(r.path, r.reason) for r in results] == [
        ("out/a.txt", "created"),
        ("out/b.txt", "overwritten"),
    ]
    assert (tmp_path / "out" / "a.txt").read_text() == "alpha"
    assert (tmp_path / "out" / "b.txt").read_text() == "beta"


def test_identical_content_is_stored_once(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    cache.store("1" * 64, tmp_path, make(tmp_path, {"a.txt": "same"}), {})
    cache.store("2" * 64, tmp_path, make(tmp_path, {"b.txt": "same"}), {})
    info = cache.info()
    assert (info.actions, info.objects) == (2, 1)


def test_unknown_key_or_missing_object_is_a_miss(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    assert cache.find("0" * 64).result is None
    outputs = make(tmp_path, {"a.txt": "x"})
    cache.store("3" * 64, tmp_path, outputs, {})
    digest = outputs["a.txt"]
    (tmp_path / "cache" / "objects" / digest[:2] / digest[2:]).unlink()
    assert cache.find("3" * 64).result is None


def test_a_file_changed_since_it_was_hashed_is_not_cached(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    outputs = make(tmp_path, {"a.txt": "before"})
    (tmp_path / "a.txt").write_text("after")
    cache.store("4" * 64, tmp_path, outputs, {})
    assert cache.find("4" * 64).result is None


def test_corrupt_object_restores_nothing(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    outputs = make(tmp_path, {"a.txt": "good"})
    cache.store("5" * 64, tmp_path, outputs, {})
    digest = outputs["a.txt"]
    (tmp_path / "cache" / "objects" / digest[:2] / digest[2:]).write_text("bad!")
    (tmp_path / "a.txt").unlink()
    action = cache.find("5" * 64).result
    assert action is not None
    with pytest.raises(CorruptObject):
        cache.check(action)  # before anything is written: a restore writes all or nothing
    assert not (tmp_path / "a.txt").exists()


def _age(path: Path, days: float) -> None:
    past = time.time() - days * 86400
    os.utime(path, (past, past))


def test_gc_by_age_keeps_recent_actions_and_objects_they_share(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    cache.store("6" * 64, tmp_path, make(tmp_path, {"old.txt": "old", "both.txt": "s"}), {})
    cache.store("7" * 64, tmp_path, make(tmp_path, {"new.txt": "new", "both2.txt": "s"}), {})
    _age(tmp_path / "cache" / "actions" / f"{'6' * 64}.json", days=40)
    result = cache.gc(max_age_s=30 * 86400)
    assert (result.actions_removed, result.objects_removed) == (1, 1)
    assert cache.find("6" * 64).result is None
    assert cache.find("7" * 64).result is not None


def test_gc_by_size_drops_least_recently_used_first(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    for n, key in enumerate("89a"):
        cache.store(key * 64, tmp_path, make(tmp_path, {f"f{n}.txt": "x" * 1000 + key}), {})
        _age(tmp_path / "cache" / "actions" / f"{key * 64}.json", days=3 - n)
    restored = cache.find("8" * 64).result
    assert restored is not None
    cache.write(restored, tmp_path)  # a use: now the most recent
    result = cache.gc(max_bytes=2500)
    assert result.actions_removed == 1
    assert cache.find("9" * 64).result is None
    assert cache.find("8" * 64).result is not None and cache.find("a" * 64).result is not None
    assert cache.info().bytes <= 2500
    assert cache.gc(max_bytes=0).actions_removed == 2
    assert cache.info() == cache.info().__class__(0, 0, 0)


def test_a_corrupt_action_file_is_a_miss_and_gc_removes_it(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    cache.store("b" * 64, tmp_path, make(tmp_path, {"a.txt": "kept"}), {})
    broken = tmp_path / "cache" / "actions" / f"{'c' * 64}.json"
    broken.write_text("{half a record")
    assert cache.find("c" * 64).result is None
    result = cache.gc(max_age_s=10 * 86400)
    assert result.actions_removed == 0
    assert cache.gc(max_bytes=10**9).actions_removed == 0
    assert cache.find("b" * 64).result is not None
    assert broken.exists()  # unreadable records name no object, so they never protect one
    assert cache.gc(max_bytes=0).actions_removed == 2
    assert not broken.exists()


def test_cache_commands_report_and_trim_what_builds_stored(
    write_pipeline: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = write_pipeline(
        """\
        version: 1
        steps:
          one: {run: "echo one > one.txt", output: one.txt}
          two: {run: "echo two > two.txt", output: two.txt}
        """
    )
    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(cli, ["build"]).exit_code == 0
    info = CliRunner().invoke(cli, ["cache", "info", str(pipeline)])
    assert info.exit_code == 0
    assert ": 2 step results, 2 files, " in info.output

    kept = CliRunner().invoke(cli, ["cache", "gc"])
    assert kept.output.startswith("removed 0 step results and 0 files")

    trimmed = CliRunner().invoke(cli, ["cache", "gc", "--max-size", "0"])
    assert trimmed.output.startswith("removed 2 step results and 2 files")
    assert ": 0 step results, 0 files, 0 B" in CliRunner().invoke(cli, ["cache", "info"]).output


@pytest.mark.parametrize(
    ("option", "value"), [("--max-age", "3 fortnights"), ("--max-size", "lots")]
)
def test_cache_gc_refuses_unreadable_limits(option: str, value: str) -> None:
    result = CliRunner().invoke(cli, ["cache", "gc", option, value])
    assert result.exit_code == 2
    assert f"{option} expects" in result.output


# --------------------------------------------------------------------------- records are checked

TAMPER_PIPELINE = """\
version: 1
steps:
  a:
    inputs: [src.txt]
    run: "mkdir -p out; tr a-z A-Z < src.txt > out/a.txt; echo a >> runs.log"
    outputs: [out/]
"""
EVIL = "evil bytes\n"


def _record(project: Project) -> tuple[Path, dict[str, Any]]:
    """The action file of step `a`'s current key, and what it holds."""
    key = project.lock()["a"].key
    path = project.root / ".orch" / "cache" / "actions" / f"{key}.json"
    return path, json.loads(path.read_text())


def _object(project: Project, digest: str) -> Path:
    return project.root / ".orch" / "cache" / "objects" / digest[:2] / digest[2:]


def _name_source(project: Project, record: dict[str, Any], path: str) -> None:
    """Make the record also name `path`, with the evil bytes stored as a sound object."""
    evil = _object(project, sha(EVIL))
    evil.parent.mkdir(parents=True, exist_ok=True)
    evil.write_text(EVIL)
    record["outputs"][path] = sha(EVIL)


TAMPERINGS: dict[str, tuple[Callable[[Project, dict[str, Any]], None], str]] = {
    "source file": (
        lambda project, record: _name_source(project, record, "src.txt"),
        "names 'src.txt', not an output of the step",
    ),
    "escape through the folder": (
        lambda project, record: _name_source(project, record, "out/../src.txt"),
        "names 'out/../src.txt', not an output of the step",
    ),
    "the folder itself": (
        lambda project, record: _name_source(project, record, "out/"),
        "names 'out/', not an output of the step",
    ),
    "bad digest": (
        lambda project, record: record["outputs"].update({"out/a.txt": "ABC"}),
        "digest of 'out/a.txt' is not a sha256",
    ),
    "wrong key": (
        lambda project, record: record.update(key="f" * 64),
        "the action record is for another key",
    ),
    "not json": (
        lambda project, record: record.clear(),
        "the action record has an unknown format",
    ),
}


@pytest.mark.parametrize("tampering", TAMPERINGS, ids=str)
def test_a_tampered_action_record_is_a_miss_and_the_step_runs(
    project: Project, tampering: str
) -> None:
    project.pipeline(TAMPER_PIPELINE)
    project.write("src.txt", "source\n")
    assert project.orch("build").exit_code == 0
    path, record = _record(project)
    change, reason = TAMPERINGS[tampering]
    change(project, record)
    path.write_text(json.dumps(record))
    (project.root / "out" / "a.txt").unlink()  # the key is unchanged: a restore is due

    build = project.orch("build")
    assert build.exit_code == 0, build.stdout + build.stderr
    assert build.statuses() == {"a": "ran"}
    assert project.read("src.txt") == "source\n"
    assert project.read("out/a.txt") == "SOURCE\n"
    assert project.new_runs() == ["a", "a"]
    (miss,) = build.events("cache.miss", "a")
    assert miss["level"] == "warning"
    assert reason in miss["data"]["reason"]
    assert build.events("cache.hit") == []
    assert any(f"cache entry not used: {miss['data']['reason']}" in line for line in build.lines)


def test_a_flipped_byte_in_an_object_is_a_miss_and_the_step_runs(project: Project) -> None:
    project.pipeline(TAMPER_PIPELINE)
    project.write("src.txt", "source\n")
    assert project.orch("build").exit_code == 0
    digest = project.lock()["a"].outputs["out/a.txt"]
    damaged = _object(project, digest)
    data = bytearray(damaged.read_bytes())
    data[0] ^= 0x01
    damaged.write_bytes(bytes(data))
    (project.root / "out" / "a.txt").unlink()  # a restore is due
    project.write("out/b.txt", "mine\n")

    build = project.orch("build")
    assert build.exit_code == 0, build.stdout + build.stderr
    assert build.statuses() == {"a": "ran"}
    (miss,) = build.events("cache.miss", "a")
    assert "does not match its digest" in miss["data"]["reason"]
    assert [e["data"]["path"] for e in build.events("file.kept")] == ["out/b.txt"]
    assert not project.exists("out/b.txt")
    assert project.read("out/a.txt") == "SOURCE\n"
    assert project.read("src.txt") == "source\n"
    assert damaged.read_text() == "SOURCE\n"  # stored afresh by the run

    (project.root / "out" / "a.txt").unlink()
    assert project.orch("build").statuses() == {"a": "restored"}


def test_find_says_why_a_record_is_refused(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    outputs = make(tmp_path, {"out/a.txt": "a"})
    cache.store("d" * 64, tmp_path, outputs, {})
    assert cache.find("d" * 64, lambda path: path.startswith("out/")).result is not None
    refused = cache.find("d" * 64, lambda path: False)
    assert refused.result is None
    assert refused.reason == "the action record names 'out/a.txt', not an output of the step"
    assert cache.find("e" * 64) == cache.find("e" * 64).__class__(None, None)
    digest = outputs["out/a.txt"]
    (tmp_path / "cache" / "objects" / digest[:2] / digest[2:]).unlink()
    assert cache.find("d" * 64).reason == "the object of 'out/a.txt' is missing"
