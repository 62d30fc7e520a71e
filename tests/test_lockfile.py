"""The lock file: deterministic YAML, round trips, clear errors for corrupt or foreign files."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from orchestrator.lockfile import (
    LOCK_VERSION,
    LockEntry,
    LockError,
    _parse_rendered,
    lock_path,
    parse_lock,
    read_lock,
    render_lock,
    write_lock,
)

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
    assert text.splitlines()[1:9] == [
        "version: 2",
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
    write_lock(path, ENTRIES)
    assert read_lock(path) == ENTRIES
    data = YAML(typ="safe").load(path.read_text())
    assert data["steps"]["lint@src/a.py"]["key"] == C  # a digest that looks like a float
    assert data["steps"]["lint@src/a.py"]["outputs"] == {"true": A}


def test_missing_or_empty_lock_means_nothing_built(tmp_path: Path) -> None:
    assert read_lock(tmp_path / "none.lock") == {}
    (tmp_path / "empty.lock").write_text("")
    assert read_lock(tmp_path / "empty.lock") == {}
    write_lock(tmp_path / "zero.lock", {})
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


@settings(max_examples=200, deadline=None)
@given(_ENTRIES)
def test_the_line_reader_and_a_yaml_parser_agree_on_every_written_lock(
    entries: dict[str, LockEntry],
) -> None:
    text = render_lock(entries)
    assert parse_lock(Path("x.lock"), text) == entries
    assert _parse_rendered(text) == (entries if entries else None)
    plain = YAML(typ="safe", pure=True).load(text)
    assert {name: raw["key"] for name, raw in (plain["steps"] or {}).items()} == {
        name: entry.key for name, entry in entries.items()
    }


def test_a_hand_edited_lock_is_read_by_the_yaml_parser(tmp_path: Path) -> None:
    text = render_lock(ENTRIES).replace('  qa:\n    key: "', '  qa:\n    # reviewed\n    key: "')
    assert parse_lock(tmp_path / "x.lock", text) == ENTRIES


def test_a_version_1_lock_is_read_and_its_steps_rebuild_saying_why(tmp_path: Path) -> None:
    from orchestrator.planner import Action, Current, decide

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
