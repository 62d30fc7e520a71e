"""Disk and permission errors on a real small filesystem: a full disk, a read-only one, an
over-long path. Each build ends with exit 1, one line naming the path and what orch was doing,
no traceback, and the lock file and the cache as they were: freeing the disk, the next build
restores the earlier outputs.

The workdir is a 256 KiB tmpfs (the tests need root to mount it; they are skipped otherwise).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from orchestrator.cli.commands import _reports_errors

from .buildkit import Project

DISK = "256k"
NO_SPACE = os.strerror(errno.ENOSPC)
PIPELINE = """\
version: 1
steps:
  big:
    inputs: [size.txt]
    run: 'echo big >> runs.log; head -c "$(cat size.txt)" /dev/zero > out.bin'
    outputs: [out.bin]
"""


@pytest.fixture
def disk(project: Project, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    """The project with its workdir on a small tmpfs of its own."""
    root = str(project.root)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", root],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip() or mounted.returncode}")
    monkeypatch.chdir(root)  # the mount, not the folder under it
    try:
        yield project
    finally:
        os.chdir(project.root.parent)
        subprocess.run(["umount", "-l", root], check=True)


def fill(project: Project, leave: int) -> None:
    """Fill the disk with `filler.bin`, leaving about `leave` bytes free."""
    stat = os.statvfs(project.root)
    size = max(stat.f_bavail * stat.f_frsize - leave, 0)
    try:
        with open(project.root / "filler.bin", "wb") as handle:
            handle.write(bytes(size))
    except OSError as exc:
        assert exc.errno == errno.ENOSPC


def free(project: Project) -> None:
    (project.root / "filler.bin").unlink()


def orch(project: Project, *args: str) -> tuple[int, str, str]:
    """`orch ARGS` as a process: its exit code, stdout and stderr."""
    process = project.spawn(*args)
    out, err = process.communicate(timeout=60)
    return process.returncode, out, err


def built_once(project: Project) -> tuple[str, bytes]:
    """Build `big` on a roomy disk; the lock file and the output it wrote."""
    project.pipeline(PIPELINE)
    project.write("size.txt", "1000")
    code, _, err = orch(project, "build")
    assert code == 0, err
    assert project.new_runs() == ["big"]
    return project.read("orch.lock"), (project.root / "out.bin").read_bytes()


def assert_clean_failure(code: int, out: str, err: str) -> None:
    assert code == 1, (out, err)
    assert "Traceback" not in out + err


def assert_nothing_lost(project: Project, lock: str, output: bytes) -> None:
    """The lock is as it was; with the disk freed and the input back, the output is restored."""
    assert project.read("orch.lock") == lock
    assert not list(project.root.rglob("*.tmp"))
    free(project)
    project.write("size.txt", "1000")
    project.new_runs()
    code, out, err = orch(project, "build")
    assert code == 0, (out, err)
    assert project.new_runs() == [], out
    assert (project.root / "out.bin").read_bytes() == output
    assert project.read("orch.lock") == lock


def test_a_step_output_that_fills_the_disk_fails_the_step_and_loses_nothing(
    disk: Project,
) -> None:
    lock, output = built_once(disk)
    fill(disk, leave=16 * 1024)
    disk.write("size.txt", "1000000")
    before = disk.run_folders()

    code, out, err = orch(disk, "build")

    assert_clean_failure(code, out, err)
    assert "FAILED    big" in out
    (run,) = disk.run_folders() - before
    assert json.loads((run / "manifest.json").read_text())["status"] == "failed"
    for line in err.splitlines():
        assert line.startswith(("run details: ", "warning: cannot ", "orch: cannot ")), line
        assert line.startswith("run details: ") or line.endswith(
            (NO_SPACE, "hashes the files again")
        )
    assert_nothing_lost(disk, lock, output)


def test_a_cache_store_that_fills_the_disk_fails_the_step_with_the_reason(disk: Project) -> None:
    lock, output = built_once(disk)
    fill(disk, leave=100 * 1024)
    disk.write("size.txt", str(70 * 1024))

    code, out, err = orch(disk, "build")

    assert_clean_failure(code, out, err)
    (line,) = [line for line in out.splitlines() if "FAILED" in line]
    assert "cannot store its outputs in the cache" in line
    assert "No space left on device" in line
    assert_nothing_lost(disk, lock, output)


def test_a_full_disk_before_the_run_is_recorded_is_one_line_naming_the_file(
    disk: Project,
) -> None:
    lock, output = built_once(disk)
    fill(disk, leave=0)
    disk.write("size.txt", "2000")
    before = disk.run_folders()

    code, out, err = orch(disk, "build")

    assert_clean_failure(code, out, err)
    (line,) = err.splitlines()
    (run,) = disk.run_folders() - before
    assert line == f"orch: cannot write the run manifest: {run / 'manifest.json'}: {NO_SPACE}"
    assert disk.new_runs() == []
    code, out, err = orch(disk, "runs")
    assert "Traceback" not in out + err
    assert_nothing_lost(disk, lock, output)


def test_a_read_only_workdir_is_one_line_naming_the_build_lock(disk: Project) -> None:
    lock, output = built_once(disk)
    disk.write("size.txt", "2000")
    subprocess.run(["mount", "-o", "remount,ro", str(disk.root)], check=True)

    code, out, err = orch(disk, "build")

    assert_clean_failure(code, out, err)
    lock_file = disk.root / ".orch" / "build.lock"
    assert err == f"orch: cannot take the build lock: {lock_file}: Read-only file system\n"
    subprocess.run(["mount", "-o", "remount,rw", str(disk.root)], check=True)
    disk.write("filler.bin", "")
    assert_nothing_lost(disk, lock, output)


def test_an_over_long_output_path_fails_its_step_with_a_clear_message(project: Project) -> None:
    name = "/".join(["a" * 250] * 20) + ".txt"  # each name fits; the path passes PATH_MAX
    project.pipeline(f"version: 1\nsteps:\n  long:\n    run: 'true'\n    outputs: ['{name}']\n")

    code, out, err = orch(project, "build")

    assert_clean_failure(code, out, err)
    (line,) = [line for line in out.splitlines() if "FAILED" in line]
    assert f"{name}: File name too long" in line
    (run,) = project.run_folders()
    assert json.loads((run / "manifest.json").read_text())["status"] == "failed"


def unprivileged(project: Project, *args: str) -> tuple[int, str, str]:
    """`orch ARGS` as root without the capabilities that bypass file permissions, so that a
    mode such as 000 holds for it as for any user; skipped where that cannot be arranged."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to drop the permission-bypassing capabilities")
    command = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
    process = subprocess.run(
        [*command, sys.executable, "-m", "orchestrator", *args],
        cwd=project.root,
        env={**os.environ, "CI": "1", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return process.returncode, process.stdout, process.stderr


@pytest.mark.parametrize("command", ["build", "status"])
def test_an_unreadable_input_is_one_line_naming_it_never_a_removed_input(
    project: Project, command: str
) -> None:
    lock, output = built_once(project)
    (project.root / "size.txt").chmod(0)

    code, out, err = unprivileged(project, command)

    assert_clean_failure(code, out, err)
    assert err == f"orch: {project.root / 'size.txt'}: {os.strerror(errno.EACCES)}\n"
    assert "removed" not in out
    assert project.read("orch.lock") == lock
    (project.root / "size.txt").chmod(0o644)
    assert project.new_runs() == []
    assert (project.root / "out.bin").read_bytes() == output


def test_an_output_folder_orch_may_not_write_fails_the_step_naming_the_output(
    project: Project,
) -> None:
    project.pipeline(
        "version: 1\nsteps:\n  page: {template: hi, output: out/page.txt}\n"
        "  other: {run: echo b > b.txt, output: b.txt}\n"
    )
    (project.root / "out").mkdir(mode=0o555)

    code, out, err = unprivileged(project, "build", "-k")

    assert_clean_failure(code, out, err)
    (line,) = [line for line in out.splitlines() if "FAILED" in line]
    assert line.endswith(f"page  (out/page.txt: {os.strerror(errno.EACCES)})")
    assert project.read("b.txt") == "b\n", "the other step still ran"
    assert not list(project.root.rglob("*.tmp"))
    (project.root / "out").chmod(0o755)
    again = project.orch("build")
    assert again.started() == ["page"]
    assert project.read("out/page.txt") == "hi"


def test_an_unexpected_os_error_is_one_line_with_its_path(
    capsys: pytest.CaptureFixture[str],
) -> None:
    @_reports_errors
    def command() -> None:
        raise PermissionError(errno.EACCES, "Permission denied", "/srv/data/x")

    with pytest.raises(SystemExit) as exit:
        command()

    assert exit.value.code == 1
    assert capsys.readouterr().err == "orch: /srv/data/x: Permission denied\n"


def test_a_full_disk_when_a_build_that_changed_nothing_is_noted_is_one_line(
    disk: Project,
) -> None:
    lock, output = built_once(disk)
    fill(disk, leave=0)
    history = disk.root / ".orch" / "runs" / "history.jsonl"

    code, out, err = orch(disk, "build")

    assert_clean_failure(code, out, err)
    (line,) = err.splitlines()
    assert line == f"orch: cannot write the run history: {history}: {NO_SPACE}"
    assert not history.exists() or history.read_text() == ""
    assert_nothing_lost(disk, lock, output)
