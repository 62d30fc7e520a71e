"""safe_write: atomic, confined to the workdir, and leaving unchanged files alone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.filestore import WriteRefused, safe_write


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
