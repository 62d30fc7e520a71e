"""The lock file: deterministic YAML, round trips, clear errors for corrupt or foreign files."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from orchestrator.store.lockfile import (
    HEADER,
    LOCK_VERSION,
    LockEntry,
    LockError,
    _parse_rendered,
    lock_path,
    parse_lock,
    read_lock,
    render_lock,
    write_text,
)

from .buildkit import Project
from .corruption import LOCK, outputs, set_up

A, B, C = "a" * 64, "1" * 64, "0123456789" * 6 + "1e10"

ENTRIES = {
    "qa": LockEntry(key=A, definition=B, inputs={"gen/app/": C}, outputs={"build/qa.txt": A}),
    "architect": LockEntry(key=B, definition=A, inputs={"specs/x.md": A, "1.txt": B}),
    "lint@src/a.py": LockEntry(key=C, definition=C, outputs={"true": A}),
}


def test_lock_sits_beside_the_pipeline() -> None:
    assert lock_path(Path("pipelines/notes_app.yaml")) == Path("pipelines/notes_app.lock")


def test_rendering_is_sorted_quoted_and_independent_of_insertion_order() -> None:
    text = render_lock(ENTRIES)
    assert text == render_lock(dict(reversed(list(ENTRIES.items()))))
    assert text.splitlines()[1:10] == [
        "version: 2",
        "checks: crc32",
        "steps:",
        "  architect:",
        f'    key: "{B}"',
        f'    definition: "{A}"',
        "    inputs:",
        f'      "1.txt": "{B}"',
        f'      specs/x.md: "{A}"',
    ]
    assert '      "true": ' in text


def test_round_trip_through_a_file_and_any_yaml_parser(tmp_path: Path) -> None:
    path = tmp_path / "p.lock"
    write_text(path, render_lock(ENTRIES))
    assert read_lock(path) == ENTRIES
    data = YAML(typ="safe").load(path.read_text())
    assert data["steps"]["lint@src/a.py"]["key"] == C  # a digest that looks like a float
    assert data["steps"]["lint@src/a.py"]["outputs"] == {"true": A}


def test_missing_or_empty_lock_means_nothing_built(tmp_path: Path) -> None:
    assert read_lock(tmp_path / "none.lock") == {}
    (tmp_path / "empty.lock").write_text("")
    assert read_lock(tmp_path / "empty.lock") == {}
    write_text(tmp_path / "zero.lock", render_lock({}))
    assert read_lock(tmp_path / "zero.lock") == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("steps: [\n", "corrupt lock file (it is not valid YAML)"),
        ("- a\n", "corrupt lock file (it has no 'version')"),
        ("version: 7\nsteps: {}\n", "lock file version 7 is not supported"),
        ("version: 1\nsteps: [a]\n", "'steps' is not a mapping"),
        ("version: 1\nsteps:\n  a: { key: nope, definition: nope }\n", "step 'a' is malformed"),
        ("version: 1\nsteps:\n  a: { definition: " + "a" * 64 + " }\n", "step 'a' is malformed"),
    ],
)
def test_unusable_lock_files_give_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.lock"
    path.write_text(text)
    with pytest.raises(LockError, match=r"p\.lock: ") as caught:
        read_lock(path)
    assert message in str(caught.value)
    assert caught.value.exit_code == 2


def test_a_lock_path_that_cannot_be_read_gives_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "p.lock").mkdir()
    with pytest.raises(LockError, match=r"p\.lock: cannot read the lock file"):
        read_lock(tmp_path / "p.lock")


_PATHS = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1
).filter(lambda text: text.strip() == text)
_DIGESTS = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
_ENTRIES = st.dictionaries(
    _PATHS,
    st.builds(
        LockEntry,
        key=_DIGESTS,
        definition=_DIGESTS,
        inputs=st.dictionaries(_PATHS, _DIGESTS, max_size=3),
        outputs=st.dictionaries(_PATHS, _DIGESTS, max_size=3),
        version=st.just(LOCK_VERSION),
    ),
    max_size=4,
)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(_ENTRIES)
def test_the_line_reader_and_a_yaml_parser_agree_on_every_written_lock(
    entries: dict[str, LockEntry],
) -> None:
    text = render_lock(entries)
    assert parse_lock(Path("x.lock"), text) == entries
    assert _parse_rendered(text) == entries
    plain = YAML(typ="safe", pure=True).load(text)
    assert {name: raw["key"] for name, raw in (plain["steps"] or {}).items()} == {
        name: entry.key for name, entry in entries.items()
    }


def test_a_hand_edited_lock_is_read_by_the_yaml_parser(tmp_path: Path) -> None:
    text = render_lock(ENTRIES).replace('  qa:\n    key: "', '  qa:\n    # reviewed\n    key: "')
    assert parse_lock(tmp_path / "x.lock", text) == ENTRIES


def test_a_version_1_lock_is_read_and_its_steps_rebuild_saying_why(tmp_path: Path) -> None:
    from orchestrator.engine.decide import Action, Current, decide

    old = tmp_path / "p.lock"
    old.write_text(
        f'version: 1\nsteps:\n  a:\n    key: "{A}"\n    definition: "{B}"\n'
        f'    inputs: {{}}\n    outputs:\n      out.txt: "{C}"\n'
    )
    entry = read_lock(old)["a"]
    assert entry.version == 1
    decision = decide(entry, Current(A, B, {}, {"out.txt": C}))
    assert decision.action == Action.RUN
    assert decision.reasons == (
        "recorded by an older orch (lock version 1, keys of another format)",
    )


# --------------------------------------------------------------------------- damage


def _legacy(text: str) -> str:
    """A lock as orch wrote it before checks: no `checks:`, `check:` or `# end` lines."""
    lines = text.splitlines(keepends=True)
    return "".join(
        line
        for line in lines
        if not line.startswith(("checks: ", "    check: ")) and line != "# end\n"
    )


@pytest.mark.slow
def test_a_lock_cut_anywhere_is_refused_and_an_empty_one_has_no_entries(tmp_path: Path) -> None:
    text = render_lock(ENTRIES)
    assert text.endswith('"\n# end\n')
    assert parse_lock(tmp_path / "p.lock", text[:0]) == {}
    for end in range(1, len(text)):
        with pytest.raises(LockError, match=r"p\.lock: .*--force"):
            parse_lock(tmp_path / "p.lock", text[:end])
    assert parse_lock(tmp_path / "p.lock", text) == ENTRIES


@pytest.mark.slow
def test_a_flipped_bit_anywhere_is_refused_or_changes_nothing(tmp_path: Path) -> None:
    data = render_lock(ENTRIES).encode()
    rng = random.Random(2)
    path = tmp_path / "p.lock"
    harmless = []
    for at in range(len(data)):
        path.write_bytes(data[:at] + bytes([data[at] ^ 1 << rng.randrange(8)]) + data[at + 1 :])
        try:
            entries = read_lock(path)
        except LockError as exc:
            assert exc.exit_code == 2
            continue
        assert entries == ENTRIES
        harmless.append(at)
    assert all(at < len(HEADER) for at in harmless), "only flips in the header comment"


@pytest.mark.parametrize("checked", [True, False], ids=["with checks", "before checks"])
def test_an_entry_cut_before_its_outputs_is_refused(tmp_path: Path, checked: bool) -> None:
    text = render_lock(ENTRIES) if checked else _legacy(render_lock(ENTRIES))
    cut = text[: text.index("    outputs:", text.index("  qa:"))]
    for damaged in (cut, cut + "    outputs:\n"):
        with pytest.raises(LockError, match=r"step 'qa' is malformed or incomplete|cut short"):
            parse_lock(tmp_path / "p.lock", damaged)


def test_a_lock_written_before_checks_is_still_read(tmp_path: Path) -> None:
    legacy = _legacy(render_lock(ENTRIES))
    assert "check" not in legacy and "# end" not in legacy
    assert _parse_rendered(legacy) == ENTRIES
    commented = legacy.replace("  qa:\n", "  qa:  # reviewed\n")
    assert parse_lock(tmp_path / "p.lock", commented) == ENTRIES
    with pytest.raises(LockError, match="its last line has no newline: it was cut short"):
        parse_lock(tmp_path / "p.lock", commented.rstrip("\n"))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda text: text.replace("    inputs: {}\n", "    inputs:\n"), "malformed or incomplete"),
        (lambda text: text.replace("steps:\n", "stepz:\n"), "unknown key 'stepz'"),
        (lambda text: text.replace("checks: crc32", "checks: md5"), "unknown checks 'md5'"),
        (lambda text: text.replace("# end\n", ""), "does not end with the line '# end'"),
        (lambda text: text.replace(f'key: "{C}"', f'key: "{A}"'), "step 'lint@src/a.py' fails"),
    ],
)
def test_edits_that_lose_or_change_data_are_named(tmp_path: Path, edit: Any, message: str) -> None:
    with pytest.raises(LockError, match=re.escape(message)):
        parse_lock(tmp_path / "p.lock", edit(render_lock(ENTRIES)))


def test_a_declared_output_an_entry_does_not_record_is_missing() -> None:
    from orchestrator.engine.decide import Action, Current, decide

    entry = LockEntry(key=A, definition=B, inputs={}, outputs={})
    decision = decide(entry, Current(A, B, {}, {"out.txt": None}))
    assert decision == (Action.RUN, ("output missing: out.txt",))


def test_a_cut_lock_stops_build_and_check_until_a_forced_rebuild(project: Project) -> None:
    clean = set_up(project)
    lock = project.root / LOCK
    text = clean.lock.decode()
    lock.write_text(text[: text.rindex("    outputs:")])
    (project.root / "out" / "true.txt").unlink()
    for command in (["build"], ["status", "--check"]):
        result = project.orch(*command)
        assert result.exit_code == 2, result.stdout
        assert "orch.lock: corrupt lock file" in result.stderr + result.stdout
        assert "rebuild with --force" in result.stderr + result.stdout
    assert project.orch("build", "--force").exit_code == 0
    assert outputs(project) == clean.outputs
    assert lock.read_bytes() == clean.lock
