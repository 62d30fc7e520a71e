"""safe_write and the confined removals: atomic, never reaching outside the workdir, and leaving
unchanged files alone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.store.filestore import (
    WriteRefused,
    confined_rmdir,
    confined_tree,
    confined_unlink,
    safe_write,
)

from .buildkit import snapshot
from .interleave import before, named, swap_for_link


def test_creates_then_overwrites_then_leaves_unchanged_content_alone(tmp_path: Path) -> None:
    first = safe_write(tmp_path, "out/a.txt", "one")
    assert (first.reason, first.wrote, first.size_bytes) == ("created", True, 3)
    assert first.sha256 == "7692c3ad3540bb803c020b3aee66cd8887123234ea0c6e7143c0add73ff431ed"
    second = safe_write(tmp_path, "out/a.txt", "two")
    assert (second.reason, second.wrote) == ("overwritten", True)
    target = tmp_path / "out" / "a.txt"
    os.utime(target, ns=(1_000_000_000, 1_000_000_000))
    third = safe_write(tmp_path, "out/a.txt", b"two")
    assert (third.reason, third.wrote) == ("nochange", False)
    assert target.stat().st_mtime_ns == 1_000_000_000
    assert target.read_text() == "two"


def test_leaves_no_temporary_files_and_keeps_permissions(tmp_path: Path) -> None:
    safe_write(tmp_path, "run.sh", "#!/bin/sh\n")
    script = tmp_path / "run.sh"
    script.chmod(0o755)
    safe_write(tmp_path, "run.sh", "#!/bin/sh\necho hi\n")
    assert script.stat().st_mode & 0o777 == 0o755
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.sh"]


@pytest.mark.parametrize("path", ["/etc/passwd", "../outside.txt", "a/../../outside.txt"])
def test_refuses_paths_outside_the_workdir(tmp_path: Path, path: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(WriteRefused):
        safe_write(work, path, "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]


def test_refuses_writing_through_a_symlinked_folder_that_leads_outside(tmp_path: Path) -> None:
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    (work / "out").symlink_to(outside)
    with pytest.raises(WriteRefused, match="outside the workdir"):
        safe_write(work, "out/a.txt", "x")
    with pytest.raises(WriteRefused, match="outside the workdir"):
        safe_write(work, "out/new/deeper.txt", "x")
    assert list(outside.iterdir()) == []


def test_refuses_replacing_a_folder(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(WriteRefused, match="is a folder"):
        safe_write(tmp_path, "dir", "x")


# --------------------------------------------------------------------------- confinement


def outside_with(tmp_path: Path, *names: str) -> Path:
    """A folder next to the workdir holding a file for each name (its bytes: the name)."""
    outside = tmp_path / "outside"
    for name in names:
        (outside / name).parent.mkdir(parents=True, exist_ok=True)
        (outside / name).write_text(name)
    outside.mkdir(exist_ok=True)
    return outside


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "work").mkdir()
    return tmp_path / "work"


@pytest.mark.parametrize("absolute", [True, False], ids=["absolute-link", "relative-link"])
def test_confined_unlink_refuses_a_folder_that_is_a_symlink_to_outside(
    work: Path, tmp_path: Path, absolute: bool
) -> None:
    outside = outside_with(tmp_path, "a.txt", "sub/b.txt")
    was = snapshot(outside)
    (work / "out").symlink_to(outside if absolute else Path("../outside"))
    for path in ["out/a.txt", "out/sub/b.txt"]:
        with pytest.raises(WriteRefused, match=f"'{path}' leads outside the workdir"):
            confined_unlink(work, path)
    (work / "deep").mkdir()
    (work / "deep" / "up").symlink_to("../../outside")
    with pytest.raises(WriteRefused, match="through the symlink 'deep/up'"):
        confined_unlink(work, "deep/up/a.txt")
    assert snapshot(outside) == was


def test_confined_unlink_follows_symlinks_that_stay_inside_and_removes_links_not_targets(
    work: Path, tmp_path: Path
) -> None:
    outside = outside_with(tmp_path, "a.txt")
    was = snapshot(outside)
    (work / "real" / "sub").mkdir(parents=True)
    (work / "real" / "sub" / "f.txt").write_text("f")
    (work / "alias").symlink_to("real")
    (work / "abs").symlink_to(work / "real" / "sub")
    assert confined_unlink(work, "alias/sub/f.txt")
    assert not (work / "real" / "sub" / "f.txt").exists()
    assert not confined_unlink(work, "abs/f.txt")  # already gone
    assert not confined_unlink(work, "missing/f.txt")
    (work / "link.txt").symlink_to(outside / "a.txt")
    assert confined_unlink(work, "link.txt")
    assert snapshot(outside) == was


def test_confined_unlink_refuses_paths_that_are_not_the_workdirs(work: Path) -> None:
    for path in ["../x", "/etc/passwd"]:
        with pytest.raises(WriteRefused):
            confined_unlink(work, path)


def test_a_folder_swapped_for_a_symlink_as_the_removal_happens_is_never_followed(
    work: Path, tmp_path: Path
) -> None:
    outside = outside_with(tmp_path, "x.txt", "y.txt")
    was = snapshot(outside)
    (work / "out").mkdir()
    for name in ("x.txt", "y.txt"):
        (work / "out" / name).write_text("mine")
    swap = swap_for_link(work / "out", outside, work / "moved")
    with before("os.remove", named("x.txt"), swap):
        assert confined_unlink(work, "out/x.txt")  # the folder it opened: now work/moved
        with pytest.raises(WriteRefused, match=r"'out/y\.txt' leads outside"):
            confined_unlink(work, "out/y.txt")
    assert sorted(p.name for p in (work / "moved").iterdir()) == ["y.txt"]
    assert snapshot(outside) == was


def test_confined_rmdir_and_tree_never_go_through_a_symlink_to_outside(
    work: Path, tmp_path: Path
) -> None:
    outside = outside_with(tmp_path, "keep/a.txt")
    (outside / "empty").mkdir()
    was = snapshot(outside)
    (work / "out" / "sub").mkdir(parents=True)
    (work / "out" / "f.txt").write_text("f")
    (work / "out" / "link").symlink_to(outside)
    (work / "away").symlink_to(outside)
    assert confined_tree(work, "out/") == (["out/", "out/sub/"], ["out/f.txt", "out/link"])
    assert confined_tree(work, "none/") == ([], [])
    with pytest.raises(WriteRefused, match="'away' leads outside"):
        confined_tree(work, "away/")
    assert not confined_rmdir(work, "out/link/")  # a symlink is not a folder to remove
    with pytest.raises(WriteRefused):
        confined_rmdir(work, "out/link/empty/")
    with pytest.raises(WriteRefused):
        confined_rmdir(work, "away/empty/")
    assert confined_rmdir(work, "out/sub/")
    assert not confined_rmdir(work, "out/")  # not empty
    assert snapshot(outside) == was


def test_a_write_whose_folder_is_swapped_for_a_symlink_meanwhile_lands_in_that_folder(
    work: Path, tmp_path: Path
) -> None:
    outside = outside_with(tmp_path, "a.txt")
    was = snapshot(outside)
    (work / "out").mkdir()
    swap = swap_for_link(work / "out", outside, work / "moved")
    with before("open", lambda args: str(args[0]).startswith(".a.txt."), swap):
        safe_write(work, "out/a.txt", "new bytes")
    assert snapshot(outside) == was
    assert (work / "moved" / "a.txt").read_text() == "new bytes"  # the folder it opened


def test_writes_make_missing_folders_and_go_through_symlinks_that_stay_inside(
    work: Path,
) -> None:
    (work / "real").mkdir()
    (work / "alias").symlink_to("real")
    assert safe_write(work, "alias/new/deeper/a.txt", "a").reason == "created"
    assert (work / "real" / "new" / "deeper" / "a.txt").read_text() == "a"
    (work / "file").write_text("not a folder")
    with pytest.raises(OSError):
        safe_write(work, "file/a.txt", "a")
