"""Content hashes, the stat cache and step keys."""

from __future__ import annotations

import hashlib
import os
import random
import sys
import time
from pathlib import Path

import pytest

from orchestrator.plan.compiled import key_definition
from orchestrator.plan.loading import load
from orchestrator.store.digest import canonical_json
from orchestrator.store.hashing import (
    STAT_CACHE_FORMAT,
    Hasher,
    StatCache,
    _read_stat_cache,
    definition_hash,
    step_key,
)
from orchestrator.store.integrity import seal

from .corruption import damaged

EMPTY_SHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_canonical_json_sorts_keys_and_drops_whitespace() -> None:
    assert canonical_json({"b": [1, "é"], "a": None}) == '{"a":null,"b":[1,"é"]}'.encode()


def test_a_known_key_has_a_pinned_digest() -> None:
    definition = {
        "run": "echo {{ greeting }} > out.txt",
        "env": {},
        "cwd": None,
        "context": {"greeting": "hi"},
        "outputs": ["out.txt"],
    }
    digest = definition_hash("shell", definition)
    described = (
        '{"definition":{"context":{"greeting":"hi"},"cwd":null,"env":{},"outputs":["out.txt"],'
        '"run":"echo {{ greeting }} > out.txt"},"format":2,"kind":"shell"}'
    )
    assert digest == hashlib.sha256(described.encode()).hexdigest()
    key = step_key("shell", digest, {"in.txt": EMPTY_SHA})
    material = (
        f'{{"definition":"{digest}","format":2,"inputs":[["in.txt","{EMPTY_SHA}"]],"kind":"shell"}}'
    )
    assert key == hashlib.sha256(material.encode()).hexdigest()
    assert key == "fbf4a5420e75b97c244411f388cd28d8c85b81bc41c66dd2efc37c1313aa6447"


def test_key_changes_with_definition_or_input_content_and_not_with_order() -> None:
    x, y = definition_hash("shell", {"run": "x"}), definition_hash("shell", {"run": "y"})
    assert x != y
    base = step_key("shell", x, {"a": "1" * 64, "b": "2" * 64})
    assert base == step_key("shell", x, {"b": "2" * 64, "a": "1" * 64})
    assert base != step_key("shell", y, {"a": "1" * 64, "b": "2" * 64})
    assert base != step_key("shell", x, {"a": "1" * 64, "b": "3" * 64})


def test_folders_and_globs_expand_to_sorted_files(tmp_path: Path) -> None:
    for name in ["src/b.py", "src/a.py", "src/sub/c.py", "src/notes.md"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    hasher = Hasher(tmp_path)
    assert list(hasher.hashes(["src/"])) == ["src/a.py", "src/b.py", "src/notes.md", "src/sub/c.py"]
    assert list(hasher.hashes(["src/**/*.py"])) == ["src/a.py", "src/b.py", "src/sub/c.py"]
    assert hasher.hashes(["missing.txt"]) == {"missing.txt": None}
    assert list(hasher.hashes(["src/"], exclude=lambda p: p.endswith(".md"))) == [
        "src/a.py",
        "src/b.py",
        "src/sub/c.py",
    ]


def _age(path: Path, seconds: float = 60) -> None:
    past = time.time_ns() - int(seconds * 1e9)
    os.utime(path, ns=(past, past))


_OPENED: list[str] = []
_HOOKED: list[bool] = []


def _record_opens() -> list[str]:
    """The paths Python opens from now on (an audit hook: real file opens, nothing faked)."""
    if not _HOOKED:
        sys.addaudithook(
            lambda event, args: _OPENED.append(str(args[0])) if event == "open" else None
        )
        _HOOKED.append(True)
    _OPENED.clear()
    return _OPENED


def test_stat_cache_skips_rereading_unchanged_files_across_runs(tmp_path: Path) -> None:
    data, cache_file = tmp_path / "data.txt", tmp_path / ".orch" / "stat-cache.json"
    data.write_text("hello")
    _age(data)
    first = StatCache(cache_file)
    digest = first.sha256(data)
    first.save()
    opened = _record_opens()
    assert StatCache(cache_file).sha256(data) == digest
    assert str(data) not in opened
    data.write_text("hello")  # same content rewritten: stamps change, so it is read again
    assert StatCache(cache_file).sha256(data) == digest
    assert str(data) in opened
    opened.clear()


def test_stat_cache_notices_same_size_same_mtime_rewrites(tmp_path: Path) -> None:
    data, cache_file = tmp_path / "data.txt", tmp_path / "cache.json"
    data.write_text("aaaa")
    _age(data)
    stamp = data.stat().st_mtime_ns
    cache = StatCache(cache_file)
    before = cache.sha256(data)
    cache.save()
    data.write_text("bbbb")
    os.utime(data, ns=(stamp, stamp))  # same size, same mtime: only ctime (or inode) differs
    assert StatCache(cache_file).sha256(data) != before


def test_stat_cache_does_not_remember_files_changed_just_now(tmp_path: Path) -> None:
    data = tmp_path / "fresh.txt"
    data.write_text("new")
    cache = StatCache(tmp_path / "cache.json")
    cache.sha256(data)
    cache.save()
    assert not (tmp_path / "cache.json").exists()


def test_a_corrupt_stat_cache_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "cache.json").write_text("{not json")
    data = tmp_path / "d.txt"
    data.write_text("")
    assert StatCache(tmp_path / "cache.json").sha256(data) == EMPTY_SHA


def test_llm_keys_hold_provider_kind_model_and_options_but_not_its_name_or_settings(
    tmp_path: Path,
) -> None:
    def definition(provider: str) -> dict[str, object]:
        (tmp_path / "orch.yaml").write_text(
            "version: 1\nproviders:\n" + provider + "steps:\n  ask: { prompt: hi, output: a.md,"
            " options: { top_p: 1 } }\n"
        )
        pipeline = load(tmp_path / "orch.yaml", environ={})
        return key_definition(pipeline.steps["ask"])

    plain = definition("  p: { kind: openai, model: m, options: { temperature: 0 } }\n")
    assert plain["provider"] == {
        "kind": "openai",
        "model": "m",
        "options": {"temperature": 0, "top_p": 1},
    }
    renamed_and_tuned = definition(
        "  other: { kind: openai, model: m, options: { temperature: 0 }, timeout_s: 5,"
        " max_retries: 9, base_url: 'http://127.0.0.1:1' }\n"
    )
    assert renamed_and_tuned == plain
    assert definition("  p: { kind: openai, model: m2, options: { temperature: 0 } }\n") != plain


@pytest.mark.parametrize(
    ("age_ns", "whole_second", "remembered"),
    [
        (500_000_000, False, True),
        (1_000_000_000, True, False),
        (3_000_000_000, True, True),
    ],
)
def test_files_on_whole_second_filesystems_wait_longer_to_be_remembered(
    tmp_path: Path, age_ns: int, whole_second: bool, remembered: bool
) -> None:
    data = tmp_path / "d.txt"
    data.write_text("x")
    mtime = time.time_ns() - age_ns
    mtime = mtime - mtime % 1_000_000_000 if whole_second else mtime | 1
    os.utime(data, ns=(mtime, mtime))
    cache = StatCache(tmp_path / "cache.json")
    cache.sha256(data)
    cache.save()
    assert (tmp_path / "cache.json").exists() == remembered


def _remembered(tmp_path: Path, count: int = 3) -> tuple[Path, dict[Path, str]]:
    """A saved stat cache remembering `count` files, and their true digests."""
    digests = {}
    cache = StatCache(tmp_path / "cache.json")
    for number in range(count):
        data = tmp_path / f"d{number}.txt"
        data.write_text(f"data {number}\n")
        _age(data)
        digests[data] = cache.sha256(data) or ""
    cache.save()
    return tmp_path / "cache.json", digests


def test_a_stat_cache_with_a_changed_digest_is_not_used(tmp_path: Path) -> None:
    file, digests = _remembered(tmp_path)
    data = file.read_bytes()
    (path, digest), *_ = digests.items()
    file.write_bytes(data.replace(digest.encode(), EMPTY_SHA.encode()))
    assert StatCache(file).sha256(path) == digest


def test_malformed_stat_cache_entries_are_dropped_one_by_one(tmp_path: Path) -> None:
    good = [1, 2, 3, 4, EMPTY_SHA]
    rows = {
        "good": good,
        "short digest": [1, 2, 3, 4, EMPTY_SHA[1:]],
        "upper case": [1, 2, 3, 4, EMPTY_SHA.upper()],
        "a bool": [True, 2, 3, 4, EMPTY_SHA],
        "a text stamp": [1, "2", 3, 4, EMPTY_SHA],
        "too short": [1, 2, 3, EMPTY_SHA],
        "not a list": {"digest": EMPTY_SHA},
    }
    record = canonical_json({"format": STAT_CACHE_FORMAT, "files": rows})
    (tmp_path / "cache.json").write_bytes(seal(record))
    assert _read_stat_cache(tmp_path / "cache.json") == {"good": ((1, 2, 3, 4), EMPTY_SHA)}
    (tmp_path / "cache.json").write_bytes(record)  # not sealed: a foreign file
    assert _read_stat_cache(tmp_path / "cache.json") == {}


def test_a_stat_cache_cut_or_flipped_anywhere_gives_true_digests(tmp_path: Path) -> None:
    file, digests = _remembered(tmp_path)
    data = file.read_bytes()
    rng = random.Random(5)
    for _ in range(200):
        file.write_bytes(damaged(data, rng))
        cache = StatCache(file)
        assert {path: cache.sha256(path) for path in digests} == digests
