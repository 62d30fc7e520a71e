"""Undeclared writes: a shell step that changes an output of another step that is done.

A step is *settled* once it ran, was restored or was found up to date in this build (or, when
the build did not select it, if the lock file records it). Its output files are then stamped
(inode, mtime, ctime, size) with their sha256, and the folders of its folder outputs are stamped
too. After each shell step, `Watch.check` compares the settled steps' outputs with the disk: a
file whose content differs, that is gone, or that appeared in a settled step's output folder is
an undeclared write of the step that just ended, or of a shell step running alongside it.
Running steps and steps still to come are not settled: they legitimately write their outputs.

On Linux an inotify `Monitor` says which paths changed since the last check, so a check costs
what the steps wrote, not what the build holds; without it every stamp is compared.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from orchestrator.core.paths import is_dir
from orchestrator.engine.leftovers import TEMP_NAME
from orchestrator.store.digest import sha256_file
from orchestrator.store.hashing import PathEscapes

if TYPE_CHECKING:
    from orchestrator.engine.inotify import Monitor
    from orchestrator.plan.compiled import PlannedStep
    from orchestrator.store.hashing import Hasher

Change = Literal["modified", "removed", "added"]
Stamp = tuple[int, int, int, int] | None
"""inode, mtime_ns, ctime_ns, size; None for a missing file."""


@dataclass(frozen=True)
class UndeclaredWrite:
    """An output of a settled step changed while other steps ran: the data of its event."""

    path: str
    owner: str
    change: Change
    alongside: tuple[str, ...]
    """Shell steps that ran at the same time as the step just checked, and may be the writer."""

    def as_event_data(self) -> dict[str, Any]:
        """The fields of the `file.undeclared_write` event."""
        return {
            "path": self.path,
            "owner": self.owner,
            "change": self.change,
            "alongside": list(self.alongside),
        }


@dataclass
class _File:
    owner: str
    stamp: Stamp
    digest: str | None


class Watch:
    """The settled steps' outputs of one build, and the check run after each shell step."""

    def __init__(self, workdir: Path, hasher: Hasher) -> None:
        self.workdir = workdir
        self.hasher = hasher
        self._root = f"{workdir}/"
        self.started = False
        self._pending: list[tuple[PlannedStep, Mapping[str, str]]] = []
        self._monitor: Monitor | None = None
        self._steps: dict[str, PlannedStep] = {}
        self._files: dict[str, _File] = {}
        self._folders: dict[str, Stamp] = {}
        self._folder_owners: dict[str, set[str]] = {}

    def settle(self, step: PlannedStep, files: Mapping[str, str]) -> None:
        """Remember a step that is done, with its output files (path → sha256) as it left them.

        Until the first shell step starts nothing can change them, so they are stamped then.
        """
        if self.started:
            self._stamp(step, files)
        else:
            self._pending.append((step, files))

    def start(self) -> None:
        """Before the first shell step: watch and stamp what settled so far."""
        if self.started:
            return
        from orchestrator.engine.inotify import open_monitor

        self.started = True
        self._monitor = open_monitor(self.workdir)
        for step, files in self._pending:
            self._stamp(step, files)
        self._pending = []

    def check(self, alongside: Iterable[str] = ()) -> list[UndeclaredWrite]:
        """What changed among the settled outputs since the last check (each change once)."""
        if not self.started:
            return []
        touched = self._monitor.touched() if self._monitor is not None else None
        if touched is None:  # compare everything, trusting equal stamps
            files, folders = list(self._files), list(self._folders)
        else:  # compare what the kernel saw change, by content
            files = [path for path in touched if path in self._files]
            folders = [path for path in touched if path in self._folders]
        found = [(path, change) for path in files if (change := self._compare(path, touched))]
        changed = [folder for folder in folders if self._folder_changed(folder)]
        for owner in sorted({owner for folder in changed for owner in self._folder_owners[folder]}):
            found.extend((path, "added") for path in self._added(owner))
        others = tuple(sorted(alongside))
        return [UndeclaredWrite(p, self._files[p].owner, c, others) for p, c in sorted(found)]

    def close(self) -> None:
        """Stop watching."""
        if self._monitor is not None:
            self._monitor.close()
            self._monitor = None

    # ------------------------------------------------------------------ stamps

    def _stamp(self, step: PlannedStep, files: Mapping[str, str]) -> None:
        """Watch, then stamp, so that a change after the stamp is seen."""
        self._steps[step.id] = step
        for folder in self._output_folders(step):
            self._watch(folder)
            self._folders[folder] = self._lstamp(folder)
            self._folder_owners.setdefault(folder, set()).add(step.id)
        for path, digest in files.items():
            self._watch(posixpath.dirname(path))
            self._files[path] = _File(step.id, self._lstamp(path), digest)

    def _watch(self, folder: str) -> None:
        if self._monitor is not None:
            self._monitor.watch(folder)

    def _lstamp(self, path: str) -> Stamp:
        try:
            stat = os.lstat(self._root + path)
        except OSError:
            return None
        return (stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size)

    def _output_folders(self, step: PlannedStep) -> list[str]:
        """The step's folder outputs and every folder under them, without the trailing slash."""
        found = []
        for output in (out for out in step.outputs if is_dir(out)):
            top = output.rstrip("/")
            if not os.path.isdir(self.workdir / top):
                continue
            found.append(top)
            for dirpath, dirnames, _ in os.walk(self.workdir / top):
                relative = Path(dirpath).relative_to(self.workdir).as_posix()
                found.extend(f"{relative}/{name}" for name in dirnames)
        return found

    # ------------------------------------------------------------------ comparing

    def _compare(self, path: str, touched: set[str] | None) -> Change | None:
        """How a settled file changed, by content; its new state becomes the reference. Equal
        stamps mean unchanged unless the kernel said the file was `touched`."""
        known = self._files[path]
        stamp = self._lstamp(path)
        if touched is None and stamp == known.stamp:
            return None
        try:
            digest: str | None = sha256_file(self.workdir / path) if stamp is not None else None
        except OSError:
            digest = None
        before, known.stamp, known.digest = known.digest, stamp, digest
        if digest == before:
            return None
        if digest is None:
            return "removed"
        return "modified" if before is not None else "added"

    def _folder_changed(self, folder: str) -> bool:
        stamp = self._lstamp(folder)
        changed = stamp != self._folders[folder]
        self._folders[folder] = stamp
        return changed

    def _added(self, owner: str) -> list[str]:
        """Files of the owner's output folders that it did not leave there (now its own)."""
        step = self._steps[owner]
        new: dict[str, str] = {}
        for output in (out for out in step.outputs if is_dir(out)):
            for path in self._files_in(step, output):
                if path not in self._files:
                    try:
                        new[path] = sha256_file(self.workdir / path)
                    except OSError:
                        continue
        self._stamp(step, new)
        return sorted(new)

    def _files_in(self, step: PlannedStep, folder: str) -> list[str]:
        """The step's own files in one of its output folders, orch's temp files left out."""
        try:
            found = self.hasher.files(folder, lambda path: not step.owns(path))
        except (OSError, PathEscapes):
            return []
        return [p for p in found if not TEMP_NAME.match(posixpath.basename(p))]
