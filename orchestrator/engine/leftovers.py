"""What a build killed by `kill -9` leaves behind, cleared by the next build.

`.orch/building` marks a build in progress. The next build, holding the build lock, stops the
step processes the killed one left running (`steps.processes`). If the marker says the last
build was killed, it also removes orch's own temp files (`.NAME.XXXXXXXX.tmp`) beside the
outputs, beside the lock file and under `.orch/`.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.steps.processes import stop_groups

if TYPE_CHECKING:
    from orchestrator.plan.compiled import Plan
    from orchestrator.store.layout import StateFolder

TEMP_NAME = re.compile(r"\A\..+\.[a-z0-9_]{8}\.tmp\Z", re.DOTALL)
"""The names of orch's temp files: `tempfile.mkstemp` and `filestore._temp_in` suffixes, after
the target's name (cut short when long: `filestore.temp_stem`)."""


def begin(state: StateFolder) -> bool:
    """Mark a build in progress; whether the previous one was killed (its marker is there)."""
    marker = state.build_marker
    killed = marker.exists()
    marker.write_bytes(b"")
    return killed


def end(state: StateFolder) -> None:
    """The build ends normally: drop the marker."""
    state.build_marker.unlink(missing_ok=True)


def remove_temp_files(flat: Iterable[Path], deep: Iterable[Path]) -> int:
    """Remove orch's temp files in the `flat` folders and anywhere under the `deep` ones."""
    removed = 0
    for path in _temp_files(flat, deep):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed += 1
    return removed


def _temp_files(flat: Iterable[Path], deep: Iterable[Path]) -> Iterator[Path]:
    """The regular files named as orch's temp files; symlinks are never followed."""
    seen: set[Path] = set()
    folders = [(folder, False) for folder in flat] + [(folder, True) for folder in deep]
    for folder, recursive in folders:
        for path in _listing(folder, recursive):
            if path not in seen and TEMP_NAME.match(path.name):
                seen.add(path)
                yield path


def _listing(folder: Path, recursive: bool) -> Iterator[Path]:
    """The regular files in `folder` (and below it if `recursive`), never through a symlink."""
    if folder.is_symlink() or not folder.is_dir():
        return
    for root, folders, files in os.walk(folder):
        for name in files:
            path = Path(root, name)
            if not path.is_symlink() and path.is_file():
                yield path
        if not recursive:
            folders.clear()


def clear(state: StateFolder, plan: Plan, lock_file: Path) -> tuple[str, ...]:
    """Start a build (holding the build lock): clear what a killed build left; what it did."""
    killed = begin(state)
    stopped = stop_groups(state.processes)
    removed = remove_temp_files(*_folders(state, plan, lock_file)) if killed else 0
    if not (stopped or removed):
        return ()
    return (
        f"the previous build was killed: stopped {stopped} leftover step process group(s),"
        f" removed {removed} temp file(s)",
    )


def _folders(state: StateFolder, plan: Plan, lock_file: Path) -> tuple[list[Path], list[Path]]:
    """Where orch writes temp files: beside outputs and the lock file, in output folders
    (all the way down), under `.orch/`; paths leading outside the workdir are left out."""
    from orchestrator.store.filestore import WriteRefused, confined

    workdir = Path(plan.workdir)
    flat, deep = [lock_file.parent], [state.root]
    for step in plan.steps.values():
        for output in step.outputs:
            with contextlib.suppress(WriteRefused):
                target = confined(workdir, output.rstrip("/"))
                if output.endswith("/"):
                    deep.append(target)
                else:
                    flat.append(target.parent)
    return flat, deep
